"""Leases that live in the store: claims on videos and jobs, the writer and maintenance leases.

Several processes on several machines may write one store: ``framedex index`` runs, API
replicas and their workers, a Ray driver. What must not happen twice (two writers indexing one
video, an orphan sweep while a writer has uncommitted files, a job run by two replicas) is
coordinated through **leases**: small JSON objects in the store itself, under
``<store>/.framedex/leases/``, written with the one atomic primitive every storage kind
offers, **put-if-not-exists** (S3's ``If-None-Match: *``, GCS's ``ifGenerationMatch=0``,
Azure's ``If-None-Match: *``, a hard link on a local disk: object_store's ``PutMode::Create``,
through obstore). Lance commits its manifests with the same primitive
(``ConditionalPutCommitHandler`` for ``s3``, ``gs``, ``az`` and local paths), so the lease and
the data rest on one guarantee. docs/store-protocol.md cites the code relied on.

**The protocol.** A lease is a sequence of *epochs*, one object each
(``<kind>/<id>/<epoch:012d>.json``, e.g. ``video/<content id>/000000000007.json``: owner,
host, pid, state, expiry, data). Whoever created the highest epoch holds the lease while that
record says ``held`` and its expiry has not passed. The highest epoch is never deleted, so
the epochs of a name only ever grow: that is what makes a late, stale acquirer harmless.

- *Acquire*: list the epochs and read the highest; if it is held and unexpired, the lease is
  busy. Otherwise create the next epoch with put-if-not-exists (of two racers one wins), then
  list again and step back if a higher epoch appeared meanwhile. Epochs below the new one
  are deleted. A record that is held but expired belonged to a holder that died or stalled:
  the new holder gets it as :attr:`Lease.previous` (its ``data`` say what it was doing, e.g.
  the generation it wrote).
- *Heartbeat*: a thread rewrites each held record with a new expiry every ``ttl / 3`` and
  checks that no higher epoch exists; a holder that was superseded (it stalled past its expiry)
  marks the lease lost, and the writer checks :meth:`Lease.check` before its commit.
- *Release*: rewrite its record as ``released`` (it stays the highest epoch). A lease whose
  name is unique to its holder (a writer's) is deleted instead.
- *Markers*: a held lease also has an empty marker ``held/<kind>/<id>/<epoch>``, created after
  the acquisition and deleted at the release, so finding the leases a dead holder left (what
  ``optimize`` sweeps) is one listing of the markers, not of every name ever leased.

Expiry compares the holder's wall clock (written in the record) with the reader's: machines
sharing a store must keep their clocks within a few seconds (NTP), well under the TTL
(default :data:`DEFAULT_TTL_S`).

**Local disks.** On a folder, each lease is also an ``flock`` on
``.framedex/locks/<name>.lock`` taken before the record. The kernel drops it when its holder
exits, also on ``kill -9``, so a record left ``held`` by a process of this host whose flock is
free is known dead at once, without waiting for the expiry. The flock is only that
optimisation: the guarantee is the record, as on object storage.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framedex.errors import LeaseLostError, StoreError

if TYPE_CHECKING:
    from obstore.store import ObjectStore

    from framedex.store.location import StoreLocation

log = logging.getLogger(__name__)

#: Seconds a lease lives without a heartbeat. A killed writer's claim on object storage is
#: taken over after this long (on a local disk at once, through the flock).
DEFAULT_TTL_S = 30.0
#: Where leases live inside a store.
LEASE_PREFIX = ".framedex/leases"
#: Seconds between two looks at a busy lease while waiting for it.
POLL_S = 0.25

_HOST = socket.gethostname()


@dataclass(frozen=True)
class LeaseRecord:
    """One epoch of a lease, as stored."""

    name: str
    epoch: int
    owner: str
    host: str
    pid: int
    state: str  # "held" | "released"
    acquired_at: float
    expires_at: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({"name": self.name, "epoch": self.epoch, "owner": self.owner,
                           "host": self.host, "pid": self.pid, "state": self.state,
                           "acquired_at": self.acquired_at, "expires_at": self.expires_at,
                           "data": self.data}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LeaseRecord:
        d = json.loads(raw)
        return cls(name=str(d["name"]), epoch=int(d["epoch"]), owner=str(d["owner"]),
                   host=str(d.get("host", "")), pid=int(d.get("pid", 0)),
                   state=str(d["state"]), acquired_at=float(d["acquired_at"]),
                   expires_at=float(d["expires_at"]), data=dict(d.get("data") or {}))

    def live(self, now: float | None = None) -> bool:
        """Held and not expired (by this machine's clock)."""
        return self.state == "held" and self.expires_at > (time.time() if now is None else now)


def storage_config(storage_options: Mapping[str, str] | None
                   ) -> tuple[dict[str, str], dict[str, str]]:
    """Split Lance's ``storage_options`` into obstore's store config and client options.

    Lance and obstore both wrap the Rust ``object_store`` crate, so the keys are the same;
    obstore takes the HTTP client's (``allow_http``, timeouts, proxy) separately.
    """
    client_keys = {"allow_http", "allow_invalid_certificates", "connect_timeout", "timeout",
                   "pool_idle_timeout", "pool_max_idle_per_host", "proxy_url", "user_agent",
                   "http1_only", "http2_only"}
    config: dict[str, str] = {}
    client: dict[str, str] = {}
    for key, value in (storage_options or {}).items():
        k = key.lower()
        if k in client_keys:
            client[k] = value
        elif k == "aws_allow_http":
            client["allow_http"] = value
        elif k.startswith(("aws_", "google_", "azure_", "azurite_")) or k in (
                "access_key_id", "secret_access_key", "region", "endpoint", "bucket",
                "session_token", "token", "account_name", "account_key", "service_account",
                "service_account_key", "application_credentials"):
            config[k] = value
    return config, client


def open_object_store(location: StoreLocation, storage_options: Mapping[str, str] | None
                      ) -> ObjectStore:
    """An obstore store rooted at the store's location (a local folder or an object-store URI).

    Raises:
        StoreError: the location cannot be opened (a bad URI or setting).
    """
    from obstore.store import LocalStore, from_url

    try:
        if location.path is not None:
            return LocalStore(location.path, mkdir=True)
        config, client = storage_config(storage_options)
        return from_url(location.uri, config=config or None,  # type: ignore[arg-type]
                        client_options=client or None)  # type: ignore[arg-type]
    except Exception as ex:  # obstore raises its own error types for bad settings
        raise StoreError(f"cannot open leases of the store at {location.uri}: {ex}") from ex


class Lease:
    """A lease this process holds (from :meth:`Leases.acquire`); use ``with`` or release it.

    Attributes:
        name: the lease's name (``video-<id>``, ``job-<id>``, ``writer-<owner>``...).
        epoch: its epoch.
        previous: the record this lease superseded when that holder had died or stalled (its
            ``data`` say what it left unfinished), else None.
    """

    def __init__(self, leases: Leases, record: LeaseRecord, previous: LeaseRecord | None,
                 flock_fd: int | None):
        self._leases = leases
        self.record = record
        self.previous = previous
        self._fd = flock_fd
        self._lost = False
        self._released = False
        self._lock = threading.Lock()
        #: The name is this holder's alone (a writer's): the release deletes the record.
        self.unique = False

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def epoch(self) -> int:
        return self.record.epoch

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.record.data)

    @property
    def lost(self) -> bool:
        """True once another holder superseded this one (it stalled past its expiry)."""
        return self._lost

    def update(self, **data: Any) -> None:
        """Merge ``data`` into the stored record (e.g. the generation being written), so a
        holder taking over after a crash knows what to clean up."""
        with self._lock:
            self.record = replace(self.record, data={**self.record.data, **data},
                                  expires_at=time.time() + self._leases.ttl)
            self._leases._write(self.record)

    def check(self) -> None:
        """Raise unless this lease is still held (called before a commit it guards).

        Raises:
            LeaseLostError: another holder took over (this one stalled past its expiry).
        """
        if self._released:
            raise LeaseLostError(f"the lease {self.name} was released")
        if not self._lost and time.time() >= self.record.expires_at:
            self._leases._renew(self)  # overdue heartbeat (a busy machine): renew or learn
        if self._lost:
            raise LeaseLostError(
                f"this writer lost its claim {self.name}: it stalled longer than the lease "
                f"lifetime ({self._leases.ttl:g} s) and another writer took over; run it again")

    def release(self) -> None:
        """Give the lease up (idempotent)."""
        with self._lock:
            if self._released:
                return
            self._released = True
        self._leases._release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Leases:
    """The leases of one store.

    Args:
        location: the store.
        storage_options: object-store settings (Lance's keys).
        ttl: seconds a lease lives without a heartbeat (None: :data:`DEFAULT_TTL_S`).
        owner: this process's owner id (None: a fresh one).
    """

    def __init__(self, location: StoreLocation, storage_options: Mapping[str, str] | None,
                 *, ttl: float | None = None, owner: str | None = None):
        self.location = location
        self.storage_options = storage_options
        self.ttl = float(DEFAULT_TTL_S if ttl is None else ttl)
        if not self.ttl > 0:
            raise StoreError(f"lease ttl={ttl!r} is invalid: must be > 0 seconds")
        self.owner = owner or f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._store: ObjectStore | None = None
        self._held: dict[int, Lease] = {}
        self._mutex = threading.Lock()
        self._beat: threading.Thread | None = None
        self._wake = threading.Event()

    # -- object access ----------------------------------------------------------------------

    @property
    def objects(self) -> ObjectStore:
        if self._store is None:
            with self._mutex:
                if self._store is None:
                    self._store = open_object_store(self.location, self.storage_options)
        return self._store

    @staticmethod
    def _dir(name: str) -> str:
        """``video-abc`` lives under ``leases/video/abc/``: one folder per kind, so listing
        the leases of a kind is one prefix (object stores list by whole path segments)."""
        return f"{LEASE_PREFIX}/{name.replace('-', '/', 1)}"

    def _key(self, name: str, epoch: int) -> str:
        return f"{self._dir(name)}/{epoch:012d}.json"

    def _epochs(self, name: str) -> list[int]:
        import obstore

        prefix = f"{self._dir(name)}/"
        epochs = []
        with self._io("read leases of"):
            for batch in obstore.list(self.objects, prefix, chunk_size=1000):
                for meta in batch:
                    stem = meta["path"].rsplit("/", 1)[-1].split(".", 1)[0]
                    if stem.isdigit():
                        epochs.append(int(stem))
        return sorted(epochs)

    def _read(self, name: str, epoch: int) -> LeaseRecord | None:
        import obstore
        from obstore.exceptions import NotFoundError

        with self._io("read leases of"):
            try:
                raw = bytes(obstore.get(self.objects, self._key(name, epoch)).bytes())
            except (NotFoundError, FileNotFoundError):  # released meanwhile
                return None
        try:
            return LeaseRecord.from_json(raw)
        except (ValueError, KeyError):  # a torn or foreign object: treat as not there
            return None

    def _create(self, record: LeaseRecord) -> bool:
        """Put-if-not-exists; False when the epoch exists already."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        with self._io("write leases to"):
            try:
                obstore.put(self.objects, self._key(record.name, record.epoch),
                            record.to_json(), mode="create")
            except (AlreadyExistsError, PreconditionError, FileExistsError):
                return False
        return True

    def _write(self, record: LeaseRecord) -> None:
        import obstore

        with self._io("write leases to"):
            obstore.put(self.objects, self._key(record.name, record.epoch), record.to_json())

    def _delete(self, name: str, epochs: list[int]) -> None:
        for epoch in epochs:
            self._remove(self._key(name, epoch))

    def _remove(self, key: str) -> None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            with self._io("write leases to"), \
                    contextlib.suppress(NotFoundError, FileNotFoundError):
                obstore.delete(self.objects, key)
        except StoreError:  # best effort: a leftover lower epoch or marker is harmless
            log.debug("could not delete lease object %s", key, exc_info=True)

    @staticmethod
    def _marker(name: str, epoch: int) -> str:
        """The marker of a held lease: ``held/<kind>/<id>/<epoch>``."""
        return f"{LEASE_PREFIX}/held/{name.replace('-', '/', 1)}/{epoch:012d}"

    def _mark(self, record: LeaseRecord) -> None:
        import obstore

        try:
            with self._io("write leases to"):
                obstore.put(self.objects, self._marker(record.name, record.epoch), b"")
        except StoreError:  # only what a sweep finds: the lease itself is held
            log.debug("could not mark lease %s held", record.name, exc_info=True)

    @contextlib.contextmanager
    def _io(self, action: str) -> Iterator[None]:
        """obstore's and the OS's errors as one :class:`StoreError` line (``store_io``)."""
        from obstore.exceptions import BaseError

        from framedex.store.location import store_io

        with store_io(self.location, action):
            try:
                yield
            except BaseError as ex:  # not OSError subclasses; their text names the cause
                raise OSError(" ".join(str(ex).split())[:300]) from ex

    # -- the local flock optimisation ------------------------------------------------------

    def _flock(self, name: str) -> int | None:
        """Take ``name``'s flock (a local store) without waiting: its fd, or None when a live
        process holds it."""
        import fcntl

        from framedex.store.location import store_io_path

        assert self.location.path is not None
        path = self.location.path / ".framedex" / "locks" / f"{name}.lock"
        with store_io_path(self.location.path, "write to"):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    # -- acquire / release ------------------------------------------------------------------

    def acquire(self, name: str, *, wait: bool = False, timeout: float | None = None,
                data: Mapping[str, Any] | None = None, unique: bool = False) -> Lease | None:
        """Take the lease ``name``.

        Args:
            name: the lease (letters, digits, ``-`` and ``_``).
            wait: poll until it is free (or ``timeout`` seconds pass); else return at once.
            timeout: with ``wait``, give up after this many seconds (None: never).
            data: stored in the record (what the holder is doing).
            unique: the name is this holder's alone (a writer's): its release deletes it.

        Returns:
            the :class:`Lease`, or None when it is held by someone else (and ``wait`` is
            False or the timeout passed).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            lease = self._try_acquire(name, dict(data or {}))
            if lease is not None:
                lease.unique = unique
                return lease
            if not wait:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)

    def _try_acquire(self, name: str, data: dict[str, Any]) -> Lease | None:
        local = self.location.path is not None
        fd = self._flock(name) if local else None
        if local and fd is None:
            return None  # a live process of this host holds it
        try:
            lease = self._take(name, data, flock_free=local)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        if lease is None:
            if fd is not None:
                os.close(fd)
            return None
        lease._fd = fd
        with self._mutex:
            self._held[id(lease)] = lease
        self._start_heartbeat()
        return lease

    def _take(self, name: str, data: dict[str, Any], flock_free: bool) -> Lease | None:
        epochs = self._epochs(name)
        top = epochs[-1] if epochs else 0
        previous = self._read(name, top) if top else None
        if top and previous is None:
            return None  # the top epoch is being written or was just replaced: look again
        # A live record of this host whose flock we just took has no live holder (the kernel
        # dropped the flock when it exited); anything else may still be working.
        if previous is not None and previous.live() and not (flock_free
                                                             and previous.host == _HOST):
            return None
        now = time.time()
        record = LeaseRecord(name=name, epoch=top + 1, owner=self.owner, host=_HOST,
                             pid=os.getpid(), state="held", acquired_at=now,
                             expires_at=now + self.ttl, data=data)
        if not self._create(record):
            return None  # another acquirer took this epoch first
        if any(e > record.epoch for e in self._epochs(name)):
            return None  # a newer acquirer holds a higher epoch; ours stays below, unused
        dead = previous if previous is not None and previous.state == "held" else None
        if dead is not None:
            log.info("took over lease %s from %s (epoch %d, %s)", name, dead.owner, dead.epoch,
                     "expired" if not dead.live() else "its process exited")
            self._remove(self._marker(name, dead.epoch))
        self._delete(name, [e for e in epochs if e < record.epoch])  # never the top one
        self._mark(record)
        return Lease(self, record, dead, None)

    def _release(self, lease: Lease) -> None:
        with self._mutex:
            self._held.pop(id(lease), None)
        try:
            with lease._lock:  # no heartbeat rewrites the record after this
                if not lease._lost:
                    if lease.unique:
                        self._delete(lease.name, [lease.epoch])
                    else:
                        lease.record = replace(lease.record, state="released",
                                               expires_at=time.time())
                        self._write(lease.record)
            self._remove(self._marker(lease.name, lease.epoch))
        except StoreError:  # it expires on its own
            log.warning("could not release lease %s; it expires in %g s", lease.name, self.ttl)
        finally:
            if lease._fd is not None:
                os.close(lease._fd)
                lease._fd = None

    def alive(self, record: LeaseRecord) -> bool:
        """True when the record's holder still holds it: held, unexpired, and (for a holder on
        this host of a local store) its process still has the flock."""
        if not record.live():
            return False
        if self.location.path is None or record.host != _HOST:
            return True
        fd = self._flock(record.name)
        if fd is None:
            return True  # its flock is taken: the holder is alive
        os.close(fd)
        return False  # nobody has the flock: the holder exited without releasing

    def holder(self, name: str) -> LeaseRecord | None:
        """The live record of lease ``name``, or None when nobody holds it."""
        epochs = self._epochs(name)
        if not epochs:
            return None
        record = self._read(name, epochs[-1])
        return record if record is not None and self.alive(record) else None

    def records(self, kind: str) -> list[LeaseRecord]:
        """The records of every lease of ``kind`` (``video``, ``job``, ``writer``) that is held
        or was left held by a dead holder (found through the markers), by name."""
        import obstore

        marked: dict[str, int] = {}
        root = f"{LEASE_PREFIX}/held/{kind}/"
        with self._io("read leases of"):
            for batch in obstore.list(self.objects, root, chunk_size=1000):
                for meta in batch:
                    rest = meta["path"][len(root):] if meta["path"].startswith(root) else ""
                    owner, _, leaf = rest.rpartition("/")
                    if owner and "/" not in owner and leaf.isdigit():
                        marked[owner] = max(marked.get(owner, 0), int(leaf))
        out = []
        for owner in sorted(marked):
            name, epoch = f"{kind}-{owner}", marked[owner]
            record = self._read(name, epoch)
            if record is None or record.state != "held":  # released meanwhile: a stale mark
                if record is not None:
                    self._remove(self._marker(name, epoch))
                continue
            out.append(record)
        return out

    def purge(self, name: str) -> None:
        """Delete every record of ``name`` unless one is held and alive: only for names no
        acquirer can want any more (an expired job's), since the highest epoch's record is
        what keeps a late acquirer from taking a lease twice."""
        epochs = self._epochs(name)
        if not epochs:
            return
        top = self._read(name, epochs[-1])
        if top is not None and top.state == "held" and self.alive(top):
            return
        self._delete(name, epochs)
        if top is not None:
            self._remove(self._marker(name, top.epoch))

    def forget(self, record: LeaseRecord) -> None:
        """Delete a dead holder's record and marker (a unique name's, e.g. a dead writer's:
        nobody will take that name over)."""
        if self.alive(record):
            return
        self._delete(record.name, [e for e in self._epochs(record.name) if e <= record.epoch])
        self._remove(self._marker(record.name, record.epoch))

    def close(self) -> None:
        """Release every lease this object holds and stop the heartbeat."""
        with self._mutex:
            held = list(self._held.values())
        for lease in held:
            lease.release()
        self._wake.set()

    # -- heartbeat --------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        with self._mutex:
            if self._beat is not None and self._beat.is_alive():
                return
            self._wake.clear()
            self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                          name="framedex-leases")
            self._beat.start()

    def _heartbeat(self) -> None:
        while True:
            self._wake.wait(self.ttl / 3)
            with self._mutex:
                held = list(self._held.values())
                if not held:
                    self._beat = None
                    return
            for lease in held:
                try:
                    self._renew(lease)
                except Exception:  # the next beat tries again; check() sees the expiry
                    log.warning("could not renew lease %s", lease.name, exc_info=True)

    def _renew(self, lease: Lease) -> None:
        with lease._lock:
            if lease._released or lease._lost:
                return
            if time.time() >= lease.record.expires_at and self._superseded(lease):
                lease._lost = True
                return
            lease.record = replace(lease.record, expires_at=time.time() + self.ttl)
            self._write(lease.record)
        if self._superseded(lease):
            lease._lost = True
            log.warning("lost lease %s: another holder took it over", lease.name)

    def _superseded(self, lease: Lease) -> bool:
        return any(e > lease.epoch for e in self._epochs(lease.name))


def lease_ttl_from_env(default: float | None = None) -> float | None:
    """``FRAMEDEX_LEASE_TTL_S`` (seconds), read at the edge (CLI, server), else ``default``.

    Raises:
        ConfigError: not a positive number.
    """
    from framedex.errors import check

    raw = os.environ.get("FRAMEDEX_LEASE_TTL_S")
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    check(value > 0 and value < 86400, "FRAMEDEX_LEASE_TTL_S", raw,
          "must be a number of seconds between 0 and 86400")
    return value


def lease_dir(location: StoreLocation) -> Path | None:
    """The local folder holding the leases (None for an object store)."""
    return None if location.path is None else location.path / LEASE_PREFIX
