"""`python -m soak` (`make soak MINUTES=10 PROFILE=embedded|scale`): run it, print the figures."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from shared.logs import setup_logging
from soak.disk import DiskError
from soak.report import summary, table, verdict_line, write_json
from soak.run import SoakConfig, run

log = logging.getLogger("soak")
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the storm")
    parser.add_argument("--profile", choices=("embedded", "scale"), default="embedded")
    parser.add_argument("--seed", type=int, default=16, help="the drops' and faults' seed")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--keep", action="store_true", help="keep the home and logs")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when nothing was lost or duplicated and every invariant held, else 1."""
    setup_logging()
    args = parse_args(argv)
    config = SoakConfig(args.minutes, args.profile, args.seed, args.keep)
    try:
        result = run(config)
    except DiskError as error:
        log.error("%s (the soak's full-disk phase needs root)", error)
        return 2
    data = summary(result)
    path = write_json(data, args.out, time.strftime("%Y%m%d-%H%M%S"))
    sys.stdout.write(table(data) + f"\n\nJSON: {path}\n")
    line = verdict_line(data)
    sys.stdout.write(line + "\n")
    ok = data["invariants"] == "ok" and not data["lost"] and not data["duplicated"]
    return 0 if ok else 1
