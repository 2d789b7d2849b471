"""Benchmark indexing: decode-only, encode-only and the full pipeline on one long video.

The pipeline overlaps decoding (a producer thread) with encoding, so a full index should cost
about max(decode-only, encode-only), not their sum. This prints frames/s for each and the
ratio index / max(decode, encode) (target <= 1.15) and index / decode-only.

Usage::

    .venv/bin/python scripts/bench_index.py                       # 10-min 720p H.264, ViT-B-32
    .venv/bin/python scripts/bench_index.py --model synthetic-shapes --minutes 10
    .venv/bin/python scripts/bench_index.py --video my.mp4 --device cuda --json out.json

``--model vit-b-32-random`` (the default) is open_clip's ViT-B-32 architecture with random
weights, saved to a local folder and loaded through the normal local-checkpoint path: it costs
exactly what the pretrained ViT-B-32 costs, and needs no download.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_decode import make_video

from framedex.indexer.decode import open_video
from framedex.indexer.encoder import load_encoder
from framedex.indexer.pipeline import Indexer, IndexOptions
from framedex.store import Store


def random_vit_b32(folder: Path) -> str:
    """Save ViT-B-32 with random weights in the Hub layout; return the folder as a spec."""
    if (folder / "open_clip_model.safetensors").exists():
        return str(folder)
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = open_clip.get_model_config("ViT-B-32")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    return str(folder)


def max_side_for(info, image_size: int) -> int | None:
    """The same decode-time resize the pipeline asks for."""
    short, long_ = min(info.width, info.height), max(info.width, info.height)
    return -(-long_ * image_size // short) if short > image_size else None


def decode_only(video: Path, decoder: str, fps: float, image_size: int) -> tuple[float, list]:
    t0 = time.perf_counter()
    frames = []
    with open_video(video, decoder) as dec:
        for f in dec.iter_index_frames(fps, max_side=max_side_for(dec.info, image_size)):
            frames.append(f.image)
    return time.perf_counter() - t0, frames


def encode_only(encoder, frames: list, batch_size: int) -> float:
    encoder.encode_images(np.stack(frames[:batch_size]))  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(frames), batch_size):
        encoder.encode_images(np.stack(frames[i : i + batch_size]))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, help="video to index (default: generate one)")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the generated video")
    ap.add_argument("--model", default="vit-b-32-random")
    ap.add_argument("--decoder", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--fps", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", type=Path, help="write the numbers here too")
    args = ap.parse_args(argv)

    cache = Path(tempfile.gettempdir()) / "framedex-bench"
    cache.mkdir(exist_ok=True)
    video = args.video or make_video(cache / f"bench_{args.minutes:g}min_720p.mp4", args.minutes)
    spec = random_vit_b32(cache / "vit-b-32-random") if args.model == "vit-b-32-random" \
        else args.model
    encoder = load_encoder(spec, device=args.device)

    decode_s, frames = decode_only(video, args.decoder, args.fps, encoder.image_size)
    n = len(frames)
    encode_s = encode_only(encoder, frames, args.batch_size)
    del frames
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "db")
        indexer = Indexer(store, encoder, IndexOptions(index_fps=args.fps, decoder=args.decoder,
                                                       batch_size=args.batch_size))
        t0 = time.perf_counter()
        outcome = indexer.index_file(video)
        index_s = time.perf_counter() - t0
    if outcome.status != "indexed":
        print(f"index failed: {outcome.error}", file=sys.stderr)
        return 1

    with open_video(video, args.decoder) as dec:
        info = dec.info
    result = {
        "video": str(video), "duration_s": round(info.duration, 1),
        "size": f"{info.width}x{info.height}", "decoder": info.decoder,
        "model": args.model, "device": encoder.device, "frames": n,
        "decode_s": round(decode_s, 2), "encode_s": round(encode_s, 2),
        "index_s": round(index_s, 2),
        "decode_fps": round(n / decode_s, 1), "encode_fps": round(n / encode_s, 1),
        "index_fps": round(n / index_s, 1),
        "ratio_index_over_max": round(index_s / max(decode_s, encode_s), 3),
        "ratio_index_over_decode": round(index_s / decode_s, 3),
    }
    print(f"| step | seconds | frames/s |\n|---|---|---|\n"
          f"| decode only ({info.decoder}) | {result['decode_s']} | {result['decode_fps']} |\n"
          f"| encode only ({args.model}, {encoder.device}) | {result['encode_s']} | "
          f"{result['encode_fps']} |\n"
          f"| full index | {result['index_s']} | {result['index_fps']} |\n\n"
          f"{n} index frames from {result['duration_s']} s of {result['size']} video; "
          f"index / max(decode, encode) = {result['ratio_index_over_max']}, "
          f"index / decode = {result['ratio_index_over_decode']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
