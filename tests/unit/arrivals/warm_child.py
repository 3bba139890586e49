"""What a warm-engine child runs in the protocol tests, in place of `prefect.engine`.

It reports what it was given (environment, cwd, argv) on stdout, writes to stderr, then
exits with $WARM_EXIT, or waits for a signal when $WARM_WAIT is set.
"""

from __future__ import annotations

import json
import os
import signal
import sys

if __name__ == "__main__":
    report = {
        "pid": os.getpid(),
        "mark": os.environ.get("WARM_MARK"),
        "cwd": os.getcwd(),
        "argv": sys.argv[1:],
    }
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    sys.stderr.write("child stderr line\n")
    sys.stderr.flush()
    if os.environ.get("WARM_WAIT"):
        signal.pause()
    raise SystemExit(int(os.environ.get("WARM_EXIT", "0")))
