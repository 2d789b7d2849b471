"""The ``ray`` index engine: an index run on a Ray cluster, into the same store.

framedex has no cluster code of its own: Ray Data schedules framedex's planner, decoders,
encoder and store writes (``indexer/ray_stages.py``) on the cluster, and this process, the
*driver*, is the only one that commits. What runs where::

    driver       discover the files; ray.init (before Lance is imported); check or record
                 the store's encoder; per group of files: claim each video and begin it
                 (a new generation); then commit, per group of finished videos, one Append
                 on frames, one on segments, then each videos row (commit_video) last
    plan tasks   hash + scan each file (planner.prepare), on any node's CPU
    decode       one task per GOP-aligned unit of whole fixed segments; emits one row per
                 segment window (so segments are pooled without a shuffle)
    encoders     actors: one per GPU (num_gpus=1), or CPU actors without GPUs
    writers      tasks: stage frames + segments (Lance data files in the live schemas,
                 nothing committed) and return the fragments to the driver

The guarantees are the local engine's: a killed job leaves no half-visible video (the
``videos`` row is written last, after the fragments are appended); a re-run skips what is
committed and redoes the rest; the files a killed job wrote but never committed are removed
by ``framedex optimize`` or by the next run's optimize, never while another writer is
active (the driver holds the store's writer lock for the whole job).

Differences from the local engine: a decode task that dies (a crash in a native decoder) is
retried by Ray, then stops the job (committed videos stay; a re-run does the rest), where
the local engine fails that file alone; NVDEC is not used (decoding runs in CPU tasks).
The video files and the model must be readable at the same paths on every node.

Security: a Ray cluster runs any code a client submits, so one reachable from the network
without authentication is remote code execution for whoever finds it. The private cluster a
job starts (no address) keeps Ray's token authentication (a fresh random token in this
process's environment, never written to disk) and listens on loopback only
(:func:`private_cluster`). A cluster joined with an address is the operator's; when it has no
token authentication the job says so in one line (:attr:`IndexEngine.notes`).
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import secrets
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from framedex.errors import ConfigError, FramedexError, check
from framedex.indexer.engine_base import IndexEngine, register_engine
from framedex.indexer.planner import InFlight
from framedex.indexer.records import IndexOptions, IndexOutcome, IndexReport, ProgressFn
from framedex.rules import FAILED, INDEXED

if TYPE_CHECKING:
    from framedex.indexer.planner import Admitted, Prepared
    from framedex.store import Store

log = logging.getLogger(__name__)

#: Files planned, claimed and indexed together: bounds the driver's memory (scans, open
#: claims) for any library size; the cluster idles only at the tail of each group.
GROUP_FILES = 256

#: Where a private cluster listens: loopback only.
LOOPBACK = "127.0.0.1"
#: What a job joined to a cluster without token authentication says (once, on stderr).
NO_AUTH_NOTE = ("the Ray cluster at {address} has no token authentication: anyone who can "
                "reach its ports can run code on it (docs/ray.md: Security)")

#: Seconds a job waits for a cluster address to accept a connection before it says, in one
#: line, that nothing answers there (Ray itself retries an unreachable address for minutes,
#: printing its GCS client's warnings).
RAY_CONNECT_TIMEOUT_S = 10.0

#: Linux's limit on a Unix socket path (``sun_path`` is 108 bytes with its NUL).
MAX_SOCKET_PATH = 107
#: What a local Ray cluster appends to its temp dir for its longest socket path.
_RAY_SOCKET_TAIL = len("/session_2026-11-30_23-57-57_991652_4194304/sockets/plasma_store")


def local_ray_temp_dir() -> str | None:
    """A temp dir for a local Ray cluster when Ray's own (``$RAY_TMPDIR`` or ``$TMPDIR``, plus
    ``/ray``) would make its socket paths longer than Linux allows (Ray then fails with
    ``AF_UNIX path length cannot exceed 107 bytes``); None when Ray's own fits."""
    base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or tempfile.gettempdir()
    if len(os.path.join(base, "ray")) + _RAY_SOCKET_TAIL <= MAX_SOCKET_PATH:
        return None
    log.info("Ray's temp dir under %s is too long for its sockets: using /tmp/ray", base)
    return "/tmp/ray"


def _refresh_ray_auth() -> None:
    """Make this process's Ray read ``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN`` again (Ray caches
    both; its own ``ray.init`` refreshes them the same way when it turns token auth on)."""
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _loopback_node(on: bool) -> bool:
    """Make this process's Ray use 127.0.0.1 as the node address (or stop); returns the
    previous setting.

    On Linux, Ray turns a node address of 127.0.0.1 into the machine's own address
    (``services.resolve_ip_for_localhost``), and its GCS, raylet and worker servers listen on
    every interface unless the node address is 127.0.0.1. Its single-machine mode (the
    default on macOS and Windows, ``ray_constants.ENABLE_RAY_CLUSTER``) keeps loopback.
    """
    from ray._private import ray_constants

    before = not ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = not on
    return before


def is_loopback(address: str) -> bool:
    """True for a ``host:port`` Ray address on this machine's loopback."""
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def check_reachable(address: str, timeout: float | None = None) -> None:
    """Fail fast when nothing listens at a ``host:port`` (or ``ray://host:port``) address.

    ``auto`` and ``local`` name no port and are left to Ray (which finds the local cluster or
    says there is none at once).

    Raises:
        ConfigError: the connection is refused, or nothing answers within ``timeout``.
    """
    import socket

    timeout = RAY_CONNECT_TIMEOUT_S if timeout is None else timeout
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return
    host = host.strip("[]")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except TimeoutError:
        reason = f"no answer within {timeout:g} s"
    except OSError as ex:
        reason = (ex.strerror or str(ex)).lower()
    else:
        return
    raise ConfigError(f"ray_address={address!r} is invalid: cannot reach a Ray cluster at "
                      f"{host}:{port} ({reason}); start one with `ray start --head`, or leave "
                      "--ray-address out for a local one")


def private_cluster() -> Callable[[], None]:
    """Prepare this process so that the next ``ray.init()`` without an address starts a
    cluster with token authentication that listens on loopback only.

    The token is a fresh random one in this process's environment (``RAY_AUTH_TOKEN``, which
    the cluster's processes inherit), unless one is already configured there; Ray would
    otherwise write one to ``~/.ray/auth_token``. ``RAY_AUTH_MODE=disabled`` in the
    environment is overridden: a private cluster is never unauthenticated.

    Returns:
        a function that restores the previous settings (call it after ``ray.shutdown()``).
    """
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ["RAY_AUTH_MODE"] = "token"
    if not os.environ.get("RAY_AUTH_TOKEN") and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    _refresh_ray_auth()
    loopback_before = _loopback_node(True)

    def restore() -> None:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _refresh_ray_auth()
        _loopback_node(loopback_before)

    return restore


def token_auth_on() -> bool:
    """Whether this process's Ray connection uses token authentication (after ``ray.init``:
    a cluster without it accepted a client without a token)."""
    from ray._raylet import (  # type: ignore[attr-defined]  # not in its stub
        AuthenticationMode,
        get_authentication_mode,
    )

    return bool(get_authentication_mode() == AuthenticationMode.TOKEN)


@dataclass(frozen=True)
class EncoderPlan:
    """The job's encoder: what every actor loads, and the identity it must have."""

    spec: str
    identity: dict[str, Any]
    device: str  # "cuda" (one actor per GPU) or "cpu"
    actors: int

    @property
    def image_size(self) -> int:
        from framedex.indexer.encoder import identity_image_size

        return identity_image_size(self.identity)


@register_engine("ray")
class RayEngine(IndexEngine):
    """Index on a Ray cluster (see the module docstring).

    Args:
        options: how to index; ``decoder="nvdec"`` is refused (decoding runs in CPU tasks);
            ``decode_workers`` caps the concurrent decode tasks (None: Ray Data decides).
        ray_address: the cluster to join (``auto``: the one started on this node with
            ``ray start --head``); None joins ``$RAY_ADDRESS`` if set, else starts a local
            cluster for this job.

    Raises:
        ConfigError: NVDEC asked for, or an empty address.
    """

    def __init__(self, options: IndexOptions, *, ray_address: str | None = None):
        check(options.decoder != "nvdec", "decoder", options.decoder,
              "is not available with engine='ray' (it decodes in CPU tasks): use auto, pyav "
              "or decord")
        check(ray_address is None or (isinstance(ray_address, str) and ray_address.strip()),
              "ray_address", ray_address, "must be a Ray address (host:port or auto) or None")
        super().__init__(options)
        self.address = ray_address
        self._started = False
        self._restore: Callable[[], None] | None = None
        self._store: Store | None = None
        self._encoder: EncoderPlan | None = None
        #: Timings of the job: cluster start, planning, the pipeline (for benchmarks).
        self.stats: dict[str, Any] = {}

    # ---- the cluster ----------------------------------------------------------------------
    def start(self) -> None:
        """Join the cluster, or start a private local one (dashboard off, token
        authentication, loopback only: :func:`private_cluster`). Nothing has imported Lance
        yet: it is not fork-safe, and starting a cluster forks Ray's processes."""
        try:
            import ray
        except ImportError:
            raise ConfigError("engine='ray' needs Ray: pip install 'framedex[ray]'") from None
        if ray.is_initialized():  # a caller's own session (a notebook, the tests): use it,
            if self.address is not None:  # but an address given that answers nothing is a
                check_reachable(self.address)  # mistake whatever this process joined
            return
        t0 = time.perf_counter()
        verbose = logging.getLogger("framedex").isEnabledFor(logging.INFO)
        quiet: dict[str, Any] = {"logging_level": logging.INFO if verbose else logging.WARNING,
                                 "log_to_driver": verbose}
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if address is not None:
            check_reachable(address)  # before Ray retries it for minutes
        try:
            if address is None:
                self._restore = private_cluster()
                ray.init(include_dashboard=False, _node_ip_address=LOOPBACK,
                         _temp_dir=local_ray_temp_dir(), **quiet)
            else:
                if is_loopback(address):  # a cluster on this machine's loopback: join as one
                    before = _loopback_node(True)

                    def restore() -> None:
                        _loopback_node(before)

                    self._restore = restore
                ray.init(address=address, **quiet)
                if not token_auth_on():
                    self.notes.append(NO_AUTH_NOTE.format(address=address))
        except (ConnectionError, RuntimeError, ValueError, OSError) as ex:
            self._undo()
            where = f"at {address}" if address else "on this machine"
            raise ConfigError(f"ray_address={address!r} is invalid: cannot start or join a "
                              f"Ray cluster {where} ({str(ex).splitlines()[0][:200]}); start "
                              "one with `ray start --head`, or leave --ray-address out for a "
                              "local one") from None
        self._started = True
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # framedex reports progress itself
        ctx.print_on_execution_start = verbose
        if not verbose:
            logging.getLogger("ray.data").setLevel(logging.WARNING)
            # its one warning here is that progress bars are off, which is on purpose
            logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        self.stats["ray_init_s"] = round(time.perf_counter() - t0, 3)

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
        self._undo()

    def _undo(self) -> None:
        """Restore the process-wide Ray settings :meth:`start` changed."""
        if self._restore is not None:
            restore, self._restore = self._restore, None
            restore()

    # ---- the encoder ----------------------------------------------------------------------
    def prepare(self, store: Store, model_spec: str, device: str,
                encoder: Callable[[], Any]) -> str:
        """Check or record the store's encoder identity on the driver (from the model's
        files: the image tower is loaded by the actors only), and size the actor pool."""
        import ray

        from framedex.indexer.encoder import load_text_encoder

        identity = dict(load_text_encoder(model_spec, device="cpu").identity)
        store.ensure_encoder(identity)
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        check(device in ("auto", "cpu") or device.startswith("cuda"), "device", device,
              "must be auto, cpu or cuda with engine='ray' (where the encoder actors run)")
        if device.startswith("cuda") and not gpus:
            raise ConfigError(f"device={device!r} is invalid: the Ray cluster has no GPU; "
                              "use auto or cpu")
        on_gpu = gpus > 0 and device != "cpu"
        # CPU actors: one per 4 cores, each on one core; the rest decode
        actors = gpus if on_gpu else max(1, cpus // 4)
        self._store = store
        self._encoder = EncoderPlan(model_spec, identity, "cuda" if on_gpu else "cpu", actors)
        kind = "GPU" if on_gpu else "CPU"
        return f"ray ({actors} {kind} encoder actor{'s' if actors > 1 else ''}, {cpus} CPUs)"

    # ---- the job --------------------------------------------------------------------------
    def index(self, paths: Iterable[str | os.PathLike], *, metadata: dict[str, Any],
              progress: ProgressFn | None = None,
              on_file: Callable[[IndexOutcome], None] | None = None) -> IndexReport:
        from framedex.indexer.pipeline import settle
        from framedex.indexer.records import discover

        assert self._store is not None and self._encoder is not None, "index() before prepare()"
        files, missing = discover(paths)
        report = IndexReport(list(missing))
        for outcome in missing:
            if on_file:
                on_file(outcome)
        if files:
            run = RayRun(self._store, self._encoder, self.options, metadata, progress, on_file)
            report.outcomes.extend(run.run(files))
            self.stats.update(run.stats)
            report.warnings.extend(settle(self._store, report.outcomes))
        return report


@dataclass
class _Video(InFlight):
    """A video in flight: claimed, begun, cut into units; its staged fragments so far."""

    units: int
    expected: int
    t0: float = field(default_factory=time.perf_counter)
    frames: int = 0
    units_done: int = 0
    frames_frags: list[str] = field(default_factory=list)
    segments_frags: list[str] = field(default_factory=list)
    segments: list[bytes] = field(default_factory=list)  # ray_stages.pack_segments


class RayRun:
    """The driver of one Ray job (see the module docstring). Used by :class:`RayEngine`."""

    def __init__(self, store: Store, encoder: EncoderPlan, opts: IndexOptions,
                 metadata: dict[str, Any], progress: ProgressFn | None,
                 on_file: Callable[[IndexOutcome], None] | None):
        from framedex.indexer.ray_stages import StoreRef

        self.store, self.encoder, self.opts = store, encoder, opts
        self.metadata, self.progress, self.on_file = metadata, progress, on_file
        self.ref = StoreRef(store.uri, getattr(store, "storage_options", None))
        self.videos: dict[int, _Video] = {}
        self.outcomes: list[tuple[int, IndexOutcome]] = []
        self.stats: dict[str, Any] = {"plan_s": 0.0, "pipeline_s": 0.0}
        self._keys = 0

    def run(self, files: list[Path]) -> list[IndexOutcome]:
        """Index ``files``; return their outcomes in the order of ``files``."""
        deferred: list[Prepared] = []
        numbered = list(enumerate(files))
        admitted: list[Admitted] = []  # claimed and begun, not yet handed to the pipeline
        try:
            with self.store.writing():  # no orphan sweep while our fragments may be staged
                for start in range(0, len(files), GROUP_FILES):
                    for prep in self._plan(numbered[start:start + GROUP_FILES]):
                        if (a := self._admit(prep, False, deferred)) is not None:
                            admitted.append(a)
                    self._index(admitted)
                    admitted = []
                for prep in deferred:  # other writers held these; now normally done
                    if (a := self._admit(prep, True, [])) is not None:
                        admitted.append(a)
                self._index(admitted)
        except BaseException:
            for video in list(self.videos.values()):
                self._fail(video, None)
            for a in admitted:  # (released already if it reached the pipeline)
                a.claim.release()
            raise
        self.outcomes.sort(key=lambda o: o[0])
        return [o for _, o in self.outcomes]

    # ---- planning and admitting (driver) ---------------------------------------------------
    def _plan(self, group: list[tuple[int, Path]]) -> Iterable[Prepared]:
        """Hash and scan the group's files in Ray tasks; yield them as they are planned."""
        import ray.data

        from framedex.indexer.decode import get_decoder_class
        from framedex.indexer.ray_stages import plan_file

        t0 = time.perf_counter()
        rows = [{"order": order, "path": str(f)} for order, f in group]
        backend = None if self.opts.decoder == "auto" else get_decoder_class(self.opts.decoder)
        plan = functools.partial(plan_file, store=self.ref, opts=self.opts, backend=backend,
                                 image_size=self.encoder.image_size)
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map(plan, num_cpus=1)
        for batch in _batches(ds):
            for blob in batch.column("prep").to_pylist():
                prep = pickle.loads(blob)
                prep.t0 = time.perf_counter()
                yield prep
        self.stats["plan_s"] += time.perf_counter() - t0

    def _admit(self, prep: Prepared, wait: bool, deferred: list[Prepared]) -> Admitted | None:
        from framedex.indexer.planner import Admitted, admit

        got = admit(self.store, prep, self.opts, self.encoder.image_size, wait)
        if got is None:
            deferred.append(prep)
            return None
        if not isinstance(got, Admitted):
            self._outcome(prep.order, got)
            return None
        return got

    # ---- the pipeline ------------------------------------------------------------------------
    def _index(self, admitted: list[Admitted]) -> None:
        """Decode -> encode -> stage on the cluster; commit videos as they complete."""
        if not admitted:
            return
        t0 = time.perf_counter()
        ds = self._pipeline(*self._units(admitted))
        try:
            for batch in _batches(ds):
                self._written(batch.to_pylist())
        except Exception as ex:
            raise _framedex_cause(ex) from None
        for video in list(self.videos.values()):  # the job ended without some of its rows
            self._fail(video, f"{video.prep.path}: {video.frames} of {video.expected} grid "
                              "frames were decoded")
        self.stats["pipeline_s"] += time.perf_counter() - t0

    def _units(self, admitted: list[Admitted]) -> tuple[list[dict[str, Any]], dict, dict]:
        """Cut each video into units of whole segments; what the decode and write tasks need
        of each video. The videos are in flight from here on."""
        import ray

        from framedex.indexer import ray_stages as stages
        from framedex.indexer.batching import segment_keys, segments_end
        from framedex.indexer.planner import max_side
        from framedex.indexer.workers import split_grid

        opts = self.opts
        units: list[dict[str, Any]] = []
        decode_plans: dict[int, stages.DecodePlan] = {}
        write_plans: dict[int, stages.WritePlan] = {}
        for a in admitted:
            prep = a.prep
            assert prep.grid is not None and prep.grid_pts is not None and prep.info is not None
            assert prep.keyframes is not None and prep.decoder is not None
            key = self._keys = self._keys + 1
            keys = segment_keys(prep.grid_pts, opts.segment_sec)
            seg_keys = np.unique(keys)
            ranks = np.searchsorted(seg_keys, keys)  # each frame's segment, by position
            parts = split_grid(prep.grid, prep.keyframes, opts.unit_frames, groups=keys)
            at = 0
            for part in parts:
                span = slice(at, at + len(part))
                units.append({"key": key, "frame_idx": part, "pos0": at,
                              "pts_sec": prep.grid_pts[span], "seg": ranks[span]})
                at += len(part)
            side = max_side(prep.info, self.encoder.image_size) if opts.resize_at_decode \
                else None
            decode_plans[key] = stages.DecodePlan(prep.source, prep.decoder,
                                                  ray.put(prep.table), side)
            write_plans[key] = stages.WritePlan(
                prep.video_id or "", a.generation, seg_keys,
                segments_end(seg_keys, opts.segment_sec, float(prep.info.duration)))
            self.videos[key] = _Video(a, key, len(parts), len(prep.grid))
        return units, decode_plans, write_plans

    def _pipeline(self, units: list[dict[str, Any]], decode_plans: dict,
                  write_plans: dict) -> Any:
        """The Ray Data pipeline: decode tasks -> encoder actors -> write tasks (streaming).

        Batch sizes are integers of segment windows: ``batch_size`` frames per encoder call,
        ``write_chunk`` frames per staged fragment (about).
        """
        import ray.data
        from ray.data import ActorPoolStrategy, TaskPoolStrategy

        from framedex.indexer import ray_stages as stages

        opts, enc = self.opts, self.encoder
        per_window = max(1, round(opts.segment_sec * opts.index_fps))
        decode = functools.partial(stages.decode_unit, videos=decode_plans)
        write = functools.partial(stages.write_windows, store=self.ref, videos=write_plans,
                                  segment_sec=opts.segment_sec)
        with warnings.catch_warnings():
            # max_restarts goes through Ray's generic remote args, deprecated in 2.60 with no
            # named replacement yet (the [ray] extra pins 2.60; revisit before Ray 2.64)
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
            return (
                ray.data.from_items(units, override_num_blocks=len(units))
                .flat_map(decode, num_cpus=1, compute=TaskPoolStrategy(size=opts.decode_workers))
                .map_batches(stages.EncodeActor, fn_constructor_kwargs={
                                 "spec": enc.spec, "identity": enc.identity,
                                 "device": enc.device, "batch_size": opts.batch_size,
                                 "uri": self.store.uri},
                             batch_size=max(1, opts.batch_size // per_window),
                             compute=ActorPoolStrategy(size=enc.actors), num_cpus=1,
                             num_gpus=1 if enc.device == "cuda" else 0, batch_format="numpy",
                             # a dead encoder actor fails the job (committed videos stay, a
                             # re-run does the rest) instead of restarting from constructor
                             # arguments Ray may have dropped: Ray warns of exactly that on
                             # every run otherwise
                             max_restarts=0)
                .map_batches(write, batch_size=max(1, opts.write_chunk // per_window),
                             num_cpus=1, batch_format="numpy")
            )

    def _written(self, rows: list[dict[str, Any]]) -> None:
        """What the write tasks staged: count it, then commit the videos it completes."""
        import json

        done: list[_Video] = []
        for row in rows:
            video = self.videos.get(int(row["key"]))
            if video is None:  # failed already: its late rows are never committed
                continue
            if row["error"]:
                self._fail(video, row["error"])
                continue
            video.frames += int(row["frames"])
            video.units_done += int(row["units"])
            video.frames_frags += json.loads(row["frames_frags"])
            video.segments_frags += json.loads(row["segments_frags"])
            video.segments.append(row["segments"])
            if self.progress and row["frames"]:
                self.progress(video.prep.path, video.frames, video.expected)
            if video.units_done == video.units:
                done.append(video)
        self._commit(done)

    # ---- committing (driver) -------------------------------------------------------------------
    def _commit(self, done: list[_Video]) -> None:
        """One Append on frames and one on segments for all of ``done``, then each video's
        ``videos`` row (``commit_video``): a video is visible only once all its rows are."""
        ready = []
        for video in done:
            if video.frames != video.expected:
                self._fail(video, f"{video.prep.path}: {video.frames} of {video.expected} "
                                  "grid frames were decoded")
            else:
                ready.append(video)
        if not ready:
            return
        try:
            self.store.commit_staged("frames", [f for v in ready for f in v.frames_frags])
            self.store.commit_staged("segments", [f for v in ready for f in v.segments_frags])
        except FramedexError as ex:
            for video in ready:
                self._fail(video, str(ex))
            return
        for video in ready:
            self._commit_video(video)

    def _commit_video(self, video: _Video) -> None:
        from framedex.indexer.planner import commit_finished, video_record
        from framedex.indexer.ray_stages import unpack_segments

        prep = video.prep
        info = prep.info
        assert info is not None  # a scanned file
        del self.videos[video.key]
        done = commit_finished(
            self.store, video.admitted,
            lambda: video_record(prep, video.generation, video.frames,
                                 prep.decoder.name if prep.decoder is not None
                                 else info.decoder, self.opts,
                                 self.encoder.identity["model"], self.metadata),
            lambda: unpack_segments(prep.video_id or "", video.segments),
            abort=lambda: self._cleanup(video))
        if isinstance(done, str):
            self._outcome(prep.order, IndexOutcome(prep.path, FAILED, error=done))
            return
        self._outcome(prep.order, IndexOutcome(
            prep.path, INDEXED, done.video_id, done.num_frames, video.frames,
            done.duration, seconds=time.perf_counter() - video.t0, units=video.units))

    def _fail(self, video: _Video, message: str | None) -> None:
        """Drop a video (its staged files are never committed); ``None``: the job is failing,
        report nothing."""
        self.videos.pop(video.key, None)
        try:
            self._cleanup(video)
        except Exception:
            if message is not None:
                raise
            log.exception("cleaning up %s after an error", video.prep.path)
        if message is not None:
            self._outcome(video.prep.order, IndexOutcome(video.prep.path, FAILED,
                                                         error=message))

    def _cleanup(self, video: _Video) -> None:
        try:
            self.store.abort_video(video.prep.video_id or "", video.generation)
        finally:
            video.claim.release()

    def _outcome(self, order: int, outcome: IndexOutcome) -> None:
        self.outcomes.append((order, outcome))
        if self.on_file:
            self.on_file(outcome)


def _batches(ds: Any) -> Iterable[Any]:
    """A dataset's output blocks, as Arrow tables, as they are produced (streaming)."""
    return ds.iter_batches(batch_size=None, batch_format="pyarrow")


def _framedex_cause(ex: BaseException) -> BaseException:
    """The framedex error behind a Ray error (one line for the CLI), else ``ex``.

    A task's error arrives as its ``cause``; an actor whose constructor raised (a model its
    node cannot load, another checkpoint at the same path) arrives as text only, whose last
    ``framedex.errors.Name: message`` line is raised again as that error.
    """
    import re

    from framedex import errors

    seen: set[int] = set()
    cur: BaseException | None = ex
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        cause = getattr(cur, "cause", None)
        if isinstance(cause, FramedexError):
            return _recreate(type(cause), str(cause))
        if isinstance(cur, FramedexError) and type(cur).__module__ == errors.__name__:
            return cur
        cur = cause if isinstance(cause, BaseException) else (cur.__cause__ or cur.__context__)
    found = re.findall(r"framedex\.errors\.(\w+): ([^\n]+)", str(ex))
    if found:
        name, message = found[-1]
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, FramedexError):
            return _recreate(cls, re.sub(r"\x1b\[[0-9;]*m", "", message).strip())
    return ex


def _recreate(cls: type[FramedexError], message: str) -> FramedexError:
    """``cls`` with ``message`` (also for errors whose constructor takes other arguments)."""
    try:
        return cls(message)
    except TypeError:
        error = cls.__new__(cls)
        Exception.__init__(error, message)
        return error
