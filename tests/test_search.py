"""Library search: the right moments, merged neighbours, grouping, filters, visibility.

A small generated library (three synthetic videos with known object spans) is indexed once
per module with the shipped ``synthetic-shapes`` model; retrieval quality is measured against
the videos' ground truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from framedex.errors import ConfigError, EmptyLibraryError
from framedex.library import internals
from framedex.query.search import SearchFilters
from framedex.synth import render
from framedex.synth.captions import object_phrase

# (name, duration, needles, metadata); needles are distinct objects per video.
VIDEOS = [
    ("long_a", 40.0, [("circle", "red", 6.0, 6.0), ("square", "green", 24.0, 5.0)],
     {"cam": "a", "night": False}),
    ("long_b", 36.0, [("star", "blue", 8.0, 6.0), ("triangle", "yellow", 22.0, 6.0)],
     {"cam": "b", "night": True}),
    ("short_c", 14.0, [("star", "purple", 4.0, 5.0)], {"cam": "c", "night": False}),
]
QUERIES = [(shape, color) for _, _, needles, _ in VIDEOS for shape, color, _, _ in needles]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model):
    """(Library, {video_id: Truth}, {name: video_id}) over three indexed synthetic videos."""
    from framedex import Library

    root = tmp_path_factory.mktemp("search_world")
    lib = Library(root / "db", model="synthetic-shapes")
    truths, ids = {}, {}
    for seed, (name, duration, needles, meta) in enumerate(VIDEOS):
        spec = _spec(duration, needles, seed)
        path = root / "videos" / f"{name}.mp4"
        path.parent.mkdir(exist_ok=True)
        truth = render(spec, path)
        outcome = lib.index_file(path, metadata=meta)
        assert outcome.status == "indexed", outcome.error
        truths[outcome.video_id] = truth
        ids[name] = outcome.video_id
    return lib, truths, ids


def _spec(duration: float, needles, seed: int) -> dict:
    """Needle scenes on black; between them, filler scenes whose objects are all orange or
    shapes on an empty gray/white background, so each query object's truth is its needles."""
    rng = np.random.default_rng(seed)
    scenes, t = [], 0.0
    for shape, color, start, dur in [*sorted(needles, key=lambda n: n[2]),
                                     (None, None, duration, 0.0)]:
        while t < start - 1e-9:
            d = min(float(rng.integers(3, 7)), start - t)
            objs = ([{"shape": str(rng.choice(["circle", "square", "triangle"])),
                      "color": "orange"}] if rng.random() < 0.5 else [])
            scenes.append({"duration": d, "background": str(rng.choice(["gray", "white"])),
                           "objects": objs})
            t += d
        if shape is not None:
            scenes.append({"duration": dur, "background": "black",
                           "objects": [{"shape": shape, "color": color}]})
            t += dur
    return {"fps": 5, "size": [96, 96], "seed": seed, "scenes": scenes}


def _in_spans(t: float, spans: list[tuple[float, float]], tol: float = 1.0) -> bool:
    return any(a - 1e-6 <= t < b + tol for a, b in spans)


def test_search_finds_each_object_inside_its_truth_spans(world):
    lib, truths, _ = world
    precisions = []
    for shape, color in QUERIES:
        spans = {vid: tr.spans_with(shape=shape, color=color) for vid, tr in truths.items()}
        n_true = sum(len(s) for s in spans.values())
        k = min(5, n_true)
        hits = lib.search(object_phrase(shape, color), limit=k)
        good = [_in_spans(m.best_pts_sec, spans[m.video_id]) for m in hits]
        precisions.append(sum(good) / k)
    assert np.mean(precisions) >= 0.8, list(zip(QUERIES, precisions, strict=True))


def test_neighbouring_frames_merge_into_one_moment(world):
    lib, truths, _ids = world
    best = lib.search("a red circle", limit=1)[0]
    # A red-circle scene (6 s needle of long_a, or a filler scene) is indexed as several frames
    # at 1 fps: one moment covering the scene, not one moment per frame nor the whole video.
    spans = truths[best.video_id].spans_with(shape="circle", color="red")
    assert best.num_hits >= 3 and best.end - best.start >= 3.0
    assert any(a - 1.0 <= best.start and best.end <= b + 1.0 for a, b in spans), (best, spans)


def test_group_by_video_gives_one_entry_per_video_best_first(world):
    lib, truths, ids = world
    hits = lib.search("a purple star", limit=10, group_by="video", threshold="none")
    vids = [h.video_id for h in hits]
    assert len(vids) == len(set(vids)) == len(ids)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in hits:
        assert h.score == h.moments[0].score == max(m.score for m in h.moments)
        assert set(h.to_json()) >= {"video_id", "path", "start", "end", "score", "moments"}
    # the best video shows a purple star (the needle, or in its filler)
    assert truths[vids[0]].spans_with(shape="star", color="purple")


def test_moment_results_are_ranked_and_within_the_video(world):
    lib, truths, _ = world
    hits = lib.search("a green square", limit=8)
    assert 1 <= len(hits) <= 8
    assert [m.score for m in hits] == sorted((m.score for m in hits), reverse=True)
    for m in hits:
        assert set(m.to_json()) == {"video_id", "path", "start", "end", "score", "confidence"}
        assert 0.0 <= m.start < m.end <= truths[m.video_id].duration + 1e-6
        assert m.start <= m.best_pts_sec < m.end


def test_filters_on_duration_path_and_metadata(world):
    lib, _, ids = world

    def videos_of(**kw) -> set[str]:
        return {m.video_id for m in lib.search("a star", limit=50, threshold="none",
                                               filters=SearchFilters(**kw))}

    assert videos_of(max_duration=20.0) == {ids["short_c"]}
    assert videos_of(min_duration=30.0) == {ids["long_a"], ids["long_b"]}
    assert videos_of(path_glob="*/long_*.mp4") == {ids["long_a"], ids["long_b"]}
    assert videos_of(path_glob="short_*") == {ids["short_c"]}
    assert videos_of(metadata={"cam": "b"}) == {ids["long_b"]}
    assert videos_of(metadata={"night": False}) == {ids["long_a"], ids["short_c"]}
    assert videos_of(metadata={"cam": "zzz"}) == set()
    with pytest.raises(ConfigError, match="max_duration"):
        SearchFilters(min_duration=10, max_duration=5)


def test_uncommitted_frames_are_invisible(world):
    lib, _, ids = world
    query = lib.embed_text(["a purple star"])[0]
    perfect = np.repeat(query[None], 5, 0)

    def write(vid: str, gen: int, t0: float) -> None:  # frames and a segment, like the indexer
        store = internals(lib).store
        store.add_frames(vid, gen, np.arange(5), np.arange(5) * 10,
                         np.arange(t0, t0 + 5, dtype=float), perfect)
        store.add_segments(vid, gen, np.array([t0]), np.array([t0 + 6.0]), np.array([5]),
                           query[None])

    # A crashed index run: frames that match the query perfectly, but no videos row.
    write("crashed-video", 1, 0.0)
    # And a re-index of a real video that has not been swapped in yet (another generation).
    victim = ids["long_a"]
    live = internals(lib).store.get_video(victim).generation
    write(victim, live + 1, 500.0)
    try:
        hits = lib.search("a purple star", limit=50)
        assert hits and "crashed-video" not in {m.video_id for m in hits}
        assert {m.video_id for m in hits} <= set(ids.values())
        assert all(m.start < 500 for m in hits if m.video_id == victim)
    finally:
        internals(lib).store.abort_video(victim, live + 1)


def test_search_logs_one_row_per_query(world):
    lib, _, _ = world
    before = lib.sql("SELECT count(*) AS n FROM query_log WHERE kind = 'search'")["n"][0]
    lib.search("a yellow triangle", limit=3, threshold="none")
    after = lib.sql("SELECT query, budget, result_size FROM query_log WHERE kind = 'search' "
                    "ORDER BY ts DESC LIMIT 1").to_pylist()[0]
    n = lib.sql("SELECT count(*) AS n FROM query_log WHERE kind = 'search'")["n"][0]
    assert n.as_py() == before.as_py() + 1
    assert after == {"query": "a yellow triangle", "budget": 3, "result_size": 3}


def test_bad_search_input_and_empty_library(world, tmp_path):
    from framedex import Library

    lib, _, _ = world
    with pytest.raises(ConfigError, match="text"):
        lib.search("   ")
    with pytest.raises(ConfigError, match="limit"):
        lib.search("a star", limit=0)
    with pytest.raises(ConfigError, match="group_by"):
        lib.search("a star", group_by="scene")
    with pytest.raises(EmptyLibraryError):
        Library(tmp_path / "empty").search("a star")
