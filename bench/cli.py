"""`python -m bench`: the options, and the retrain child's entry point."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence

import bench
from bench.scenarios.retrain import retrain_child
from shared.logs import setup_logging

PARTS = ("latency", "window", "burst", "default-polling", "retrain", "decisions", "serve")
BURST_SIZES = (100, 500)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options, checked: parts known, burst sizes numbers, at least one drop."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=bench.__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=bench.__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default: {','.join(PARTS)})",
    )
    parser.add_argument("--drops", type=int, default=20, help="timed single drops (default 20)")
    parser.add_argument(
        "--window-pairs", type=int, default=10, help="pairs of drops of `window` (default 10)"
    )
    parser.add_argument(
        "--default-polling-drops",
        type=int,
        default=8,
        help="timed single drops with the 10 s worker poll (default 8)",
    )
    parser.add_argument(
        "--bursts",
        default=",".join(str(b) for b in BURST_SIZES),
        help="burst sizes, in order (default 100,500)",
    )
    parser.add_argument(
        "--burst-timeout", type=float, default=300, help="seconds before a burst file counts lost"
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=300,
        help="seconds to wait after a burst for the automation to act on every event",
    )
    parser.add_argument(
        "--drop-timeout", type=float, default=180, help="seconds one drop may take to be terminal"
    )
    parser.add_argument(
        "--stage-outside",
        action="store_true",
        help="write each drop outside the inbox and rename it in (a person's `mv`), "
        "instead of under a temp name inside the inbox (what `arrivals drop` does)",
    )
    parser.add_argument(
        "--decision-pairs",
        type=int,
        default=200,
        help="pairs of equal models in the decisions part (default 200)",
    )
    parser.add_argument(
        "--serve-seconds",
        type=float,
        default=15,
        help="seconds each throughput loop of the serve part is timed (default 15)",
    )
    parser.add_argument(
        "--serve-promotions",
        type=int,
        default=20,
        help="promotions under steady load in the serve part (default 20)",
    )
    parser.add_argument(
        "--serve-restarts",
        type=int,
        default=3,
        help="restarts of `mlflow models serve` in the serve part (default 3)",
    )
    parser.add_argument("--seed", type=int, default=4, help="seed of the synthetic rows")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes and logs")
    parser.add_argument("--retrain-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    args.parts = parts
    try:
        args.bursts = [int(b) for b in args.bursts.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--bursts {args.bursts!r}: expected comma-separated numbers")
    if args.drops < 1 or args.default_polling_drops < 1:
        parser.error("--drops and --default-polling-drops must be at least 1")
    if args.serve_seconds <= 0 or args.serve_promotions < 1 or args.serve_restarts < 1:
        parser.error("--serve-seconds must be positive, --serve-promotions and --serve-restarts 1+")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run, exit 0 only if every part ran (the retrain child: print JSON)."""
    setup_logging()
    args = parse_args(argv)
    if args.retrain_child:
        result = retrain_child(json.loads(args.retrain_child))
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    # Imported here, not above: the retrain child must not load Prefect (its peak RSS is the
    # measurement). The parent loads every part's code now, before any stack starts.
    from bench.run import run

    # SIGTERM unwinds like Ctrl-C, through every `finally`: the stacks are always stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return run(args)
