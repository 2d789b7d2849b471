"""Cold-start cost of the query commands: ``framedex search``, ``framedex select``, text encoding.

A query against a cached index only needs the query text encoded, so a fresh process should
not pay for torch and open_clip (~5 s here). This script builds a small store with the shipped
``synthetic-shapes`` model (a 20 s synthetic video indexed at 1 fps), then times N fresh
processes of each command below and prints the medians as a markdown table:

- ``python -c pass``: the interpreter alone (the floor);
- ``framedex search "a red circle" --db DB``;
- ``framedex select VIDEO "when is the red circle?" --db DB``;
- ``load_text_encoder('synthetic-shapes').encode_text(['a red circle'])`` (numpy encoder);
- the same with ``load_encoder(..., device='cpu')`` (open_clip + torch), for comparison.

``--unchanged N`` (default 100; 0 skips) adds the no-work rows: ``framedex index FOLDER`` of
N already-indexed files (every one ``unchanged``) and of an empty folder, with the peak RSS of
each run: both answer from hashes and metadata, without loading the encoder.

``framedex`` runs as ``python -m framedex`` with this checkout's ``src`` first on the path;
``--compare-src DIR`` adds the two CLI rows run with another source tree (e.g. the commit
before a change: ``git archive BASE src | tar -x -C /tmp/base``).

``--importtime`` adds, per command, the top-level imports that cost most (``python -X
importtime``, cumulative ms). ``--encode`` adds in-process numbers for the numpy and torch text
encoders: import, load, first call, and the median per-query encode time over 50 queries, on
the shipped model and on open_clip's real ViT-B-32 architecture with random weights (written
once to a temporary ``.safetensors``, ~600 MB). On a shared machine, BLAS threads fighting
other work dominate the per-query numbers; ``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1`` (both
backends single-threaded) gives stabler ones.

Usage::

    python scripts/bench_cli_startup.py                # 5 cold runs per command
    python scripts/bench_cli_startup.py --runs 9 --importtime --encode
    python scripts/bench_cli_startup.py --compare-src /tmp/base/src
    python scripts/bench_cli_startup.py --no-cli --encode
    python scripts/bench_cli_startup.py --no-cli --unchanged 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
QUERY = "a red circle"
QUESTION = "when is the red circle?"
VIDEO_SPEC = {
    "fps": 10, "size": [128, 96], "seed": 7,
    "scenes": [
        {"duration": 5.0, "background": "black", "objects": [{"shape": "circle", "color": "red"}]},
        {"duration": 5.0, "background": "white", "objects": [{"shape": "star", "color": "blue"}]},
        {"duration": 5.0, "background": "gray",
         "objects": [{"shape": "square", "color": "green"}, {"shape": "circle", "color": "red"}]},
        {"duration": 5.0, "background": "white", "objects": []},
    ],
}

ENCODE_CODE = """
import json, statistics, sys, time
t0 = time.perf_counter()
from framedex.indexer.encoder import load_encoder, load_text_encoder
t1 = time.perf_counter()
spec, backend = sys.argv[1], sys.argv[2]
enc = load_text_encoder(spec) if backend == "numpy" else load_encoder(spec, device="cpu")
assert enc.backend == backend, enc.backend
t2 = time.perf_counter()
enc.encode_text(["a red circle"])
t3 = time.perf_counter()
words = ["red", "blue", "green", "circle", "star", "square", "on", "a", "gray", "background"]
times = []
for i in range(50):
    text = " ".join(words[(i + j) % len(words)] for j in range(3 + i % 8))
    s = time.perf_counter()
    enc.encode_text([text])
    times.append(time.perf_counter() - s)
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t2,
                  "query_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times)}))
"""

TOKENIZER_CODE = """
import json, time
t0 = time.perf_counter()
from framedex.indexer.clip_bpe import ClipTokenizer
t1 = time.perf_counter()
tok = ClipTokenizer(77)
t2 = time.perf_counter()
tok(["a red circle"])
t3 = time.perf_counter()
tok(["naïve café “quoted” &amp; 🎉"])  # non-ASCII: imports ftfy on first use
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "first_s": t3 - t2,
                  "first_unicode_s": t4 - t3}))
"""


def env(src: Path = SRC) -> dict[str, str]:
    e = dict(os.environ)
    # An installed package has its bytecode cached; let the warm-up run write it here too.
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [e.get("PYTHONPATH")])])
    return e


def load() -> str:
    """The 1-minute load average: other work on a small machine shows in every number."""
    return f"load {os.getloadavg()[0]:.1f}"


def run(cmd: list[str], *, importtime: bool = False,
        src: Path = SRC) -> tuple[float, str, str]:
    """(wall seconds, stdout, stderr) of one fresh process; exits on failure."""
    if importtime:
        cmd = [cmd[0], "-X", "importtime", *cmd[1:]]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env(src), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return wall, proc.stdout, proc.stderr


def run_peak(cmd: list[str], codes: tuple[int, ...] = (0,)) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MB) of one fresh process; exits on an exit code
    not in ``codes``. On a shared machine the wall time includes waiting for a core."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) not in codes:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def bench_unchanged(root: Path, files: int, runs: int) -> None:
    """``framedex index`` of ``files`` indexed files (all unchanged) and of an empty folder."""
    from framedex.synth.render import render

    folder, empty, db = root / "lib", root / "empty", root / "db-unchanged"
    folder.mkdir()
    empty.mkdir()
    for i in range(files):
        render({"fps": 5, "size": [32, 32], "seed": i, "scenes": [
            {"duration": 2.0, "background": "black",
             "objects": [{"shape": "circle", "color": "red"}]}]}, folder / f"v{i:03d}.mp4")
    fx = [sys.executable, "-m", "framedex", "index"]
    t0 = time.perf_counter()
    run([*fx, str(folder), "--db", str(db), "--model", "synthetic-shapes", "--device", "cpu"])
    first = time.perf_counter() - t0
    print(f"\n## No work: `framedex index` of unchanged files ({runs} fresh processes each, "
          f"{load()}; the first index of the {files} files took {first:.1f} s)\n")
    print("| command | median s | min s | max s | median CPU s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, cmd, codes in (
            (f"framedex index FOLDER ({files} unchanged files)",
             [*fx, str(folder), "--db", str(db)], (0,)),
            # "no video files found": a one-line error, exit 1, and no model load
            ("framedex index EMPTY_FOLDER (exit 1)", [*fx, str(empty), "--db", str(db)], (1,))):
        results = [run_peak(cmd, codes) for _ in range(runs)]
        walls = [w for w, _, _ in results]
        print(f"| `{name}` | {statistics.median(walls):.2f} | {min(walls):.2f} | "
              f"{max(walls):.2f} | {statistics.median(c for _, c, _ in results):.2f} "
              f"| {max(m for _, _, m in results):.0f} |", flush=True)


def build_store(root: Path) -> tuple[Path, Path]:
    """A store with one 20 s synthetic video indexed by the shipped model; (db, video)."""
    sys.path.insert(0, str(SRC))
    from framedex import Library
    from framedex.synth.render import render

    video, db = root / "bench.mp4", root / "db"
    render(VIDEO_SPEC, video)
    outcome = Library(db, model="synthetic-shapes", device="cpu").index_file(video)
    if outcome.status != "indexed":
        sys.exit(f"indexing failed: {outcome.error}")
    return db, video


def top_imports(stderr: str, n: int) -> list[tuple[str, float]]:
    """Top-level modules by cumulative import time (ms) from ``-X importtime`` output."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if not name.startswith("  "):  # one space after "|" = imported at top level
            rows.append((name.strip(), int(cumulative) / 1000.0))
    return sorted(rows, key=lambda r: -r[1])[:n]


def bench_commands(db: Path, video: Path, runs: int, importtime: bool,
                   compare_src: Path | None) -> None:
    py = sys.executable
    fx = [py, "-m", "framedex"]
    search = [*fx, "search", QUERY, "--db", str(db)]
    select = [*fx, "select", str(video), QUESTION, "--db", str(db)]
    commands: dict[str, tuple[list[str], Path]] = {
        "python -c pass": ([py, "-c", "pass"], SRC),
        f'framedex search "{QUERY}"': (search, SRC),
        f'framedex select VIDEO "{QUESTION}"': (select, SRC),
        "load_text_encoder + encode_text (numpy)": ([
            py, "-c", "from framedex.indexer.encoder import load_text_encoder; "
            f"load_text_encoder('synthetic-shapes').encode_text(['{QUERY}'])"], SRC),
        "load_encoder + encode_text (torch)": ([
            py, "-c", "from framedex.indexer.encoder import load_encoder; "
            f"load_encoder('synthetic-shapes', device='cpu').encode_text(['{QUERY}'])"], SRC),
    }
    if compare_src is not None:
        commands[f"search, src={compare_src}"] = (search, compare_src)
        commands[f"select, src={compare_src}"] = (select, compare_src)
    print(f"\n## Cold runs ({runs} fresh processes each, {os.cpu_count()} CPUs, {load()})\n")
    print("| command | median s | min s | max s |")
    print("|---|---:|---:|---:|")
    for name, (cmd, src) in commands.items():
        run(cmd, src=src)  # warm the page cache and .pyc files, as a second invocation finds them
        walls = [run(cmd, src=src)[0] for _ in range(runs)]
        print(f"| `{name}` | {statistics.median(walls):.2f} | {min(walls):.2f} | "
              f"{max(walls):.2f} |", flush=True)
    if importtime:
        for name, (cmd, src) in commands.items():
            if cmd[-1] == "pass":
                continue
            _, _, err = run(cmd, importtime=True, src=src)
            print(f"\n### Top imports: `{name}` (cumulative ms)\n")
            for module, ms in top_imports(err, 12):
                print(f"- {module}: {ms:.0f}")


def write_vit_b_32(path: Path) -> str:
    """open_clip's ViT-B-32 with random weights, saved as a fp32 .safetensors; its spec."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32")  # no pretrained tag: random init, no download
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return f"ViT-B-32:{path}"


def bench_encode(root: Path, runs: int) -> None:
    py = sys.executable
    print(f"\n## Tokenizer alone (fresh process, median of runs, {load()})\n")
    rows = [json.loads(run([py, "-c", TOKENIZER_CODE])[1]) for _ in range(runs)]
    print("| import s | build (merges) s | first call s | first non-ASCII call (ftfy) s |")
    print("|---:|---:|---:|---:|")
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"| {med['import_s']:.3f} | {med['build_s']:.3f} | {med['first_s']:.4f} | "
          f"{med['first_unicode_s']:.3f} |")

    print(f"\n## Text encoders in process (median of fresh processes, {load()})\n")
    specs = {"synthetic-shapes": "synthetic-shapes",
             "ViT-B-32 (random weights)": write_vit_b_32(root / "vit_b_32.safetensors")}
    print("| model | backend | import s | load s | first encode s | per query ms | best ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, spec in specs.items():
        for backend in ("numpy", "torch"):
            n = runs if backend == "numpy" else max(1, runs // 2)
            rows = [json.loads(run([py, "-c", ENCODE_CODE, spec, backend])[1])
                    for _ in range(n)]
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            print(f"| {label} | {backend} | {med['import_s']:.2f} | {med['load_s']:.2f} | "
                  f"{med['first_s']:.3f} | {med['query_ms']:.1f} | {med['min_ms']:.1f} |",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per command")
    ap.add_argument("--importtime", action="store_true", help="print top import costs")
    ap.add_argument("--encode", action="store_true",
                    help="in-process text encoder numbers (writes a ~600 MB ViT-B-32 file)")
    ap.add_argument("--compare-src", type=Path, default=None,
                    help="also time search/select with this src folder on the path")
    ap.add_argument("--no-cli", action="store_true", help="skip the cold CLI runs")
    ap.add_argument("--unchanged", type=int, default=100,
                    help="files in the no-work index rows (0: skip them)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="framedex-startup-") as tmp:
        root = Path(tmp)
        if not args.no_cli:
            db, video = build_store(root)
            bench_commands(db, video, args.runs, args.importtime, args.compare_src)
        if args.unchanged:
            bench_unchanged(root, args.unchanged, args.runs)
        if args.encode:
            bench_encode(root, args.runs)


if __name__ == "__main__":
    main()
