"""The sampler contract, the registry, and budgets.

A sampler picks the frames of one video that a video LLM should see. It sees arrays already in
memory (the cached frame embeddings, the query embedding or precomputed relevance scores, the
timestamps, the budget), never a path, a table or a model; that keeps every sampler pure numpy
and testable on 20-element arrays.

Example::

    from framedex.query.samplers import create_sampler
    sampler = create_sampler("bolt", power=3.0)
    idx = sampler.select(frame_embeddings, query_embedding, budget=8)   # -> list[int]
    res = sampler.select_result(frame_embeddings, query_embedding, TokenBudget(8192))
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from framedex.errors import ConfigError, check
from framedex.query.samplers.scenes import scene_labels
from framedex.registry import Registry
from framedex.rules import LIMITS, TIERS, tier_tokens
from framedex.values import Array, Json, JsonObject


@dataclass(frozen=True)
class TokenBudget:
    """A budget in VLM tokens instead of frames.

    Args:
        tokens: total tokens the selection may cost.
        tokens_per_tier: tokens one frame costs at each tier (``high``/``mid``/``low``).
            The default is Gemini's (``framedex.rules.TIER_TABLE``).
    """

    tokens: int
    tokens_per_tier: Mapping[str, int] = field(default_factory=tier_tokens)

    def __post_init__(self) -> None:
        check(isinstance(self.tokens, (int, np.integer)) and self.tokens >= 1,
              "tokens", self.tokens, "must be an integer >= 1")
        for tier, cost in self.tokens_per_tier.items():
            check(tier in TIERS, "tokens_per_tier", tier, f"tier must be one of {TIERS}")
            check(int(cost) >= 1, f"tokens_per_tier[{tier!r}]", cost, "must be >= 1")

    def cost(self, tier: str) -> int:
        """Tokens one frame costs at ``tier`` (the cheapest known tier if ``tier`` is unset)."""
        if tier in self.tokens_per_tier:
            return int(self.tokens_per_tier[tier])
        return int(min(self.tokens_per_tier.values()))

    def max_frames(self, tier: str = "low") -> int:
        """How many frames fit when every frame is at ``tier``."""
        return self.tokens // self.cost(tier)


class CheckedFrames(int):
    """A request's frame budget, checked against ``framedex.rules.LIMITS["budget"]`` once,
    when made (:meth:`of`); a sampler takes it without checking again."""

    @classmethod
    def of(cls, value: object) -> CheckedFrames:
        """The checked budget.

        Raises:
            ConfigError: not an integer within the rule.
        """
        limit = LIMITS["budget"]
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) \
            and limit.holds(int(value))
        check(ok, "budget", value, limit.rule())
        assert isinstance(value, (int, np.integer))
        return cls(int(value))


@dataclass(frozen=True)
class CheckedTokens(TokenBudget):
    """A request's token budget (Gemini's tier costs), checked against
    ``framedex.rules.LIMITS["tokens"]`` once, when made (:meth:`of`): it affords at least one
    frame at the cheapest tier, so a sampler takes it without checking again."""

    def __post_init__(self) -> None:
        pass  # checked by ``of``, the one way to make it

    @classmethod
    def of(cls, value: object) -> CheckedTokens:
        """The checked budget.

        Raises:
            ConfigError: not an integer within the rule.
        """
        limit = LIMITS["tokens"]
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) \
            and limit.holds(int(value))
        check(ok, "tokens", value, limit.rule())
        assert isinstance(value, (int, np.integer))
        return cls(int(value))


Budget = int | TokenBudget


@dataclass
class Selection:
    """What a sampler chose, with everything the API reports beside the index list.

    Attributes:
        indices: positions into the N frames, ascending, distinct (unless a flag says otherwise).
        scores: relevance of each chosen frame (same order as ``indices``), or None.
        tiers: resolution tier per chosen frame (``high``/``mid``/``low``), or None.
        tokens_used: tokens the selection costs under a TokenBudget, or None.
        decision: the policy a router chose, or None.
        reason: why, in words, or None.
        extras: anything else a sampler wants to report (JSON-serialisable).
    """

    indices: list[int]
    scores: list[float] | None = None
    tiers: list[str] | None = None
    tokens_used: int | None = None
    decision: str | None = None
    reason: str | None = None
    extras: dict[str, object] = field(default_factory=dict)


class Sampler(ABC):
    """Base class of every sampler. Subclasses implement :meth:`_select`.

    Contract (enforced by ``tests/test_sampler_contract.py`` over ``list_samplers()``):
    - ``frame_embeddings`` is (N, D), L2-normalised, in time order; ``query_embedding`` is (D,).
    - relevance is the cosine ``frame_embeddings @ query_embedding``, computed in float64.
    - the result is positions into the N frames, ascending, distinct, in range, exactly
      ``min(K, N)`` of them by default; ``budget >= N`` returns all N; ``budget < 1`` raises.
      The one exception is a sampler configured to return the official multiset of K draws
      (:attr:`draws_multiset`, e.g. ``bolt`` with ``dedupe=False``): K positions, ascending,
      repeats allowed, for any K, K >= N included.
    - same inputs and seed give the same output.
    """

    #: Registry name, set by :func:`register_sampler`.
    name: ClassVar[str] = ""
    #: True when the sampler uses the query (relevance); False for uniform/fps/shots.
    query_aware: ClassVar[bool] = True
    #: True when the sampler needs frame-to-frame similarity (embeddings, not only scores).
    needs_embeddings: ClassVar[bool] = False

    @property
    def draws_multiset(self) -> bool:
        """True when this configuration returns K draws with repeats, not distinct frames.

        Such a sampler also sees ``budget >= N``: the "return all N" shortcut would differ
        from the official output it reproduces, which still draws K times.
        """
        return False

    def select(
        self,
        frame_embeddings: Array,
        query_embedding: Array | None,
        budget: Budget,
        timestamps: Array | None = None,
    ) -> list[int]:
        """Pick frames. Returns ascending positions into the N frames."""
        return self.select_result(frame_embeddings, query_embedding, budget, timestamps).indices

    def select_result(
        self,
        frame_embeddings: Array | None,
        query_embedding: Array | None,
        budget: Budget,
        timestamps: Array | None = None,
        *,
        scores: Array | None = None,
    ) -> Selection:
        """Like :meth:`select` but returns the full :class:`Selection`.

        Args:
            frame_embeddings: (N, D) L2-normalised, time order; may be None when ``scores``
                is given and the sampler does not need embeddings.
            query_embedding: (D,) L2-normalised, or None (query-free samplers, or ``scores``).
            budget: a frame count K >= 1, or a :class:`TokenBudget`.
            timestamps: (N,) seconds; defaults to 0, 1, 2, ... (the 1 fps index grid).
            scores: precomputed relevance (N,); overrides the cosine when given.

        Raises:
            ConfigError: bad shapes, a budget < 1, or missing inputs the sampler needs.
        """
        ctx = build_context(self, frame_embeddings, query_embedding, budget, timestamps, scores)
        if ctx.k >= ctx.n and ctx.token_budget is None and not self.draws_multiset:
            everything = list(range(ctx.n))
            return Selection(everything, _pick(ctx.scores, everything))
        sel = self._select(ctx)
        # The one check of tiers on the way to a VLM: where they come into being (a plug-in's
        # output); delivery, payloads, the cost line and the plot take them as they are.
        check(sel.tiers is None or all(t in TIERS for t in sel.tiers), "tiers",
              sel.tiers and sorted(set(sel.tiers) - set(TIERS)),
              f"sampler {self.name!r} returned tiers outside {', '.join(TIERS)}")
        if ctx.token_budget is not None and sel.tokens_used is None:
            # A sampler without tiers spends a token budget as K frames at the cheapest tier
            # (that is how ``build_context`` turned the budget into K); report it so.
            tier = min(ctx.token_budget.tokens_per_tier, key=ctx.token_budget.cost)
            sel.tiers = sel.tiers or [tier] * len(sel.indices)
            if len(sel.indices) >= ctx.n:  # every frame fits: spend the rest on resolution
                relevance = _pick(ctx.scores, sel.indices) or [0.0] * len(sel.indices)
                tb = ctx.token_budget
                left = tb.tokens - sum(tb.cost(t) for t in sel.tiers)
                step = min((tb.cost(t) - tb.cost(tier) for t in tb.tokens_per_tier
                            if tb.cost(t) > tb.cost(tier)), default=0)
                upgrades = min(len(sel.indices), left // step) if step else 0
                sel.tiers = upgrade_tiers(sel.tiers, relevance, tb,
                                          order=spread_order(ctx, sel.indices, upgrades))
            sel.tokens_used = sum(ctx.token_budget.cost(t) for t in sel.tiers)
        if sel.scores is None:
            sel.scores = _pick(ctx.scores, sel.indices)
        return sel

    def select_scores(
        self,
        scores: Array,
        budget: Budget,
        timestamps: Array | None = None,
        frame_embeddings: Array | None = None,
    ) -> list[int]:
        """Pick frames from precomputed relevance ``scores`` (N,) instead of a query embedding."""
        return self.select_result(
            frame_embeddings, None, budget, timestamps, scores=scores
        ).indices

    @abstractmethod
    def _select(self, ctx: SelectContext) -> Selection:
        """Pick frames from a validated context. Subclasses implement this only."""

    def config(self) -> JsonObject:
        """The parameters this sampler runs with, for logs and API echoes."""
        if dataclasses.is_dataclass(self):
            return dataclasses.asdict(self)
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


@dataclass
class SelectContext:
    """Validated inputs handed to :meth:`Sampler._select`.

    Attributes:
        n: number of frames N.
        k: frame budget (for a TokenBudget: the most frames that fit at the cheapest tier),
            already clipped to N.
        requested_k: the same budget before clipping to N (only a sampler that
            :attr:`~Sampler.draws_multiset` may return more than N positions).
        scores: relevance (N,), float64, or None for query-free samplers with no query.
        embeddings: (N, D) float32 or float64 (storage precision kept) or None when only
            scores were given.
        timestamps: (N,) seconds, float64 (defaults to 0, 1, 2, ... i.e. the 1 fps grid).
        token_budget: the TokenBudget when one was given, else None.
    """

    n: int
    k: int
    scores: Array | None
    embeddings: Array | None
    timestamps: Array
    token_budget: TokenBudget | None = None
    requested_k: int = 0

    def __post_init__(self) -> None:
        self.requested_k = max(self.requested_k, self.k)


def _pick(scores: Array | None, indices: list[int]) -> list[float] | None:
    return None if scores is None else [float(scores[i]) for i in indices]


def build_context(
    sampler: Sampler,
    frame_embeddings: Array | None,
    query_embedding: Array | None,
    budget: Budget,
    timestamps: Array | None,
    scores: Array | None,
) -> SelectContext:
    """Validate the inputs once, for every sampler, and compute relevance in float64."""
    emb = None
    if frame_embeddings is not None:
        emb = np.asarray(frame_embeddings)
        # Keep float32 storage as is: a float64 copy of an (N, D) matrix costs more than any
        # sampler (about 20 ms at N=14,400, D=512). Relevance is still returned in float64.
        if emb.dtype not in (np.float32, np.float64):
            emb = emb.astype(np.float64)
        check(emb.ndim == 2 and emb.shape[0] >= 1, "frame_embeddings", emb.shape,
              "must be a non-empty (N, D) array")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        check(scores.size >= 1, "scores", scores.shape, "must be a non-empty (N,) array")
        check(bool(np.isfinite(scores).all()), "scores", "...", "must be finite (no NaN/inf)")
        if emb is not None:
            check(len(emb) == len(scores), "scores", scores.shape,
                  f"must have one score per frame ({len(emb)})")
    elif query_embedding is not None:
        check(emb is not None, "frame_embeddings", None, "are needed to score a query")
        assert emb is not None
        q = np.asarray(query_embedding, dtype=np.float64).reshape(-1)
        check(q.shape[0] == emb.shape[1], "query_embedding", q.shape,
              f"must have the frames' dimension {emb.shape[1]}")
        # The cosine in the storage precision, then float64 for every normalisation and CDF.
        scores = np.asarray(emb @ q.astype(emb.dtype), dtype=np.float64)
    if sampler.query_aware:
        check(scores is not None, "query_embedding", None,
              f"sampler {sampler.name!r} needs a query embedding or precomputed scores")
    if sampler.needs_embeddings:
        check(emb is not None, "frame_embeddings", None,
              f"sampler {sampler.name!r} needs the frame embeddings")
    n = len(emb) if emb is not None else len(scores)  # type: ignore[arg-type]
    if timestamps is None:
        ts = np.arange(n, dtype=np.float64)
    else:
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        check(len(ts) == n, "timestamps", ts.shape, f"must have one timestamp per frame ({n})")
    token_budget = budget if isinstance(budget, TokenBudget) else None
    if isinstance(budget, (CheckedFrames, CheckedTokens)):  # a request's, checked at the facade
        k = budget.max_frames("low") if isinstance(budget, CheckedTokens) else int(budget)
    elif token_budget is not None:
        k = token_budget.max_frames("low")
        cheapest = min(int(c) for c in token_budget.tokens_per_tier.values())
        check(k >= 1, "tokens", token_budget.tokens,
              f"must afford at least one frame at the cheapest tier ({cheapest} tokens)")
    else:
        check(isinstance(budget, (int, np.integer)) and not isinstance(budget, bool),
              "budget", budget, "must be an integer frame count or a TokenBudget")
        assert not isinstance(budget, TokenBudget)  # an integer, checked just above
        check(budget >= 1, "budget", budget, "must be >= 1")
        k = int(budget)
    return SelectContext(n=n, k=min(k, n), scores=scores, embeddings=emb, timestamps=ts,
                         token_budget=token_budget, requested_k=k)


def upgrade_tiers(tiers: Sequence[str], scores: Sequence[float], budget: TokenBudget, *,
                  order: Sequence[int] | None = None) -> list[str]:
    """Raise frames to better tiers, the most relevant first, with the tokens ``tiers`` leave
    of ``budget``: a short video whose every frame fits at the cheapest tier should not send
    all of them at 66 tokens when 4,096 were offered.

    Each frame gets the best tier the rest of the budget pays for, in ``order`` (positions
    into ``tiers``; None: order of relevance, ties: the earlier frame).
    """
    out = list(tiers)
    left = budget.tokens - sum(budget.cost(t) for t in out)
    better = sorted(budget.tokens_per_tier, key=budget.cost, reverse=True)  # dearest first
    if order is None:
        order = sorted(range(len(out)), key=lambda j: (-float(scores[j]), j))
    for i in order:
        for tier in better:
            extra = budget.cost(tier) - budget.cost(out[i])
            if extra <= 0:
                break
            if extra <= left:
                out[i], left = tier, left - extra
                break
    return out


def spread_order(ctx: SelectContext, indices: Sequence[int], steps: int) -> list[int] | None:
    """The order in which to spend a token budget's expensive frames among ``indices``
    (places in it are returned): greedy on relevance (min-max, in [0, 1]) minus the frame's
    summed similarity to the frames already taken *in its own scene*
    (:func:`~framedex.query.samplers.scenes.scene_labels`), so that the better tiers go round
    the relevant scenes instead of to the consecutive, near-identical frames of the best one
    (``--tokens 4096`` on a short video sent 12 consecutive seconds of one scene at ``high``).
    Other scenes pay nothing for looking alike: a second appearance of the same object is
    evidence (a penalty over the whole video made the router skip a needle's second
    appearance, 720 s after the first, for unrelated scenes). A sum, not MMR's max: with a
    max, a near-duplicate of the best scene (penalty 1 once) keeps beating a less relevant
    scene forever.

    Only the first ``steps`` places (the upgrades the budget can pay for) are ordered so; the
    rest follow by relevance. None (then: relevance order) without embeddings or scores, or
    when ``steps`` x frames exceeds :data:`SPREAD_MAX_WORK` (each step is a pass over all).
    """
    if (ctx.embeddings is None or ctx.scores is None or not len(indices) or steps < 1
            or steps * len(indices) > SPREAD_MAX_WORK):
        return None
    idx = np.asarray(indices, dtype=np.int64)
    scene = scene_labels(ctx.embeddings)[idx]
    emb = np.asarray(ctx.embeddings[idx], dtype=np.float32)
    rel = np.asarray(ctx.scores[idx], dtype=np.float64)
    span = float(rel.max() - rel.min())
    gain = (rel - rel.min()) / span if span > 0 else np.zeros(len(idx))
    rel = gain.copy()
    order: list[int] = []
    for _ in range(min(steps, len(idx))):
        best = int(np.argmax(gain))  # ties: the earlier frame
        order.append(best)
        gain -= np.where(scene == scene[best], np.clip(emb @ emb[best], 0.0, None), 0.0)
        gain[order] = -np.inf
    taken = set(order)
    return order + [int(j) for j in np.argsort(-rel, kind="stable") if int(j) not in taken]


#: Most (upgrade steps x chosen frames) :func:`spread_order` spends (about 0.1 s of matrix
#: products at 512 dimensions); more: relevance order.
SPREAD_MAX_WORK = 250_000


_SAMPLERS: Registry[type[Sampler]] = Registry("sampler")

#: Class decorator registering a sampler under a name (duplicates raise), as a third party would.
register_sampler = _SAMPLERS.register
#: Remove a registered sampler (unloading a plug-in, a test's fake).
unregister_sampler = _SAMPLERS.unregister


def list_samplers() -> list[str]:
    """Names of all registered samplers, sorted."""
    return _SAMPLERS.names()


def create_sampler(name: str | Sampler, **params: Json) -> Sampler:
    """Build a sampler by name. ``None``-valued params mean "use the default" and are dropped.

    Raises:
        UnknownNameError: unknown name (the message lists known names and the closest one).
        ConfigError: an unknown parameter (the message lists the sampler's parameters and
            suggests the closest), a value of the wrong type, or a value its rule refuses.
    """
    if isinstance(name, Sampler):
        return name
    cls = _SAMPLERS.get(str(name))
    params = {k: v for k, v in params.items() if v is not None}
    known = {p.name: p for p in sampler_params(cls)}
    for key, value in params.items():
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            listing = ", ".join(f"{p.name} (default {p.default!r})" for p in known.values()) \
                or "none"
            raise ConfigError(f"sampler {name!r} has no parameter {key!r}.{hint} "
                              f"Its parameters: {listing}")
        _check_type(str(name), known[key], value)
    try:
        return cls(**params)
    except TypeError as ex:
        raise ConfigError(f"bad parameter for sampler {name!r}: {ex}") from ex


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of a sampler, for ``framedex samplers NAME`` and the API."""

    name: str
    type: str
    default: Json
    doc: str

    def to_json(self) -> JsonObject:
        """A JSON-ready dict."""
        return {"name": self.name, "type": self.type, "default": self.default, "doc": self.doc}


@dataclass(frozen=True)
class SamplerInfo:
    """What ``framedex samplers`` lists: name, one-line description, parameters."""

    name: str
    description: str
    query_aware: bool
    params: tuple[ParamInfo, ...]

    def to_json(self) -> JsonObject:
        """A JSON-ready dict."""
        return {"name": self.name, "description": self.description,
                "query_aware": self.query_aware, "params": [p.to_json() for p in self.params]}


def sampler_params(cls: type[Sampler]) -> list[ParamInfo]:
    """The constructor parameters of a sampler class, with types, defaults and the docs its
    docstring's ``Args:`` section gives them."""
    return list(_class_params(cls))


@functools.cache
def _class_params(cls: type[Sampler]) -> tuple[ParamInfo, ...]:
    """:func:`sampler_params`, once per class: ``typing.get_type_hints`` evaluates every
    annotation (0.8 ms of a warm select under cProfile, when it ran per request)."""
    import typing

    if not dataclasses.is_dataclass(cls):
        return ()
    hints = typing.get_type_hints(cls)
    docs = _arg_docs(cls.__doc__ or "")
    out = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append(ParamInfo(f.name, _type_name(hints.get(f.name, Any)), default,
                             docs.get(f.name, "")))
    return tuple(out)


def sampler_info(name: str) -> SamplerInfo:
    """The registry entry ``name`` as a :class:`SamplerInfo`.

    Raises:
        UnknownNameError: unknown name.
    """
    cls = _SAMPLERS.get(name)
    doc = (cls.__doc__ or "").strip().splitlines()
    return SamplerInfo(name, doc[0].strip() if doc else "", bool(cls.query_aware),
                       tuple(sampler_params(cls)))


def _arg_docs(doc: str) -> dict[str, str]:
    """``{"power": "sharpening exponent ..."}`` from a Google-style ``Args:`` section; one
    entry may document several names (``high, mid, low: ...``)."""
    import inspect
    import re

    lines = inspect.cleandoc(doc).splitlines()
    out: dict[str, str] = {}
    in_args = False
    names: list[str] = []
    text: list[str] = []

    def flush() -> None:
        for n in names:
            out[n] = " ".join(text).strip()

    for line in lines:
        if line.strip() == "Args:":
            in_args = True
            continue
        if not in_args:
            continue
        if line and not line.startswith(" "):
            break
        m = re.match(r"^ {4}([\w, ]+):\s*(.*)$", line)
        if m:
            flush()
            names, text = [n.strip() for n in m.group(1).split(",")], [m.group(2)]
        elif line.strip():
            text.append(line.strip())
    flush()
    return out


def _type_name(tp: object) -> str:
    import typing

    args = typing.get_args(tp)
    if args:
        return " | ".join(_type_name(a) for a in args)
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _check_type(sampler: str, param: ParamInfo, value: Json) -> None:
    """Refuse a value whose type the parameter cannot take (a list where a number belongs
    used to surface deep in numpy)."""
    ok = {"int": lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float, np.integer, np.floating))
          and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, (bool, np.bool_)),
          "str": lambda v: isinstance(v, str),
          "None": lambda v: v is None}
    kinds = [k.strip() for k in param.type.split("|")]
    checks = [ok[k] for k in kinds if k in ok]
    if checks and not any(c(value) for c in checks):
        raise ConfigError(f"{param.name}={value!r} is invalid for sampler {sampler!r}: must be "
                          f"{' or '.join(kinds)}")
