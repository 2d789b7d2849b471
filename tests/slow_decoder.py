"""A PyAV decoder that stalls on files named ``slow*`` (to kill a run mid-job).

Not registered on import: a test (or its child process) registers it. Ray tasks import it by
reference when they unpickle the backend class, so this folder must be on their path.
"""

from __future__ import annotations

import os
import time

from framedex.indexer.decode.pyav import PyAVDecoder

#: Seconds per decoded frame of a ``slow*`` file.
DELAY = 0.25
#: Frames of a ``slow*`` file from this grid index on stall for :data:`HOLD` seconds each:
#: the windows before them are encoded and staged, the video never completes, and the test
#: kills the driver whenever it sees the staged files, however loaded the machine.
HOLD_FROM = 400
HOLD = 120.0


class SlowDecoder(PyAVDecoder):
    """PyAV, sleeping :data:`DELAY` per frame of ``slow*`` files (:data:`HOLD` from
    frame :data:`HOLD_FROM`)."""

    def _decode_sorted(self, indices, max_side):
        slow = os.path.basename(self.path).startswith("slow")
        for item in super()._decode_sorted(indices, max_side):
            if slow:
                time.sleep(HOLD if item[0] >= HOLD_FROM else DELAY)
            yield item
