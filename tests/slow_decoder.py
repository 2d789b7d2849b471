"""A PyAV decoder that takes its time on files named ``slow*`` (to kill a run mid-job).

Not registered on import: a test (or its child process) registers it. Ray tasks import it by
reference when they unpickle the backend class, so this folder must be on their path.
"""

from __future__ import annotations

import os
import time

from framedex.indexer.decode.pyav import PyAVDecoder

#: Seconds per decoded frame of a ``slow*`` file.
DELAY = 0.25


class SlowDecoder(PyAVDecoder):
    """PyAV, sleeping :data:`DELAY` per frame of ``slow*`` files."""

    def _decode_sorted(self, indices, max_side):
        slow = os.path.basename(self.path).startswith("slow")
        for item in super()._decode_sorted(indices, max_side):
            if slow:
                time.sleep(DELAY)
            yield item
