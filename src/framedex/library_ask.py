"""The :class:`~framedex.library.Library`'s ``ask``: select, deliver, call the user's video LLM,
cache the answer, and learn which sampler answers better.

One ask is one way through the library::

    validate once -> the sampler (named, or the rollout's arm) -> cache key -> cached answer?
      -> select (one store read or cache hit, one text encode) -> deliver (the one delivery
      step: frames at their tiers -> the OpenAI request) -> the model (framedex.query.vlm)
      -> an answers row (the cache entry and the log, with its arm)

The cache key and what invalidates it are in :mod:`framedex.query.ask`; the answers table in
:mod:`framedex.store.answers`; the rollout in :mod:`framedex.query.rollout`. These methods are
mixed into ``Library`` (kept apart so the facade stays readable).

Example::

    lib = Library("lib.db", vlm=VLMEndpoint("http://127.0.0.1:8000/v1", "Qwen2.5-VL-7B"))
    res = lib.ask("clip.mp4", "what colour is the star?", sampler="aks", budget=16)
    res.answer, res.timestamps, res.prompt_tokens, res.model_ms, res.cached
    lib.feedback(res.answer_id, "good")
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from framedex.errors import UnsupportedError, check
from framedex.query.ask import AskOptions, AskResult, cache_key
from framedex.query.delivery import DeliveryOptions
from framedex.query.rollout import Rollout
from framedex.query.vlm import ChatReply, VLMEndpoint, complete, open_stream
from framedex.rules import DEFAULT_BUDGET, LIMITS, PAYLOAD_FORMATS, RATINGS
from framedex.store.answers import AnswerLog
from framedex.store.schema import AnswerRow, now_utc
from framedex.validate import check_text, make_budget
from framedex.values import Json, JsonObject

if TYPE_CHECKING:
    from framedex.query.delivery import Delivery
    from framedex.query.samplers import Budget, Sampler
    from framedex.query.select import SelectResult
    from framedex.store import QueryLog, Store, VideoRecord

#: What an ask without a video LLM is told.
NO_VLM = ("no video LLM is configured: give one (framedex ask --vlm-url URL --vlm-model NAME; "
          "framedex serve --vlm-url URL --vlm-model NAME; Library(vlm=VLMEndpoint(url, model)))")


class AskStream:
    """A streamed answer: iterate for the text as it arrives; :attr:`result` is set once the
    iteration has ended (the answer is cached only when it ended). :attr:`answer_id` is the
    id the answer will have, known from the start."""

    def __init__(self, answer_id: str, fragments: Iterator[str],
                 finish: Callable[[], AskResult] | None = None,
                 result: AskResult | None = None):
        self.answer_id = answer_id
        self._fragments, self._finish = fragments, finish
        self.result: AskResult | None = result

    def __iter__(self) -> Iterator[str]:
        yield from self._fragments
        if self._finish is not None:
            self.result = self._finish()
            self._finish = None


@dataclass
class _Plan:
    """An ask after validation and the cache lookup: a cached result, or the request to send."""

    key: str
    endpoint: VLMEndpoint
    options: AskOptions
    started: float
    answer_id: str
    cached: AskResult | None = None
    selection: SelectResult | None = None
    body: JsonObject | None = None
    deliver_ms: float = 0.0


class AskMixin:
    """``ask``, ``ask_stream``, ``answer``, ``feedback`` and ``arm_stats`` of the Library."""

    _store: Store
    _query_log: QueryLog | None
    rollout: Rollout | None
    vlm: VLMEndpoint | None

    if TYPE_CHECKING:  # the Library's own methods, used here
        def _pick_sampler(self, sampler: str | None, video_id: str, question: str,
                         rollout_key: str | None = None) -> tuple[str, str | None]: ...

        def _select_record(self, record: VideoRecord, question: str, sampler: str | Sampler,
                           arm: str | None, spend: Budget, params: JsonObject,
                           start: float | None, end: float | None) -> SelectResult: ...

        def deliver(self, result: SelectResult, options: DeliveryOptions | None = None, *,
                    include: Sequence[str] = ..., max_side: int | None = ...,
                    width: int | None = ...,
                    payload_format: str = ..., quality: int = ...,
                    payload_options: Mapping[str, Json] | None = ...) -> Delivery: ...

    def _init_answers(self) -> None:
        self._answer_log: AnswerLog | None = None

    @property
    def answers(self) -> AnswerLog:
        """The answers table's buffered writer and reader (created on first use)."""
        if self._answer_log is None:
            self._answer_log = AnswerLog(self._store)
        return self._answer_log

    def _close_answers(self) -> None:
        if self._answer_log is not None:
            self._answer_log.close()

    def _flush_answers(self) -> None:
        """Write buffered answers now (before SQL, stats or upkeep read the table)."""
        if self._answer_log is not None:
            self._answer_log.flush()

    # -- asking -----------------------------------------------------------------------------

    def ask(self, video: str, question: str, *, vlm: VLMEndpoint | None = None,
            model: str | None = None, sampler: str | None = None, budget: int | None = None,
            tokens: int | None = None, params: Mapping[str, Json] | None = None,
            max_tokens: int | None = None, temperature: float | None = None,
            response_format: Mapping[str, Json] | None = None, system: str | None = None,
            max_side: int | None = None, start: float | None = None, end: float | None = None,
            rollout_key: str | None = None, cache: bool = True) -> AskResult:
        """Ask the video LLM ``question`` about ``video``, showing it the frames a sampler
        picks, and return its answer (or the cached answer of the same ask).

        Args:
            video: id, unique id prefix or indexed path.
            question: the question (non-empty).
            vlm: the endpoint to call (None: the library's ``vlm``).
            model: another model name at that endpoint.
            sampler / budget / tokens / params / start / end / rollout_key: the selection, as
                in :meth:`select` (no sampler: the rollout's arm, else the default).
            max_tokens / temperature / response_format / system: sent to the model.
            max_side: cap on the longer side of the frames sent (pixels).
            cache: return a stored answer of the same ask when there is one (False: ask the
                model again; the fresh answer replaces the stored one).

        Returns:
            The :class:`AskResult` (answer, frames' timestamps, usage, latency split).

        Raises:
            ConfigError / UnknownNameError: a bad argument. VideoNotFoundError: no such video.
            UnsupportedError: no video LLM configured. ModelEndpointError: the model failed.
        """
        plan = self._plan(video, question, vlm=vlm, model=model, sampler=sampler,
                          budget=budget, tokens=tokens, params=params, max_tokens=max_tokens,
                          temperature=temperature, response_format=response_format,
                          system=system, max_side=max_side, start=start, end=end,
                          rollout_key=rollout_key, cache=cache)
        if plan.cached is not None:
            return plan.cached
        assert plan.body is not None
        return self._finish(plan, complete(plan.endpoint, plan.body))

    def ask_stream(self, video: str, question: str, *, vlm: VLMEndpoint | None = None,
            model: str | None = None, sampler: str | None = None, budget: int | None = None,
            tokens: int | None = None, params: Mapping[str, Json] | None = None,
            max_tokens: int | None = None, temperature: float | None = None,
            response_format: Mapping[str, Json] | None = None, system: str | None = None,
            max_side: int | None = None, start: float | None = None, end: float | None = None,
            rollout_key: str | None = None, cache: bool = True) -> AskStream:
        """:meth:`ask`, streamed: the selection, the delivery and the start of the model's
        stream happen here (so their errors raise here); iterating yields the answer's text as
        it arrives, and ``.result`` holds the :class:`AskResult` afterwards. Takes
        :meth:`ask`'s keyword arguments.

        Raises:
            as :meth:`ask` (a model failure in the middle of the stream raises while
            iterating).
        """
        plan = self._plan(video, question, vlm=vlm, model=model, sampler=sampler,
                          budget=budget, tokens=tokens, params=params, max_tokens=max_tokens,
                          temperature=temperature, response_format=response_format,
                          system=system, max_side=max_side, start=start, end=end,
                          rollout_key=rollout_key, cache=cache)
        if plan.cached is not None:
            return AskStream(plan.answer_id, iter([plan.cached.answer]), result=plan.cached)
        assert plan.body is not None
        stream = open_stream(plan.endpoint, plan.body)
        return AskStream(plan.answer_id, iter(stream),
                         lambda: self._finish(plan, stream.reply))

    def _plan(self, video: str, question: str, *, vlm: VLMEndpoint | None = None,
              model: str | None = None, sampler: str | None = None, budget: int | None = None,
              tokens: int | None = None, params: Mapping[str, Json] | None = None,
              max_tokens: int | None = None, temperature: float | None = None,
              response_format: Mapping[str, Json] | None = None, system: str | None = None,
              max_side: int | None = None, start: float | None = None,
              end: float | None = None, rollout_key: str | None = None,
              cache: bool = True) -> _Plan:
        """Validate an ask once, look it up in the cache, else select and deliver."""
        started = time.perf_counter()
        endpoint = vlm if vlm is not None else self.vlm
        if endpoint is None:
            raise UnsupportedError(NO_VLM)
        if model is not None:
            endpoint = dataclasses.replace(endpoint, model=model)
        check_text("question", question)
        spend = make_budget(budget, tokens)
        options = AskOptions(max_tokens=max_tokens, temperature=temperature,
                             response_format=dict(response_format) if response_format
                             is not None else None, system=system, max_side=max_side,
                             start=start, end=end)
        # the frames go as an OpenAI request; its sizes are checked here, once
        sending = DeliveryOptions(include=("payload",), max_side=max_side,
                                  payload_format=PAYLOAD_FORMATS[0],
                                  payload_options={"model": endpoint.model,
                                                   "system": options.system,
                                                   "max_tokens": options.max_tokens})
        params = dict(params or {})
        from framedex.query.samplers import create_sampler

        # an unknown name or parameter fails before any read; the sampler is built once
        named = None if sampler is None else create_sampler(sampler, **params)
        record = self._store.find_video(video)
        name, arm = self._pick_sampler(sampler, record.video_id, question, rollout_key)
        frames = None if tokens is not None else (DEFAULT_BUDGET if budget is None else budget)
        key = cache_key(video_id=record.video_id, generation=record.generation,
                        question=question, sampler=name, params=params, budget=frames,
                        tokens=tokens, model=endpoint.model, endpoint=endpoint.name,
                        options=options)
        plan = _Plan(key, endpoint, options, started, _new_id())
        if cache:
            stored = self.answers.lookup(key)
            if stored is not None:
                plan.cached = self._reuse(stored, plan, arm, question)
                return plan
        selection = self._select_record(record, question, name if named is None else named,
                                        arm, spend, params, options.start, options.end)
        t_deliver = time.perf_counter()
        delivery = self.deliver(selection, sending)
        assert delivery.payload is not None
        plan.deliver_ms = (time.perf_counter() - t_deliver) * 1000.0
        plan.selection = selection
        plan.body = {**delivery.payload, **options.request_fields()}
        return plan

    def _reuse(self, stored: AnswerRow, plan: _Plan, arm: str | None,
               question: str) -> AskResult:
        """The cached answer as this ask's result, logged as a cached row."""
        result = AskResult(
            answer_id=plan.answer_id, answer=stored["answer"], video_id=stored["video_id"],
            question=question, sampler=stored["sampler"], model=stored["model"],
            endpoint=stored["endpoint"], cache_key=plan.key, cached=True,
            source_id=stored["answer_id"], arm=arm, budget=stored["budget"],
            tokens=stored["tokens"], timestamps=list(stored["timestamps"] or []),
            frame_idx=list(stored["frame_idx"] or []), tiers=stored["tiers"],
            finish_reason=stored["finish_reason"], prompt_tokens=stored["prompt_tokens"],
            completion_tokens=stored["completion_tokens"],
            latency_ms=(time.perf_counter() - plan.started) * 1000.0)
        self.answers.record_answer(_row(result, stored["generation"], plan.options, spent=False))
        return result

    def _finish(self, plan: _Plan, reply: ChatReply) -> AskResult:
        """The model's answer as a result, stored (the cache entry) and logged."""
        sel = plan.selection
        assert sel is not None and sel.record is not None
        result = AskResult(
            answer_id=plan.answer_id, answer=reply.text, video_id=sel.video_id,
            question=sel.question, sampler=sel.sampler, model=plan.endpoint.model,
            endpoint=plan.endpoint.name, cache_key=plan.key, arm=sel.arm, budget=sel.budget,
            tokens=sel.tokens, timestamps=list(sel.timestamps), frame_idx=list(sel.frame_idx),
            tiers=sel.tiers, finish_reason=reply.finish_reason,
            prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
            select_ms=sel.latency_ms, deliver_ms=plan.deliver_ms, model_ms=reply.model_ms,
            latency_ms=(time.perf_counter() - plan.started) * 1000.0)
        self.answers.record_answer(_row(result, sel.record.generation, plan.options,
                                        spent=True, params=sel.params))
        return result

    # -- stored answers, feedback and arms ---------------------------------------------------

    def answer(self, answer_id: str) -> AnswerRow:
        """A stored answer (an ``answers`` row) by id.

        Raises:
            ConfigError: a malformed id. NotFoundError: no such answer (or expired).
        """
        from framedex.library_collections import check_id

        return self.answers.get(check_id("answer_id", answer_id))

    def feedback(self, answer_id: str, rating: str,
                 comment: str | None = None) -> JsonObject:
        """Rate an answer ``good`` or ``bad`` (the newest rating of an answer counts in
        :meth:`arm_stats`).

        Raises:
            ConfigError: a bad id, rating or comment. NotFoundError: no such answer.
        """
        from framedex.library_collections import check_id

        check(rating in RATINGS, "rating", rating, f"must be one of {', '.join(RATINGS)}")
        limit = LIMITS["comment"]
        check(comment is None or (isinstance(comment, str) and limit.holds(len(comment))),
              "comment", None if comment is None else comment[:40], limit.rule())
        return self.answers.add_feedback(check_id("answer_id", answer_id), rating, comment)

    def arm_stats(self) -> JsonObject:
        """Compare the rollout arms: asks, cache hits, latency, tokens and the share of good
        ratings per arm, with 95 % confidence intervals (see
        :func:`framedex.store.sql.arm_stats`)."""
        from framedex.store.sql import arm_stats

        self._flush_answers()
        if self._query_log is not None:
            self._query_log.flush()
        return arm_stats(self._store, self.rollout.text if self.rollout else None)


def _new_id() -> str:
    """A fresh answer id (24 hex characters, like every id on the wire)."""
    return uuid.uuid4().hex[:24]


def _row(result: AskResult, generation: int, options: AskOptions, *, spent: bool,
         params: Mapping[str, Json] | None = None) -> AnswerRow:
    """The ``answers`` row of a result (tokens are what this ask spent: 0 when cached)."""
    opts = options.to_json()
    if params:
        opts["params"] = dict(params)
    return {
        "answer_id": result.answer_id, "ts": now_utc(), "cache_key": result.cache_key,
        "cached": result.cached, "source_id": result.source_id, "video_id": result.video_id,
        "generation": int(generation), "question": result.question, "sampler": result.sampler,
        "arm": result.arm, "budget": result.budget, "tokens": result.tokens,
        "model": result.model, "endpoint": result.endpoint, "answer": result.answer,
        "finish_reason": result.finish_reason, "timestamps": result.timestamps,
        "frame_idx": result.frame_idx, "tiers": result.tiers,
        "prompt_tokens": result.prompt_tokens if spent else 0,
        "completion_tokens": result.completion_tokens if spent else 0,
        "select_ms": result.select_ms, "deliver_ms": result.deliver_ms,
        "model_ms": result.model_ms, "latency_ms": result.latency_ms,
        "options": json.dumps(opts, sort_keys=True, default=str),
    }


__all__ = ["NO_VLM", "AskMixin", "AskResult", "AskStream", "Rollout", "VLMEndpoint"]
