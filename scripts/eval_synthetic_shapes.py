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
  binding_auc         "a {color} {shape}" against binding distractors: the probability that a
                      frame showing the object (plus one or two others) outranks a frame that
                      shows the same colour on another shape and the same shape in another
                      colour, but not the object. Each positive has a distractor made of the
                      same objects with two colours swapped ("a purple star and a yellow
                      triangle" vs "a yellow star and a purple triangle"), on the same
                      background; mean over the 24 queries (worst query too), and
                      binding_pair_acc, the share of those swapped pairs ranked right.
  demo_*              the demo's own case: examples/specs/long_needles.json rendered at its size,
                      indexed with framedex at 1 fps; `search "a purple star"` (rank of each
                      purple-star needle among the moments, and its best frame score against
                      the best binding-distractor scene's, e.g. the orange circle, purple
                      triangle and yellow star at 1035-1045 s), the needle scenes' ranks among
                      all scenes for the question "when does the purple star appear?", and
                      which of the BOLT and AKS 8-frame selections for it show a needle

Usage:
    .venv/bin/python scripts/eval_synthetic_shapes.py [--model DIR] [--json out.json]
        [--no-demo]   # skip the demo case (it renders and indexes a 20-minute video, ~1 min)
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

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "src/framedex/indexer/models/synthetic-shapes"
DEMO_SPEC = ROOT / "examples/specs/long_needles.json"
DEMO_QUERY, DEMO_QUESTION, DEMO_OBJECT = "a purple star", "when does the purple star appear?", \
    ("star", "purple")
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
    errors = Counter(f"{t[1]} {t[0]} -> {p[1]} {p[0]}"
                     for t, p in zip(truth, pred, strict=True) if t != p)
    return float(np.mean([t == p for t, p in zip(truth, pred, strict=True)])), len(truth), errors


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


def binding_scenes(rng: np.random.Generator, reps: int) -> tuple[list[dict], list[tuple]]:
    """Matched positive / binding-distractor scenes for every "a {color} {shape}" query.

    Positive: (shape, color) + (shape2, color2) [+ a third object that is not (shape, color)];
    distractor: the same objects with the first two colours swapped, (shape2, color) +
    (shape, color2) [+ the same third], on the same background. So the distractor has the
    query's colour and the query's shape, only not on one object.

    Returns:
        The scenes and, per scene, (query index, is_positive, pair id).
    """
    scenes, meta = [], []
    for qi, (s, c) in enumerate([(s, c) for s in SHAPES for c in COLORS]):
        for r in range(reps):
            s2 = str(rng.choice([x for x in SHAPES if x != s]))
            c2 = str(rng.choice([x for x in COLORS if x != c]))
            bg = str(rng.choice(list(BACKGROUNDS)))
            third = []
            if rng.random() < 0.5:
                others = [(x, y) for x in SHAPES for y in COLORS if (x, y) != (s, c)]
                third = [others[int(rng.integers(len(others)))]]
            for pos, objs in ((True, [(s, c), (s2, c2)]), (False, [(s2, c), (s, c2)])):
                objs = objs + third
                order = rng.permutation(len(objs))
                scenes.append({"duration": 1.0, "background": bg, "objects": [
                    {"shape": objs[i][0], "color": objs[i][1]} for i in order]})
                meta.append((qi, pos, qi * reps + r))
    return scenes, meta


def binding(embed_images, embed_texts, seed: int, reps: int, tmp: Path):
    """Binding AUC (mean, worst query), paired accuracy, and per-query AUCs."""
    rng = np.random.default_rng(seed)
    scenes, meta = binding_scenes(rng, reps)
    img = embed_images(scene_middle_frames(scenes, seed, [128, 128], tmp))
    pairs = [(s, c) for s in SHAPES for c in COLORS]
    txt = embed_texts([object_phrase(s, c) for s, c in pairs])
    aucs, paired = {}, []
    for qi, (s, c) in enumerate(pairs):
        sims = img @ txt[qi]
        pos = np.array([m[0] == qi and m[1] for m in meta])
        neg = np.array([m[0] == qi and not m[1] for m in meta])
        aucs[f"{c} {s}"] = float((sims[pos][:, None] > sims[neg][None, :]).mean())
        paired += list(sims[pos] > sims[neg])  # scenes come as (positive, distractor) pairs
    return float(np.mean(list(aucs.values()))), float(min(aucs.values())), \
        float(np.mean(paired)), aucs


def demo_case(model_dir: Path, tmp: Path) -> dict:
    """The demo's "a purple star" case on examples/specs/long_needles.json, through framedex."""
    from framedex import Library

    spec = json.loads(DEMO_SPEC.read_text())
    video = tmp / "long_needles.mp4"
    truth = render(spec, video)
    shape, color = DEMO_OBJECT
    needles = [(s.start, s.end) for s in truth.scenes if DEMO_OBJECT in s.objects]
    distract = [(s.start, s.end) for s in truth.scenes if DEMO_OBJECT not in s.objects
                and any(o[0] == shape for o in s.objects)
                and any(o[1] == color for o in s.objects)]
    lib = Library(tmp / "demo.db", model=str(model_dir), log_queries=False)
    lib.index(video, fps=1.0)
    moments = lib.search(DEMO_QUERY, limit=10)

    def first_rank(span):
        return next((i + 1 for i, m in enumerate(moments)
                     if m.start < span[1] and m.end > span[0]), None)

    _, frames, _ = lib.embeddings(str(video))
    sims = frames.vectors @ lib.embed_text([DEMO_QUERY])[0]
    best = {span: float(sims[(frames.pts_sec >= span[0]) & (frames.pts_sec < span[1])].max())
            for span in needles + distract}
    worst_d = max(distract, key=lambda sp: best[sp])
    out = {"demo_top_moments": [f"{m.start:g}-{m.end:g}s {m.score:.3f}" for m in moments[:4]],
           "demo_needle_ranks": {f"{a:g}-{b:g}s": first_rank((a, b)) for a, b in needles},
           "demo_needle_best_score": {f"{a:g}-{b:g}s": round(best[(a, b)], 3)
                                      for a, b in needles},
           "demo_top_distractor": f"{worst_d[0]:g}-{worst_d[1]:g}s {best[worst_d]:.3f} "
                                  f"(rank {first_rank(worst_d)})"}
    # The question wraps the object in words the caption grammar never uses; where its needle
    # scenes rank among all scenes (by their best frame) shows how much that costs.
    q = frames.vectors @ lib.embed_text([DEMO_QUESTION])[0]
    scene_best = sorted(((float(q[(frames.pts_sec >= s.start) & (frames.pts_sec < s.end)].max()),
                          DEMO_OBJECT in s.objects) for s in truth.scenes
                         if ((frames.pts_sec >= s.start) & (frames.pts_sec < s.end)).any()),
                        reverse=True)
    out["demo_question_needle_scene_ranks"] = [i + 1 for i, (_, hit) in enumerate(scene_best)
                                               if hit]
    for sampler in ("bolt", "aks"):
        res = lib.select(str(video), DEMO_QUESTION, sampler=sampler, budget=8)
        hits = [t for t in res.timestamps if any(a <= t < b for a, b in needles)]
        out[f"demo_{sampler}_needle_frames"] = f"{len(hits)}/8 {[round(t) for t in hits]}"
    lib.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(MODEL_DIR))
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--pools", type=int, default=3)
    ap.add_argument("--binding-reps", type=int, default=8,
                    help="positive/distractor pairs per binding query")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo case")
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
        b_auc, b_worst, b_pair, b_aucs = binding(embed_images, embed_texts, EVAL_SEED + 1300,
                                                 args.binding_reps, tmp)
        out.update(binding_auc=b_auc, binding_auc_worst=b_worst, binding_pair_acc=b_pair,
                   binding_worst_queries={k: round(v, 2) for k, v in
                                          sorted(b_aucs.items(), key=lambda kv: kv[1])[:4]})
        if not args.no_demo:
            out.update(demo_case(Path(args.model), tmp))
    out["eval_seconds"] = round(time.time() - t0, 1)
    for k, v in out.items():
        print(f"{k:32s} {v:.4f}" if isinstance(v, float) else f"{k:32s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
