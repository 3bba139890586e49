"""The retrain deployment: claim -> validate -> ingest -> train -> judge -> register -> publish.

Thin Prefect wrappers around the stages in `consumer.retrain` and the commit steps in
`consumer.commit`; the round loop is a plain function (`run_rounds`). pandas, scikit-learn
and mlflow are imported inside the stages, so a flow-run process starts fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run, task_run

from consumer import commit
from consumer import ingest as ingesting
from consumer import retrain as stages
from consumer.context import RetrainContext
from consumer.fitting import Trained
from consumer.publish import render_report
from consumer.verdict import Judged, judge_round
from shared.alerts import notifier_for
from shared.events import ConfirmedEmitter
from shared.ledger import Ledger
from shared.settings import load_settings

if TYPE_CHECKING:
    from shared.ledger import FileRecord


@task(cache_policy=NO_CACHE)
def claim_files(ctx: RetrainContext) -> list[FileRecord]:
    """Claim every announced file for this run."""
    return stages.claim(ctx)


def _ingest_run_name() -> str:
    records = task_run.parameters["records"]
    return f"ingest {records[0].name}" if len(records) == 1 else f"ingest {len(records)} files"


# One task run per round, not per file: a task run costs Prefect about 0.07 s here, which was
# most of a 500-file burst. Each file's outcome is in the ledger, the log and its events.
@task(cache_policy=NO_CACHE, task_run_name=_ingest_run_name)
def ingest_files(ctx: RetrainContext, records: list[FileRecord]) -> ingesting.Ingested:
    """Validate the claimed files; accept each into the archive or quarantine it with a reason."""
    ingested = ingesting.ingest_all(ctx, records)
    waiting = f"; {len(ingested.waiting)} wait for space" if ingested.waiting else ""
    ctx.logger.info("Accepted %d of %d file(s)%s", len(ingested.accepted), len(records), waiting)
    return ingested


@task(cache_policy=NO_CACHE)
def train_model(ctx: RetrainContext, new: list[ingesting.Accepted]) -> Trained:
    """Train on all accepted data and evaluate on the holdout."""
    return stages.train(ctx, new)


@task(cache_policy=NO_CACHE)
def judge_challenger(ctx: RetrainContext, trained: Trained, round_no: int) -> Judged:
    """Score challenger and champion on the same rows; hold out the files that made it lose."""
    return judge_round(ctx, trained, ctx.model_registry(), round_no=round_no)


@task(cache_policy=NO_CACHE)
def register_and_judge(ctx: RetrainContext, judged: Judged) -> dict:
    """Register the challenger in MLflow and move `champion` only if it is surely better."""
    summary = commit.register_and_judge(ctx, judged, ctx.model_registry())
    create_markdown_artifact(
        render_report(summary),
        key="retrain-report",
        description=f"Retrain of {ctx.settings.model.name} v{summary['version']}",
    )
    return summary


def _train_round(ctx: RetrainContext, claimed: list[FileRecord], round_no: int) -> dict:
    from consumer.training import NotTrainable  # scikit-learn: imported when a round trains

    ingested = ingest_files(ctx, claimed) if claimed else ingesting.Ingested([], [], [])
    accepted = ingested.accepted
    # Files that wait for space are left out of this round: it trains on what it could store.
    waiting = {"waiting": ingested.waiting} if ingested.waiting else {}
    if claimed and not accepted:
        return {"version": None, "files": [], "rejected": ingested.rejected, **waiting}
    try:
        trained = train_model(ctx, accepted)
    except NotTrainable as reason:
        return stages.keep_without_model(ctx, accepted, str(reason)) | waiting
    judged = judge_challenger(ctx, trained, round_no)
    if judged.trained is None:
        return stages.only_suspects(ctx, judged, accepted) | waiting
    return register_and_judge(ctx, judged) | waiting


@dataclass(frozen=True)
class RoundSteps:
    """How a run claims files and trains a round: Prefect tasks here, plain functions in tests."""

    claim: Callable[[RetrainContext], list[FileRecord]]
    train_round: Callable[[RetrainContext, list[FileRecord], int], dict]


TASK_STEPS = RoundSteps(claim=claim_files, train_round=_train_round)


def run_rounds(
    ctx: RetrainContext,
    steps: RoundSteps,
    *,
    rebuild: bool,
    announced: list[float],
    window_seconds: float,
    trigger: str,
) -> list[dict]:
    """Train rounds until nothing is claimable and no trigger window is open; one round's
    summary each. On any failure the run's claims are released for the next run."""
    logger = ctx.logger
    announced = list(announced)
    rounds: list[dict] = []
    # A claim covers every file the run holds, and a file waiting for space keeps its claim
    # until the run ends: a run gives each file one round, or it would retry it at once.
    taken: set[str] = set()
    try:
        # Single flight: keep taking what arrived during the last round, so a burst costs
        # a few trainings in one process instead of one process per file; then what arrives
        # while the trigger still ignores arrivals, which only this run can take.
        while len(rounds) < ctx.settings.consumer.max_rounds_per_run:
            claimed = [r for r in steps.claim(ctx) if r.sha256 not in taken]
            taken.update(r.sha256 for r in claimed)
            if claimed:
                logger.info("Round %d: claimed %d file(s)", len(rounds) + 1, len(claimed))
                announced += [r.announced_at for r in claimed if r.announced_at is not None]
                rounds.append(steps.train_round(ctx, claimed, len(rounds) + 1))
                continue
            until = stages.listen_until(announced, window_seconds)
            if until is None or time.time() >= until:
                break
            logger.info(
                "Listening for arrivals until %s: the trigger ignores them until then",
                datetime.fromtimestamp(until).strftime("%H:%M:%S.%f")[:-4],
            )
            if not stages.await_arrival(ctx.ledger, until):
                break
        if not rounds and rebuild:
            logger.info("Rebuild: training on the accepted data as it is now.")
            rounds.append(steps.train_round(ctx, [], 1))
        elif not rounds:
            logger.info("Nothing to do for %s: an earlier run already took it.", trigger)
        # Held until now so this run did not take them again at once: the sensor's sweep
        # announces them again (sensor.reannounce_after_seconds), and a later run retries.
        waiting = ctx.ledger.release_waiting(ctx.run_id)
        if waiting:
            logger.warning("%d file(s) wait for space in %s", waiting, ctx.settings.dirs.data)
        return rounds
    except BaseException:
        released = ctx.ledger.release_claims(ctx.run_id)
        logger.error("Retrain failed; released %d claimed file(s) for the next run.", released)
        raise


def open_run(event_id: str | None) -> RetrainContext:
    """This flow run's context: the configured ledger and event emitter, Prefect's logger."""
    settings = load_settings()
    return RetrainContext(
        settings=settings,
        ledger=Ledger(settings.ledger_url),
        emitter=ConfirmedEmitter(settings.prefect_api_url),
        run_id=str(flow_run.id),
        run_name=flow_run.name or "",
        trigger_event_id=event_id,
        logger=get_run_logger(),
        notifier=notifier_for(settings.alerts),
    )


# Retries cover a passing outage (MLflow restarting): a failed attempt releases its claims,
# the retry claims them again. What still fails is announced again by the sensor's sweep.
@flow(name="retrain", retries=2, retry_delay_seconds=10)
def retrain(
    sha256: str | None = None,
    event_id: str | None = None,
    rebuild: bool = False,
    event_occurred: datetime | None = None,
    trigger_window_seconds: float = 0.0,
) -> dict:
    """Retrain on every announced file: validate, train on all accepted data, promote if better.

    `sha256` and `event_id` only name the trigger (logs, result, events): the files a run
    trains are the ones the ledger has announced, never what an event says.
    `rebuild`: train once even with no new file (after a retraction or a params change).
    `event_occurred` (set by the automation) and `trigger_window_seconds` (the deployment's
    default, from the automation's `within`): the run keeps taking arrivals until its
    trigger listens again (see `consumer.retrain.listen_until`); an event dated in the
    future counts as now.
    """
    ctx = open_run(event_id)
    try:
        rounds = run_rounds(
            ctx,
            TASK_STEPS,
            rebuild=rebuild,
            announced=stages.trigger_announced_at(event_occurred, time.time()),
            window_seconds=trigger_window_seconds,
            trigger=f"file {sha256[:12]}" if sha256 else "a manual run",
        )
    finally:
        ctx.ledger.close()
    return {"rounds": rounds, "trigger": sha256}
