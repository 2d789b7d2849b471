"""Regenerate tests/goldens/samplers_official.json: seeded inputs -> sampler indices.

The goldens pin AKS (defaults, K in {32, 64}), BOLT (dedupe=False, the official multiset, with
K < N and K >= N) and ViLAMP (defaults) on small seeded inputs. Inputs are stored in the JSON
itself (float64 round-trips exactly through JSON), so the test needs no generator code.
tests/test_samplers_official.py checks each case against the shipped sampler AND an independent
transcription of the official algorithm.

Usage:
    python scripts/generate_goldens.py [--out tests/goldens/samplers_official.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from framedex.query.samplers import create_sampler

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "goldens" / "samplers_official.json"


def clip_like_video(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors (scenes) and a query near the first scene."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, d))
    emb = centres[rng.integers(0, 6, n)] + 0.35 * rng.standard_normal((n, d))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    q = centres[0] + 1.5 * rng.standard_normal(d)
    return emb, q / np.linalg.norm(q)


def cases() -> list[dict]:
    out: list[dict] = []
    for seed, (n, k) in enumerate([(100, 32), (257, 64), (64, 64), (500, 32)]):
        rng = np.random.default_rng(1000 + seed)
        scores = rng.random(n)
        if seed % 2:  # one dense event, so AKS's TOP leaves appear in the goldens
            scores *= 0.02
            scores[n // 3:n // 3 + 70] = 0.99
        out.append({"id": f"aks-n{n}-k{k}-s{seed}", "sampler": "aks", "params": {}, "k": k,
                    "scores": scores.tolist()})
    # The last three have K >= N: the official multiset still has K draws (repeats included).
    for seed, (n, k, power) in enumerate([(300, 8, 3.0), (300, 32, 2.5), (50, 16, -1),
                                          (1000, 64, 3.0), (16, 16, 3.0), (10, 32, 2.5),
                                          (5, 64, -1)]):
        rng = np.random.default_rng(2000 + seed)
        scores = 0.2 + 0.05 * rng.standard_normal(n)
        scores[rng.integers(0, n)] += 0.3
        out.append({"id": f"bolt-n{n}-k{k}-p{power}", "sampler": "bolt",
                    "params": {"power": power, "dedupe": False}, "k": k,
                    "scores": scores.tolist()})
    for seed, (n, k) in enumerate([(120, 16), (200, 32), (60, 4)]):
        emb, q = clip_like_video(n, 12, 3000 + seed)
        out.append({"id": f"vilamp-n{n}-k{k}", "sampler": "vilamp", "params": {}, "k": k,
                    "scores": (emb @ q).tolist(), "embeddings": emb.tolist()})
    for case in out:
        emb = np.asarray(case["embeddings"]) if "embeddings" in case else None
        sampler = create_sampler(case["sampler"], **case["params"])
        case["indices"] = sampler.select_scores(np.asarray(case["scores"]), case["k"],
                                                frame_embeddings=emb)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = {"about": "seeded inputs -> indices; regenerate with scripts/generate_goldens.py",
            "cases": cases()}
    args.out.write_text(json.dumps(data) + "\n")
    print(f"wrote {len(data['cases'])} cases to {args.out}")


if __name__ == "__main__":
    main()
