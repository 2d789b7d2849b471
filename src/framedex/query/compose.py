"""Query inputs: which parts a search has, and how a composed part becomes one vector.

A search's *parts* are what ``operator`` combines (each part is one query vector: one part
searches every frame, several rank videos, ``framedex.query.search``). A part is *composed*
when it fuses more than one input into its vector:

- a text that references entities (``"<@ENTITY_ID> on a white background"``, Twelve Labs'
  entity search): the entities' vectors with the rest of the text;
- with ``compose`` (a Twelve Labs query with ``query_text`` and images, and no
  ``operator``): every text, image and entity of the query, as one part ("this, doing
  that"), where parts would return the best single one.

How a part becomes a vector (:func:`fuse`): its visual side is the normalised mean of its
images' and entities' vectors (each counts once); its text side the normalised mean of its
texts' embeddings (entity references taken out); with both,
``normalise(w * text + (1 - w) * visual)`` with ``w = framedex.rules.COMPOSE_TEXT_WEIGHT``.

An entity's vector is the normalised mean of its reference images' embeddings
(:func:`entity_vector`). The other candidate, scoring a frame by its best reference (MaxSim
over the references), was measured against it on the synthetic world
(``scripts/bench_entities.py``, docs/twelvelabs.md): with clean references (the entity alone)
MaxSim is a little better (hit@1 0.97 against 0.92), since each frame meets the reference
closest to it; when each reference also shows something else it is far worse (0.51 against
0.99), since a frame then matches one reference's clutter as well as the entity itself. The
mean keeps what the references share, and real reference photos are rarely clean.

Example::

    parts = plan_parts(["<@e1> on a white background"], images=0, entities=[], compose=False)
    parts[0].text, parts[0].entities        # ("on a white background", ("e1",))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from framedex.errors import ConfigError
from framedex.rules import COMPOSE_TEXT_WEIGHT
from framedex.values import Array

#: ``<@ENTITY_ID>`` in a query text (Twelve Labs' syntax); what an id may hold.
ENTITY_REF = re.compile(r"<@([^<>]*)>")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class QueryPart:
    """One part of a query: the inputs fused into one query vector.

    Attributes:
        texts: words to embed (entity references taken out; empty texts dropped).
        images: positions of the part's images in the request's image list.
        entities: ids of the entities it references, in order, each once.
        label: what the query log shows for it.
    """

    texts: tuple[str, ...] = ()
    images: tuple[int, ...] = ()
    entities: tuple[str, ...] = ()
    label: str = ""


def entity_refs(text: str) -> tuple[str, list[str]]:
    """Split ``<@ENTITY_ID>`` references out of a text.

    Returns:
        the text without them (whitespace collapsed, possibly empty), and the ids in order.

    Raises:
        ConfigError: a reference whose id is not 1-64 letters, digits, ``-`` or ``_``.
    """
    ids = []
    for found in ENTITY_REF.finditer(text):
        ref = found.group(1)
        if not _ID.match(ref):
            raise ConfigError(f"text={found.group(0)[:80]!r} is invalid: an entity reference is "
                              "<@ENTITY_ID>, an id of 1-64 letters, digits, '-' or '_'")
        ids.append(ref)
    rest = " ".join(ENTITY_REF.sub(" ", text).split())
    return rest, ids


def plan_parts(texts: Sequence[str], images: int, entities: Sequence[str],
               compose: bool) -> list[QueryPart]:
    """The parts of a query.

    Without ``compose``: each text is a part (with the entities it references), each image
    another; ``entities`` (named outside the text, as ``framedex search --entity`` does) join
    the first text's part, as if written in it, or make a part of their own when there is no
    text. With ``compose``: one part holding every text, image and entity.

    Args:
        texts: the query's texts, as given (references in them are parsed here).
        images: how many query images the request has.
        entities: entity ids given besides the texts.
        compose: fuse everything into one part.

    Raises:
        ConfigError: a malformed entity reference.
    """
    parsed = [entity_refs(t) for t in texts]
    extra = tuple(entities)
    if compose:
        words = tuple(rest for rest, _ in parsed if rest)
        ids = _unique([i for _, refs in parsed for i in refs] + list(extra))
        label = " + ".join([*texts, *(["[image]"] * images),
                            *(f"<@{e}>" for e in extra)])
        return [QueryPart(words, tuple(range(images)), ids, label)]
    parts = []
    for n, ((rest, refs), text) in enumerate(zip(parsed, texts, strict=True)):
        ids = _unique(refs + list(extra if n == 0 else ()))
        label = text + "".join(f" <@{e}>" for e in extra) if n == 0 and extra else text
        parts.append(QueryPart((rest,) if rest else (), (), ids, label))
    if not texts and extra:
        parts.append(QueryPart((), (), _unique(list(extra)), " ".join(f"<@{e}>" for e in extra)))
    parts += [QueryPart((), (i,), (), "[image]") for i in range(images)]
    return parts


def _unique(ids: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))


def entity_vector(references: Array) -> Array:
    """An entity's query vector: the normalised mean of its (R, D) reference vectors."""
    return _unit(np.asarray(references, np.float64).mean(axis=0))


def fuse(text: Array | None, visual: Array | None,
         text_weight: float = COMPOSE_TEXT_WEIGHT) -> Array:
    """One query vector from a part's text and visual vectors (see the module docstring).

    Args:
        text: (T, D) embeddings of the part's texts, or None.
        visual: (V, D) vectors of its images and entities, or None.
        text_weight: the text side's weight when both are given.

    Returns:
        (D,) float32, L2-normalised.
    """
    sides = [_unit(np.asarray(x, np.float64).mean(axis=0)) if x is not None and len(x) else None
             for x in (text, visual)]
    t, v = sides
    if t is not None and v is not None:
        return _unit(text_weight * t + (1.0 - text_weight) * v).astype(np.float32)
    one = t if t is not None else v
    if one is None:
        raise ValueError("a query part has neither a text nor an image or entity")
    return one.astype(np.float32)


def _unit(x: Array) -> Array:
    norm = float(np.linalg.norm(x))
    return x / norm if norm > 0 else x
