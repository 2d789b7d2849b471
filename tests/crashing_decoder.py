"""A PyAV decoder whose decode worker dies on files named ``crash*`` (for the pool's tests).

Not registered on import: a test registers it for its own duration, so it never joins the
decoder contract tests. Decode workers import it by reference when they unpickle a unit.
"""

from __future__ import annotations

import os
import signal

from framedex.indexer.decode.pyav import PyAVDecoder


class CrashingDecoder(PyAVDecoder):
    """Kills its own process (as a segfault or the OOM killer would) when decoding ``crash*``."""

    def _decode_sorted(self, indices, max_side):
        if os.path.basename(self.path).startswith("crash"):
            os.kill(os.getpid(), signal.SIGKILL)
        yield from super()._decode_sorted(indices, max_side)
