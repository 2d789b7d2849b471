"""One background flush for the store's buffered writers (the query log, the answers cache,
the ingest jobs): a daemon thread calls their ``flush`` every few seconds while there is work,
on demand, and a last time when they close or the interpreter exits.

Example::

    flusher = Flusher(log.flush, every_s=1.0, name="framedex-querylog")
    flusher.start()      # after buffering the first row (idempotent)
    flusher.nudge()      # flush now: enough rows are waiting
    flusher.close()      # stop the thread, flush what is left
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable


class Flusher:
    """Calls ``flush`` on a daemon thread every ``every_s`` seconds once started.

    Args:
        flush: writes what is buffered (must not raise: it runs on the thread).
        every_s: seconds between two flushes.
        name: the thread's name.
    """

    def __init__(self, flush: Callable[[], object], every_s: float, name: str):
        self._flush, self.every_s, self.name = flush, every_s, name
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        _LIVE.add(self)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (nothing more should be buffered)."""
        return self._closed

    def start(self) -> None:
        """Start the thread unless it runs or the flusher is closed (idempotent)."""
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def nudge(self) -> None:
        """Flush now, on the thread (a batch is full)."""
        self._wake.set()

    def close(self) -> None:
        """Stop the thread and flush once more, here (idempotent)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._flush()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.every_s)
            self._wake.clear()
            self._flush()
            if self._closed:
                return


_LIVE: weakref.WeakSet[Flusher] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """A buffered row is written when the process ends normally, whoever forgot to close."""
    for flusher in list(_LIVE):
        flusher.close()
