"""Measure the bundled ``synthetic-shapes`` model on freshly rendered, H.264-decoded frames.

Every frame here goes the way real indexing goes: spec -> render() (libx264, yuv420p) ->
PyAV decode -> the model's own open_clip preprocess. Scene seeds are >= 1e9; training uses
seeds < 1e9, so no evaluation frame was seen in training.

Metrics:
  zero_shot_acc       single-object frames, classify among all 24 "a {color} {shape}" prompts
  recall_at_1         canonical caption of a frame ("a red circle and a blue star on a gray
                      background", "an empty white screen") -> rank 100 frames; a hit when
                      the top frame has the same background and objects (duplicates among the
                      100 frames are equally right); mean over several pools
  object_query_auc    "a {color} {shape}" over multi-object frames of any background: the
                      probability that a frame containing the object outranks one without it

Usage:
    .venv/bin/python scripts/eval_synthetic_shapes.py [--model DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from framedex.synth import SHAPES, canonical_caption, random_scene, render
from framedex.synth.captions import object_phrase, single_object_prompts
from framedex.synth.spec import BACKGROUNDS, COLORS

MODEL_DIR = Path(__file__).resolve().parents[1] / "src/framedex/indexer/models/synthetic-shapes"
EVAL_SEED = 1_000_000_000


def load(model_dir: Path):
    import open_clip
    import torch

    name = f"local-dir:{model_dir.resolve()}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)

    def embed_images(frames: list[np.ndarray]) -> np.ndarray:
        from PIL import Image

        with torch.no_grad():
            x = torch.stack([preprocess(Image.fromarray(f)) for f in frames])
            return torch.nn.functional.normalize(model.encode_image(x), dim=-1).numpy()

    def embed_texts(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            t = model.encode_text(tokenizer(texts))
            return torch.nn.functional.normalize(t, dim=-1).numpy()

    return embed_images, embed_texts


def scene_middle_frames(scenes: list[dict], seed: int, size: list[int], tmp: Path) -> list:
    """Render the scenes (1 s each at 10 fps) to H.264 and decode the middle frame of each."""
    import av

    path = tmp / f"eval_{seed}_{size[0]}x{size[1]}.mp4"
    render({"fps": 10, "size": size, "seed": seed, "scenes": scenes}, path)
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return [frames[10 * i + 5] for i in range(len(scenes))]


def zero_shot(embed_images, embed_texts, size: list[int], seed: int, reps: int, tmp: Path):
    rng = np.random.default_rng(seed)
    truth = [(s, c) for s in SHAPES for c in COLORS for _ in range(reps)]
    scenes = [{"duration": 1.0, "background": str(rng.choice(list(BACKGROUNDS))),
               "objects": [{"shape": s, "color": c}]} for s, c in truth]
    frames = scene_middle_frames(scenes, seed, size, tmp)
    prompts = single_object_prompts()
    sims = embed_images(frames) @ embed_texts([p for p, _ in prompts]).T
    pred = [prompts[i][1] for i in sims.argmax(1)]
    errors = Counter(f"{t[1]} {t[0]} -> {p[1]} {p[0]}" for t, p in zip(truth, pred) if t != p)
    return float(np.mean([t == p for t, p in zip(truth, pred)])), len(truth), errors


def retrieval(embed_images, embed_texts, seed: int, pools: int, tmp: Path):
    hits, strict = [], []
    for k in range(pools):
        rng = np.random.default_rng([seed, k])
        scenes = [random_scene(rng, 1.0) for _ in range(100)]
        frames = scene_middle_frames(scenes, seed + k, [128, 128], tmp)
        keys = [(s["background"], tuple(sorted((o["shape"], o["color"]) for o in s["objects"])))
                for s in scenes]
        caps = [canonical_caption(s["background"], [(o["shape"], o["color"]) for o in s["objects"]])
                for s in scenes]
        top = (embed_texts(caps) @ embed_images(frames).T).argmax(1)
        hits += [keys[t] == keys[i] for i, t in enumerate(top)]
        strict += [t == i for i, t in enumerate(top)]
    return float(np.mean(hits)), float(np.mean(strict)), len(hits)


def object_queries(embed_images, embed_texts, seed: int, tmp: Path):
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, 1.0, n_objects=int(rng.integers(1, 4))) for _ in range(300)]
    frames = scene_middle_frames(scenes, seed, [128, 128], tmp)
    img = embed_images(frames)
    aucs = {}
    for s in SHAPES:
        for c in COLORS:
            pos = np.array([any((o["shape"], o["color"]) == (s, c) for o in sc["objects"])
                            for sc in scenes])
            if pos.sum() == 0:
                continue
            sims = img @ embed_texts([object_phrase(s, c)])[0]
            p, n = sims[pos], sims[~pos]
            aucs[f"{c} {s}"] = float((p[:, None] > n[None, :]).mean())
    return float(np.mean(list(aucs.values()))), float(min(aucs.values())), aucs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(MODEL_DIR))
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--pools", type=int, default=3)
    args = ap.parse_args()
    t0 = time.time()
    embed_images, embed_texts = load(Path(args.model))
    out: dict = {"model": args.model}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for size in ([128, 128], [192, 108]):
            acc, n, errors = zero_shot(embed_images, embed_texts, size, EVAL_SEED + size[0], 5, tmp)
            out[f"zero_shot_acc_{size[0]}x{size[1]}"] = acc
            out[f"zero_shot_n_{size[0]}x{size[1]}"] = n
            out[f"zero_shot_top_errors_{size[0]}x{size[1]}"] = dict(errors.most_common(5))
        r1, strict, n = retrieval(embed_images, embed_texts, EVAL_SEED + 500, args.pools, tmp)
        out.update(recall_at_1=r1, recall_at_1_same_frame=strict, recall_queries=n)
        auc, worst, _ = object_queries(embed_images, embed_texts, EVAL_SEED + 900, tmp)
        out.update(object_query_auc=auc, object_query_auc_worst=worst)
    out["eval_seconds"] = round(time.time() - t0, 1)
    for k, v in out.items():
        print(f"{k:32s} {v:.4f}" if isinstance(v, float) else f"{k:32s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
