"""Entity search and composed queries on the synthetic world: which entity vector finds the
entity (the normalised mean of its reference images against MaxSim over them), and does a
composed text+image query beat the same inputs as ``or`` parts?

The world (the shipped ``synthetic-shapes`` model): for each of ``--trials`` random objects
(a shape and a colour), one 30 s video of five 6 s scenes: the object on one background (A),
an object of the same colour and another shape, one of the same shape and another colour,
the object on another background (B), and both distractors together. Every video is indexed
into one library, so each trial's scenes are distractors for the others.

``entities``: each object becomes an entity of 3 reference images uploaded as assets (the
object at three sizes, on black, gray and white), once with **clean** references (the object
alone) and once with **cluttered** ones (each reference also shows another random object, a
different one in each). A query finds the entity; the truth is every scene, in any video,
that shows the object. Both vectors score every indexed frame (numpy, the store's frame
vectors) and a scene's score is its best frame: ``mean`` is ``frames @ normalise(mean(refs))``
(framedex's rule, ``framedex.query.compose.entity_vector``), ``MaxSim`` is ``max over refs of
frames @ ref``. The ``library`` row is ``lib.search("<@id>")`` itself (the mean, through the
search path: moments, not frames).

``composed``: the query is one image of the object on background B (the second reference
image's layout) and the text "on a A background"; the truth is the scenes that show the object
on A. Rows: the library's ``compose=True`` (one fused vector,
``framedex.rules.COMPOSE_TEXT_WEIGHT``), ``operator="or"`` (two parts; the best part wins),
``<@entity> on a A background`` (the clean entity fused with the text), the text alone and
the image alone; then the fusion's text weight swept in numpy over the frame vectors.

We report hit@1 (the top result lies in a true scene) and MRR (of the first true scene).

Usage::

    python scripts/bench_entities.py --trials 24 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

SCENE_S = 6.0
WEIGHTS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)


def _scene(objects: list[dict], background: str) -> dict:
    return {"duration": SCENE_S, "background": background, "objects": objects}


def _png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG")
    return path


def _frame(objects: list[dict], background: str, seed: int) -> np.ndarray:
    from framedex.synth import iter_frames, parse_spec

    spec = {"fps": 5, "size": [64, 64], "seed": seed, "scenes": [_scene(objects, background)]}
    return next(iter(iter_frames(parse_spec(spec)))).copy()


class World:
    """The trials' objects and videos, indexed into one library, and the scenes' truth."""

    def __init__(self, trials: int, seed: int, root: Path) -> None:
        from framedex import Library
        from framedex.synth import BACKGROUNDS, COLORS, SHAPES, render

        rng = np.random.default_rng(seed)
        self.rng = rng
        self.root = root
        self.saved = 0  # reference images written
        self.lib = Library(root / "db", model="synthetic-shapes", device="cpu",
                           log_queries=False)
        objects = [(s, c) for s in SHAPES for c in COLORS]
        backgrounds = list(BACKGROUNDS)
        picks = rng.choice(len(objects), trials, replace=trials > len(objects))
        self.trials: list[dict] = []
        self.scenes: dict[str, list[tuple[str, set[tuple[str, str]]]]] = {}
        for t, pick in enumerate(picks):
            shape, colour = objects[int(pick)]
            other_shape = str(rng.choice([s for s in SHAPES if s != shape]))
            other_colour = str(rng.choice([c for c in COLORS if c != colour]))
            bg_a, bg_b = (str(b) for b in rng.choice(backgrounds, 2, replace=False))
            obj = {"shape": shape, "color": colour}
            same_colour = {"shape": other_shape, "color": colour}
            same_shape = {"shape": shape, "color": other_colour}
            scenes = [_scene([obj], bg_a),
                      _scene([same_colour], str(rng.choice(backgrounds))),
                      _scene([same_shape], str(rng.choice(backgrounds))),
                      _scene([obj], bg_b),
                      _scene([same_colour, same_shape], str(rng.choice(backgrounds)))]
            path = root / f"t{t}.mp4"
            render({"fps": 5, "size": [64, 64], "seed": int(rng.integers(1 << 30)),
                    "scenes": scenes}, path)
            outcome = self.lib.index_file(path)
            if outcome.status != "indexed":
                raise SystemExit(f"indexing {path} failed: {outcome.error}")
            self.scenes[outcome.video_id] = [
                (s["background"], {(o["shape"], o["color"]) for o in s["objects"]})
                for s in scenes]
            self.trials.append({"obj": obj, "bg_a": bg_a, "bg_b": bg_b})
        self.frames = self._frames()

    def _frames(self) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """Every indexed frame's vector, and its (video, scene)."""
        from framedex.library import internals

        store = internals(self.lib).store
        vectors, where = [], []
        for video_id in self.scenes:
            frames = store.read_frames(video_id)
            vectors.append(frames.vectors)
            where += [(video_id, min(int(p // SCENE_S), 4)) for p in frames.pts_sec]
        return np.concatenate(vectors).astype(np.float64), where

    def truth(self, obj: dict, background: str | None = None) -> set[tuple[str, int]]:
        """The scenes that show ``obj`` (on ``background``, if given)."""
        key = (obj["shape"], obj["color"])
        return {(v, i) for v, scenes in self.scenes.items()
                for i, (bg, objs) in enumerate(scenes)
                if key in objs and background in (None, bg)}

    def references(self, obj: dict, cluttered: bool) -> list[Path]:
        """Three reference images of ``obj`` saved as PNG files (cluttered: each with another
        random object, a different one each time)."""
        from framedex.synth import COLORS, SHAPES

        others = [(s, c) for s in SHAPES for c in COLORS if (s, c) != (obj["shape"],
                                                                         obj["color"])]
        clutter = self.rng.choice(len(others), 3, replace=False)
        paths = []
        for i, bg in enumerate(("black", "gray", "white")):
            objs = [{**obj, "size": (0.3, 0.45, 0.6)[i]}]
            if cluttered:
                shape, colour = others[int(clutter[i])]
                objs.append({"shape": shape, "color": colour, "size": 0.45})
            image = _frame(objs, bg, int(self.rng.integers(1 << 30)))
            self.saved += 1
            paths.append(_png(image, self.root / f"ref{self.saved}.png"))
        return paths

    def rank_scores(self, scores: np.ndarray, truth: set[tuple[str, int]]) -> int:
        """The rank of the first true scene when scenes are ranked by their best frame."""
        best: dict[tuple[str, int], float] = {}
        for s, key in zip(scores, self.frames[1], strict=True):
            best[key] = max(best.get(key, -np.inf), float(s))
        order = sorted(best, key=lambda k: -best[k])
        return next(r for r, k in enumerate(order, 1) if k in truth)

    def rank_hits(self, hits: list, truth: set[tuple[str, int]]) -> int:
        """The rank of the first moment whose middle lies in a true scene (999: none)."""
        for r, h in enumerate(hits, 1):
            if (h.video_id, min(int((h.start + h.end) / 2 // SCENE_S), 4)) in truth:
                return r
        return 999


def _row(ranks: list[int]) -> tuple[str, str]:
    r = np.asarray(ranks, float)
    return f"{(r == 1).mean():.2f}", f"{(1 / r).mean():.2f}"


Ranks = dict[tuple[str, ...], list[int]]


def entities(world: World) -> tuple[Ranks, dict[str, str]]:
    """Ranks for each (entity vector, references), and the clean entities' ids by trial."""
    from framedex.query.compose import entity_vector

    lib, (frames, _) = world.lib, world.frames
    collection = lib.create_entity_collection("bench")
    ranks: Ranks = {}
    clean: dict[str, str] = {}
    for t, trial in enumerate(world.trials):
        truth = world.truth(trial["obj"])
        for kind in ("clean", "cluttered"):
            assets = [lib.add_asset(p, filename=p.name).asset_id
                      for p in world.references(trial["obj"], kind == "cluttered")]
            entity = lib.create_entity(collection.entity_collection_id, f"{kind} {t}", assets)
            if kind == "clean":
                clean[str(t)] = entity.entity_id
            refs = np.asarray(entity.vectors, np.float64)
            scores = {"mean": frames @ entity_vector(refs), "MaxSim": (frames @ refs.T).max(1)}
            for name, s in scores.items():
                ranks.setdefault((name, kind), []).append(world.rank_scores(s, truth))
            hits = lib.search(f"<@{entity.entity_id}>", limit=50)
            ranks.setdefault(("mean, `lib.search`", kind), []).append(
                world.rank_hits(hits, truth))
    return ranks, clean


def composed(world: World, clean: dict[str, str]) -> Ranks:
    """Ranks for composed queries, ``or`` parts, each input alone and each text weight."""
    from framedex.query.compose import fuse
    from framedex.rules import COMPOSE_TEXT_WEIGHT

    lib, (frames, _) = world.lib, world.frames
    ranks: Ranks = {}
    for t, trial in enumerate(world.trials):
        obj, text = trial["obj"], f"on a {trial['bg_a']} background"
        truth = world.truth(obj, trial["bg_a"])
        image = _frame([{**obj, "size": 0.45}], trial["bg_b"], 7 + t)
        queries = {
            f"composed (`compose=True`, w={COMPOSE_TEXT_WEIGHT})":
                {"text": text, "image": image, "compose": True},
            "`or` parts (text, image)": {"text": text, "image": image, "operator": "or"},
            "`<@entity> on a … background`": {"text": f"<@{clean[str(t)]}> {text}"},
            "text alone": {"text": text},
            "image alone": {"image": image},
        }
        for name, query in queries.items():
            hits = lib.search(**query, limit=50)  # type: ignore[arg-type]
            ranks.setdefault((name,), []).append(world.rank_hits(hits, truth))
        t_vec = lib.embed_text([text]).astype(np.float64)
        v_vec = np.asarray(lib.encoder.encode_images([image]), np.float64)
        for w in WEIGHTS:
            q = fuse(t_vec, v_vec, w).astype(np.float64)
            ranks.setdefault((f"fused frames, w={w}",), []).append(
                world.rank_scores(frames @ q, truth))
    return ranks


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24,
                        help="objects (one video each) per world")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one world each; the tables pool their trials")
    args = parser.parse_args()
    vectors: Ranks = {}
    queries: Ranks = {}
    frames, t0 = 0, time.perf_counter()
    for seed in args.seeds:
        world = World(args.trials, seed, Path(tempfile.mkdtemp(prefix="bench_entities_")))
        found, clean = entities(world)
        for into, ranks in ((vectors, found), (queries, composed(world, clean))):
            for key, r in ranks.items():
                into.setdefault(key, []).extend(r)
        frames += len(world.frames[1])
        world.lib.close()
    print(f"{args.trials * len(args.seeds)} trials ({len(args.seeds)} worlds), {frames} indexed "
          f"frames, {time.perf_counter() - t0:.0f} s\n")
    print(_table(["entity vector", "references", "hit@1", "MRR"],
                 [[*key, *_row(r)] for key, r in sorted(vectors.items(),
                                                        key=lambda kv: kv[0][::-1])]))
    print()
    print(_table(["query", "hit@1", "MRR"], [[*key, *_row(r)] for key, r in queries.items()]))


if __name__ == "__main__":
    main()
