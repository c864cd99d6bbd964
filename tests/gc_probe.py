"""`savegate` with the cyclic collector keeping what it finds (`gc.DEBUG_SAVEALL`), and at
exit the count of each type it found, by name, written as JSON to `$GC_PROBE_OUT`.
`python -m tests.gc_probe serve …`: the real server, so that a test can see which objects
a request left to the cyclic collector rather than to reference counting."""

from __future__ import annotations

import atexit
import collections
import gc
import json
import os
import signal
import sys

from savegate.cli import main


def _report() -> None:
    gc.collect()
    counts = collections.Counter(type(found).__qualname__ for found in gc.garbage)
    with open(os.environ["GC_PROBE_OUT"], "w") as out:
        json.dump(counts, out)


if __name__ == "__main__":
    gc.set_debug(gc.DEBUG_SAVEALL)
    atexit.register(_report)
    # Uvicorn raises the SIGTERM it drained on again once done: exit, with atexit, then.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    sys.exit(main(sys.argv[1:]))
