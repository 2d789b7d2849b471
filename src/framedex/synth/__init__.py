"""framedex.synth: a synthetic video world with ground truth.

Coloured shapes (circle, square, star, triangle in six colours) drift over black, gray or white
backgrounds; scenes are separated by hard cuts. ``render(spec, "x.mp4")`` writes an H.264 MP4
and ``x.truth.json``; the same spec always gives the same video. See :mod:`.spec` for the spec
format, :mod:`.builders` for programmatic specs and :mod:`.captions` for the caption grammar
the bundled ``synthetic-shapes`` model was trained with. Only numpy is imported here; PyAV is
imported when a video is written.
"""

from framedex.synth.builders import haystack_spec, random_scene, random_spec
from framedex.synth.captions import Query, canonical_caption, random_caption, relevance
from framedex.synth.draw import draw_frame, iter_frames, plan, plan_scene
from framedex.synth.render import Truth, TruthScene, render, truth_of, truth_path
from framedex.synth.spec import BACKGROUNDS, COLORS, SHAPES, Spec, parse_spec
from framedex.synth.writer import write_video

__all__ = [
    "BACKGROUNDS", "COLORS", "SHAPES", "Query", "Spec", "Truth", "TruthScene",
    "canonical_caption", "draw_frame", "haystack_spec", "iter_frames", "parse_spec", "plan",
    "plan_scene", "random_caption", "random_scene", "random_spec", "relevance", "render",
    "truth_of", "truth_path", "write_video",
]
