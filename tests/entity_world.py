"""A generated world for entity and composed search, shared by the library and SDK tests.

The entity is a blue star (``needles.BLUE``). ``DISTRACTORS`` is a 24 s video of four 6 s
scenes whose objects share the entity's colour or its shape, and one that shows the entity on
a white background:

- 0-6 s: a blue circle on black (the colour),
- 6-12 s: a red star on black (the shape),
- 12-18 s: **a blue star on white** (the entity),
- 18-24 s: a blue square and a yellow star on gray (both, on two objects).

With ``needles``' ``blue`` video (a blue star on black at 18-24 s) the entity is in two
scenes, one on white and one on black. Reference images show a blue star alone, on each
background, at three sizes and positions.
"""

from __future__ import annotations

import io

import numpy as np
from needles import BLUE

ON_WHITE = (12.0, 18.0)
#: The scenes of ``DISTRACTORS`` that share only the colour or only the shape.
DISTRACTOR_SPANS = [(0.0, 6.0), (6.0, 12.0), (18.0, 24.0)]


def _scene(objects: list[dict], background: str) -> dict:
    return {"duration": 6.0, "background": background, "objects": objects}


DISTRACTORS = {"fps": 5, "size": [64, 64], "seed": 21, "scenes": [
    _scene([{"shape": "circle", "color": "blue"}], "black"),
    _scene([{"shape": "star", "color": "red"}], "black"),
    _scene([BLUE], "white"),
    _scene([{"shape": "square", "color": "blue"}, {"shape": "star", "color": "yellow"}],
           "gray"),
]}


def reference_image(i: int, obj: dict = BLUE) -> np.ndarray:
    """The ``i``-th reference image of an object: one frame of it alone, on black, gray or
    white in turn, at another size and position each time."""
    from framedex.synth import iter_frames, parse_spec

    sized = {**obj, "size": (0.3, 0.45, 0.6)[i % 3]}
    spec = {"fps": 5, "size": [64, 64], "seed": 100 + i,
            "scenes": [_scene([sized], ("black", "gray", "white")[i % 3])]}
    return next(iter(iter_frames(parse_spec(spec)))).copy()


def png(image: np.ndarray) -> bytes:
    """An RGB array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def tiny_png(side: int = 4) -> bytes:
    """A valid PNG under the smallest side images may have."""
    return png(np.full((side, side, 3), 200, np.uint8))


def overlaps(start: float, end: float, span: tuple[float, float]) -> bool:
    """Whether a result's [start, end) lies mostly in ``span`` (moments may reach a frame
    past a cut)."""
    inside = min(end, span[1]) - max(start, span[0])
    return inside > 0.5 * (end - start)
