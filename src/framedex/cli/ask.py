"""``framedex ask`` (a video LLM's answer about one video) and ``framedex feedback``."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from framedex.cli._common import (
    DEFAULT_DB,
    Db,
    Device,
    Json,
    Model,
    VlmKeyEnv,
    VlmModel,
    VlmRetries,
    VlmTimeout,
    VlmUrl,
    app,
    emit,
    handle_errors,
    note,
    open_library,
    vlm_endpoint,
)
from framedex.errors import ConfigError
from framedex.library import parse_pairs
from framedex.rules import DEFAULT_MAX_SIDE, tier_costs_text


@app.command()
@handle_errors
def ask(
    video: Annotated[str, typer.Argument(help="A video id, unique id prefix (4+ characters) "
                                         "or a path it was indexed from.")],
    question: Annotated[str, typer.Argument(help="The question for the video LLM.")],
    vlm_url: VlmUrl = None,
    vlm_model: VlmModel = None,
    vlm_api_key_env: VlmKeyEnv = None,
    vlm_timeout: VlmTimeout = None,
    vlm_retries: VlmRetries = None,
    db: Db = DEFAULT_DB,
    sampler: Annotated[str | None, typer.Option(
        "--sampler", envvar="FRAMEDEX_SAMPLER",
        help="Sampler (`framedex samplers`); default: the --rollout arm, else aks.")] = None,
    budget: Annotated[int | None, typer.Option(
        "--budget", "-k", help="Frames to send (K). Default 8.")] = None,
    tokens: Annotated[int | None, typer.Option(
        "--tokens", help=f"Token budget instead of K (Gemini {tier_costs_text()}).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Sampler parameter KEY=VALUE (repeatable).")] = None,
    start: Annotated[float | None, typer.Option(
        "--start", help="Choose frames at or after this second.")] = None,
    end: Annotated[float | None, typer.Option(
        "--end", help="Choose frames before this second.")] = None,
    max_tokens: Annotated[int | None, typer.Option(
        "--max-tokens", help="Longest answer, in the model's tokens.")] = None,
    temperature: Annotated[float | None, typer.Option(
        "--temperature", help="Sampling temperature, 0-2 (default: the server's).")] = None,
    system: Annotated[str | None, typer.Option(
        "--system", help="A system message (e.g. \"Answer with one word.\").")] = None,
    json_schema: Annotated[str | None, typer.Option(
        "--json-schema", help="Ask for JSON that fits this schema (a JSON object; sent as "
                              "response_format).")] = None,
    max_side: Annotated[int | None, typer.Option(
        "--max-side", help=f"Cap on the longer side of the frames sent, pixels (default "
                           f"{DEFAULT_MAX_SIDE}, as on every face; 8192: native). The high "
                           "tier is this size, mid and low smaller.")] = None,
    rollout: Annotated[str | None, typer.Option(
        "--rollout", envvar="FRAMEDEX_ROLLOUT",
        help="Split asks without --sampler between samplers: aks=0.9,bolt=0.1.")] = None,
    rollout_key: Annotated[str | None, typer.Option(
        "--rollout-key", help="Who asks (a user or session id): one key stays on one arm. "
                              "Default: the video and the question.")] = None,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Ask the model even when the same ask has a stored answer.")]
    = False,
    stream: Annotated[bool, typer.Option(
        "--stream", help="Print the answer as the model streams it.")] = False,
    model: Model = None,
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Ask a video LLM about one video: the frames a sampler picks are sent to any
    OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp, OpenAI). Prints the answer on stdout
    (the frames, tokens and timings on stderr); the same ask again is answered from the store.
    The key is read from $FRAMEDEX_VLM_API_KEY (or --vlm-api-key-env)."""
    endpoint = vlm_endpoint(vlm_url, vlm_model, vlm_api_key_env, vlm_timeout, vlm_retries)
    response_format = _schema_format(json_schema)
    lib = open_library(db, model=model, device=device, rollout=rollout)
    options: dict[str, Any] = dict(
        vlm=endpoint, sampler=sampler, budget=budget, tokens=tokens,
        params=parse_pairs(param, "--param"), start=start, end=end, max_tokens=max_tokens,
        temperature=temperature, system=system, response_format=response_format,
        max_side=max_side, rollout_key=rollout_key, cache=not no_cache)
    if stream and not as_json:
        answer = lib.ask_stream(video, question, **options)
        for text in answer:
            sys.stdout.write(text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        result = answer.result
        assert result is not None
    else:
        result = lib.ask(video, question, **options)
    for line in lib.query_notes(question):
        note(line)
    if as_json:
        emit(result.to_json())
        return
    if not stream:
        typer.echo(result.answer)
    note(_summary(result))


def _schema_format(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as ex:
        raise ConfigError(f"--json-schema is invalid: not JSON ({ex.msg})") from None
    if not isinstance(schema, dict):
        raise ConfigError("--json-schema is invalid: must be a JSON object (a JSON schema)")
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def _summary(result: Any) -> str:
    """The one stderr line after an answer: frames, tokens, time, the answer's id."""
    times = ", ".join(f"{t:.1f}" for t in result.timestamps[:12])
    more = f" (+{len(result.timestamps) - 12})" if len(result.timestamps) > 12 else ""
    arm = " (rollout arm)" if result.arm else ""
    usage = "no usage reported" if result.total_tokens is None else \
        f"{result.prompt_tokens or 0:,} + {result.completion_tokens or 0:,} tokens"
    if result.cached:
        timing = f"cached answer {result.source_id}, {result.latency_ms:.1f} ms"
    else:
        timing = (f"select {result.select_ms:.1f} ms, frames {result.deliver_ms:.0f} ms, "
                  f"model {result.model_ms:.0f} ms")
    cut = "; cut at --max-tokens" if result.finish_reason == "length" else ""
    return (f"{result.sampler}{arm}: {len(result.timestamps)} frames at {times}{more} s; "
            f"{usage}; {timing}{cut}; answer {result.answer_id} (framedex feedback "
            f"{result.answer_id} good|bad)")


@app.command()
@handle_errors
def feedback(
    answer_id: Annotated[str, typer.Argument(help="The answer's id (framedex ask prints it).")],
    rating: Annotated[str, typer.Argument(help="good or bad.")],
    comment: Annotated[str | None, typer.Option("--comment", help="Why.")] = None,
    db: Db = DEFAULT_DB,
    as_json: Json = False,
) -> None:
    """Rate an answer good or bad (`framedex stats --by arm` compares the rollout's arms)."""
    row = open_library(db, log_queries=False).feedback(answer_id, rating, comment)
    if as_json:
        emit({"answer_id": row["answer_id"], "rating": row["rating"],
              "comment": row["comment"]})
        return
    typer.echo(f"rated {row['answer_id']} {row['rating']}")
