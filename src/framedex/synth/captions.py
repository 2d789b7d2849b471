"""A caption grammar for the synthetic world, with the meaning of each caption.

Every caption comes with a :class:`Query` (what it asks for), and :func:`relevance` grades how
well a frame's ground truth answers it: 1.0 when the frame shows exactly what is described,
0.5 when it shows that and more (a query "a red circle" on a frame with a red circle and a
blue star), 0.0 otherwise. Training uses the grades as soft contrastive targets, so a short
query ranks frames that contain its object above frames that don't, and full descriptions
rank the exact frame first. Evaluation uses the same grades as ground truth.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from framedex.synth.spec import BACKGROUNDS, COLORS, SHAPES

_NUMBERS = {2: "two", 3: "three"}
Obj = tuple[str, str]  # (shape, color), the order Truth uses


@dataclass(frozen=True)
class Query:
    """The meaning of a caption: required items, optional background, or an empty frame.

    ``items`` are (shape | None, color | None) pairs; None is a wildcard ("a star",
    "something red"). Each item must be matched by a different object of the frame.
    """

    items: tuple[tuple[str | None, str | None], ...] = ()
    background: str | None = None
    empty: bool = False


def article(word: str) -> str:
    """'a' or 'an' for the next word."""
    return "an" if word[0] in "aeiou" else "a"


def object_phrase(shape: str, color: str, count: int = 1) -> str:
    """'a red circle', 'an orange star', 'two blue squares'."""
    if count == 1:
        return f"{article(color)} {color} {shape}"
    return f"{_NUMBERS.get(count, str(count))} {color} {shape}s"


def _join(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def objects_phrase(objects: Sequence[Obj]) -> str:
    """'a red circle and a blue square' (duplicates counted: 'two red circles')."""
    counts = Counter(objects)
    return _join([object_phrase(s, c, n) for (s, c), n in counts.items()])


def canonical_caption(background: str, objects: Sequence[Obj]) -> str:
    """The one full description used by evaluation, e.g.
    'a red circle and a blue square on a gray background' or 'an empty white screen'."""
    if not objects:
        return f"an empty {background} screen"
    return f"{objects_phrase(objects)} on a {background} background"


def relevance(query: Query, background: str, objects: Sequence[Obj]) -> float:
    """Grade a frame for a query: 1.0 exact, 0.5 contains it and more, 0.0 no.

    Args:
        query: what a caption asks for.
        background: the frame's background.
        objects: the frame's (shape, color) objects.

    Returns:
        The relevance grade.
    """
    if query.background is not None and query.background != background:
        return 0.0
    if query.empty:
        return 1.0 if not objects else 0.0
    if len(query.items) > len(objects):
        return 0.0
    for perm in itertools.permutations(objects, len(query.items)):
        if all((s is None or s == o[0]) and (c is None or c == o[1])
               for (s, c), o in zip(query.items, perm, strict=True)):
            return 1.0 if len(query.items) == len(objects) else 0.5
    return 0.0


def _with_background(text: str, bg: str, rng: np.random.Generator) -> str:
    forms = (f"{text} on a {bg} background", f"{text} on {bg}",
             f"a {bg} background with {text}", f"{text} against a {bg} background")
    return forms[rng.integers(len(forms))]


def _empty_caption(bg: str, rng: np.random.Generator) -> str:
    forms = (f"an empty {bg} screen", f"a blank {bg} frame", f"nothing on a {bg} background",
             f"a plain {bg} background", f"an empty {bg} frame with no shapes")
    return forms[rng.integers(len(forms))]


def _attribute_caption(obj: Obj, rng: np.random.Generator) -> tuple[str, Query]:
    shape, color = obj
    if rng.random() < 0.5:
        return f"a {shape}", Query(items=((shape, None),))
    forms = (f"{article(color)} {color} shape", f"something {color}")
    return forms[rng.integers(len(forms))], Query(items=((None, color),))


def random_caption(background: str, objects: Sequence[Obj],
                   rng: np.random.Generator, *, bound: bool = False) -> tuple[str, Query]:
    """Draw one caption (and its meaning) that is true of the frame.

    Forms: full description with or without background, a subset of the objects (how users
    query multi-object frames), a shape or colour alone, and empty-screen phrasings.

    Args:
        background: the frame's background.
        objects: the frame's (shape, color) objects.
        rng: random generator (captions are seeded like everything else).
        bound: only captions that name whole objects (colour and shape), with a subset of the
            objects more often (60 % instead of 25 %): the captions that tell a purple star
            from a purple triangle next to a yellow star.

    Returns:
        (caption text, its :class:`Query`).
    """
    objs = list(objects)
    if not objs:
        return _empty_caption(background, rng), Query(background=background, empty=True)
    u = rng.random()
    if u < 0.15 and not bound:
        return _attribute_caption(objs[rng.integers(len(objs))], rng)
    if (u < 0.60 if bound else u < 0.40) and len(objs) > 1:
        k = int(rng.integers(1, len(objs)))
        objs = [objs[i] for i in rng.choice(len(objs), size=k, replace=False)]
    else:
        objs = [objs[i] for i in rng.permutation(len(objs))]
    text = objects_phrase(objs)
    items = tuple((s, c) for s, c in objs)
    if rng.random() < 0.5:
        return _with_background(text, background, rng), Query(items=items, background=background)
    return text, Query(items=items)


def single_object_prompts() -> list[tuple[str, Obj]]:
    """All 24 'a {color} {shape}' prompts with their (shape, color)."""
    return [(object_phrase(s, c), (s, c)) for c in COLORS for s in SHAPES]


#: Words the caption grammar (and so the shipped ``synthetic-shapes`` model) knows, plus the
#: question words people add around them ("when is the red circle?").
VOCABULARY: frozenset[str] = frozenset(
    [*COLORS, *SHAPES, *(f"{s}s" for s in SHAPES), *BACKGROUNDS, "grey",
     "a", "an", "the", "and", "on", "with", "against", "of", "in", "at", "to", "is", "are",
     "does", "do", "there", "it", "its", "this", "that", "video", "frame", "frames", "shown",
     "background", "screen", "shape", "shapes", "something", "empty", "blank", "plain",
     "nothing", "no", "two", "three", "one", "when", "where", "what", "which", "who", "how",
     "appear", "appears", "visible", "show", "shows", "see", "first", "last", "then", "after",
     "before", "color", "colour", "colors", "colours", "any", "all", "object", "objects"])


def outside_world(text: str) -> list[str]:
    """Words of ``text`` the synthetic world does not have ('rabbit', 'forest'), in order."""
    import re

    words = re.findall(r"[a-z]+", text.lower())
    return list(dict.fromkeys(w for w in words if w not in VOCABULARY))


__all__ = [
    "VOCABULARY",
    "Query",
    "canonical_caption",
    "object_phrase",
    "objects_phrase",
    "outside_world",
    "random_caption",
    "relevance",
    "single_object_prompts",
]
