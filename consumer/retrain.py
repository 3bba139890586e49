"""The retrain, stage by stage, with no Prefect in it (the flow wraps each stage in a task).

claim -> ingest (`consumer.ingest`) -> train (here, fitting in `consumer.fitting`) -> judge
(`consumer.verdict`) -> commit (`consumer.commit`: named steps in a fixed order) -> publish
(`consumer.publish`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from consumer.context import RetrainContext
from consumer.fitting import LARGE_ROWS, Trained, files_in_window, fit
from consumer.ingest import Accepted, load_accepted
from shared.ledger import FileState

if TYPE_CHECKING:
    from datetime import datetime

    from consumer.verdict import Judged
    from shared.ledger import FileRecord, Ledger


def claim(ctx: RetrainContext) -> list[FileRecord]:
    """Take every announced file (and expired claims): one run trains them together."""
    return ctx.ledger.claim_pending(ctx.run_id, ttl_seconds=ctx.settings.consumer.claim_ttl_seconds)


# How long after a trigger's window a run still listens. The sensor records a file in the
# ledger before it builds the file's event, and marks it announced (claimable) as soon as
# Prefect accepts the event: about 10 ms here. A second covers a busy machine; a file later
# still is announced again by the sensor's sweep.
ANNOUNCE_MARGIN_SECONDS = 1.0
LISTEN_POLL_SECONDS = 0.2


def listen_until(announced_at: Iterable[float], window_seconds: float) -> float | None:
    """Until when (epoch seconds) a run must keep taking arrivals; None: not at all.

    The retrain automation's reactive trigger fires on an arrival, then ignores arrivals for
    up to `window_seconds` after that event (automations/retrain_on_arrival.yaml). Any
    arrival this run saw announced may have opened such a window: the event that started it,
    and every file it claimed (their own runs were cancelled by single flight, their windows
    still count). Nobody else will take what lands in those windows, so the run listens
    until the last of them has closed instead of leaving it to the sensor's sweep.
    """
    latest = max(announced_at, default=None)
    if latest is None or window_seconds <= 0:
        return None
    return latest + window_seconds + ANNOUNCE_MARGIN_SECONDS


def trigger_announced_at(occurred: datetime | None, now: float) -> list[float]:
    """The trigger event's time, as `listen_until` takes it: never later than `now`.

    Whoever can post an event sets its `occurred`; a forged one dated next year would keep
    the run listening, and holding the single-flight slot, until then.
    """
    return [] if occurred is None else [min(occurred.timestamp(), now)]


def await_arrival(
    ledger: Ledger,
    until: float | None,
    *,
    poll_seconds: float = LISTEN_POLL_SECONDS,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait until a file is claimable (True) or `until` has passed (False)."""
    while not ledger.has_claimable():
        remaining = (until or 0.0) - clock()
        if remaining <= 0:
            return False
        sleep(min(poll_seconds, remaining))
    return True


def train(ctx: RetrainContext, new: list[Accepted]) -> Trained:
    """Fit on the accepted data (all, or what the training policy keeps) plus the new files."""
    # pandas costs a quarter second to import (consumer.holdout imports it too): a flow-run
    # process loads it only when it trains.
    import pandas as pd

    from consumer.holdout import load_holdout

    settings = ctx.settings
    earlier = ctx.ledger.files(FileState.TRAINED)
    if settings.training.policy == "window":
        # Read only the files the window can reach: the cost stays flat as data grows.
        new_rows = sum(len(a.frame) for a in new)
        earlier = files_in_window(earlier, settings.training.max_rows - new_rows)
    earlier_count = sum(r.rows or 0 for r in earlier)
    if earlier_count >= LARGE_ROWS:  # a large retrain says what it is doing
        ctx.logger.info("Reading %d accepted file(s), %d rows", len(earlier), earlier_count)
    with ctx.timer.stage("read"):
        frames = [load_accepted(ctx, r) for r in earlier]
    earlier_rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    # This round's files count: with no source their holdout rows are the holdout's newest
    # (and in the first round its only ones).
    holdout = load_holdout(settings, ctx.ledger, [a.record.sha256 for a in new])
    result = fit(ctx, earlier_rows, new, holdout)
    ctx.logger.info(
        "Trained on %d rows from %d file(s) (%d new, policy %s); holdout (%s) %s",
        result.train_rows,
        len(earlier) + len(new),
        len(new),
        settings.training.policy,
        holdout.description,
        {k: round(v, 4) for k, v in result.metrics.items()},
    )
    return Trained(result, new, earlier, earlier_rows, holdout)


def keep_without_model(ctx: RetrainContext, new: list[Accepted], reason: str) -> dict[str, Any]:
    """Accepted files that cannot train a model yet stay accepted data for the next retrain."""
    ctx.ledger.mark_trained(
        {a.record.sha256: len(a.frame) for a in new}, run_id=ctx.run_id, version=None
    )
    ctx.logger.warning("No model this time: %s", reason)
    return {
        "version": None,
        "promoted": False,
        "reason": reason,
        "files": [a.record.name for a in new],
    }


def only_suspects(ctx: RetrainContext, judged: Judged, new: list[Accepted]) -> dict[str, Any]:
    """No version this round: every new file is suspect, or the rest cannot train alone.

    The clean new files (if any) stay accepted data for the next retrain, as without a model.
    """
    held = {a.record.sha256 for a, _ in judged.suspects}
    clean = [a for a in new if a.record.sha256 not in held]
    names = ", ".join(a.record.name for a, _ in judged.suspects)
    if clean:
        summary = keep_without_model(ctx, clean, f"without the suspects ({names}) nothing trains")
    else:
        ctx.logger.warning("No version this round: every new file is suspect (%s)", names)
        summary = {"version": None, "promoted": False, "files": []}
        summary["reason"] = f"every new file is suspect ({names})"
    summary["suspects"] = [{"name": a.record.name, "reason": r} for a, r in judged.suspects]
    return summary
