"""Generated videos with known needles, shared by the multivector and Twelve Labs tests.

Each video is 24 s of four 6 s scenes: filler, [a red circle on black], filler, [a blue star
on black]; a video may lack either needle (a filler stands in). Fillers show only orange shapes
or nothing on gray/white, so a query for a needle's object has the needle's span as its truth.
"""

from __future__ import annotations

import numpy as np

RED = {"shape": "circle", "color": "red"}
BLUE = {"shape": "star", "color": "blue"}
RED_SPAN, BLUE_SPAN = (6.0, 12.0), (18.0, 24.0)
VIDEOS = {"both": (True, True), "red": (True, False), "blue": (False, True),
          "none": (False, False)}


def needle_spec(seed: int, red: bool, blue: bool) -> dict:
    """The spec of a 24 s needle video (5 fps, 64x64)."""
    rng = np.random.default_rng(seed)

    def filler() -> dict:
        objs = ([{"shape": str(rng.choice(["circle", "square", "triangle"])),
                  "color": "orange"}] if rng.random() < 0.5 else [])
        return {"duration": 6.0, "background": str(rng.choice(["gray", "white"])),
                "objects": objs}

    def needle(obj: dict) -> dict:
        return {"duration": 6.0, "background": "black", "objects": [obj]}

    scenes = [filler(), needle(RED) if red else filler(), filler(),
              needle(BLUE) if blue else filler()]
    return {"fps": 5, "size": [64, 64], "seed": seed, "scenes": scenes}


def needle_image(obj: dict, seed: int = 11) -> np.ndarray:
    """One rendered frame of a needle scene (what a user would search with)."""
    from framedex.synth import iter_frames, parse_spec

    spec = {"fps": 5, "size": [64, 64], "seed": seed,
            "scenes": [{"duration": 1.0, "background": "black", "objects": [obj]}]}
    return next(iter(iter_frames(parse_spec(spec)))).copy()


def needle_png(obj: dict) -> bytes:
    """:func:`needle_image` as PNG bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(needle_image(obj)).save(buf, format="PNG")
    return buf.getvalue()
