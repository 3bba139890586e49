"""The retrain, stage by stage, with no Prefect in it (the flow wraps each stage in a task).

Ingest lives in `consumer.ingest`; the shared run context in `consumer.context`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumer.context import RetrainContext, now_iso
from consumer.ingest import Accepted, load_accepted
from shared import events
from shared.fs import atomic_write_json, read_json

if TYPE_CHECKING:
    import pandas as pd

    from shared.ledger import FileRecord, Ledger

LARGE_ROWS = 100_000  # from this size on a retrain logs each step (reading, fitting)


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


@dataclass(frozen=True)
class Trained:
    result: Any  # consumer.training.TrainResult
    new: list[Accepted]
    earlier: list[FileRecord]  # the accepted files this training read besides the new ones
    holdout: pd.DataFrame
    prequential: dict[str, float]  # the champion scored on the new rows before training


def files_in_window(earlier: list[FileRecord], budget: int) -> list[FileRecord]:
    """The newest earlier files whose rows fit in `budget` (the oldest one may be cut)."""
    chosen: list[FileRecord] = []
    for record in reversed(earlier):
        if budget <= 0:
            break
        chosen.append(record)
        budget -= record.rows or 0
    return chosen[::-1]


def _champion_export(ctx: RetrainContext, version: str | None = None) -> Path:
    models = ctx.settings.dirs.models
    return models / "champion.joblib" if version is None else models / f"version-{version}.joblib"


def prequential_score(ctx: RetrainContext, new: list[Accepted]) -> dict[str, float]:
    """How the deployed champion does on the fresh rows, before they are trained on.

    The drift signal: a champion that scores worse on new production data than on the
    holdout is going stale.
    """
    import joblib
    import pandas as pd

    from consumer.training import evaluate, split_xy

    export = _champion_export(ctx)
    if not new or not export.exists():
        return {}
    x, y = split_xy(pd.concat([a.frame for a in new], ignore_index=True), ctx.settings.dataset)
    return {f"prequential_{k}": v for k, v in evaluate(joblib.load(export), x, y).items()}


def train(ctx: RetrainContext, new: list[Accepted]) -> Trained:
    """Fit on the accepted data (all, or what the training policy keeps) plus the new files."""
    import pandas as pd

    from consumer.holdout import load_holdout
    from consumer.training import NotTrainable, apply_policy, train_and_evaluate

    settings = ctx.settings
    earlier = ctx.ledger.files("trained")
    if settings.training.policy == "window":
        # Read only the files the window can reach: the cost stays flat as data grows.
        new_rows = sum(len(a.frame) for a in new)
        earlier = files_in_window(earlier, settings.training.max_rows - new_rows)
    earlier_rows = sum(r.rows or 0 for r in earlier)
    if earlier_rows >= LARGE_ROWS:  # a large retrain says what it is doing
        ctx.logger.info("Reading %d accepted file(s), %d rows", len(earlier), earlier_rows)
    frames = [load_accepted(ctx, r) for r in earlier] + [a.frame for a in new]
    if not frames:
        raise NotTrainable("no accepted data to train on")
    accepted = apply_policy(pd.concat(frames, ignore_index=True), settings.training)
    if len(accepted) >= LARGE_ROWS:
        ctx.logger.info(
            "Fitting %s on %d rows (policy %s)…",
            settings.model.kind,
            len(accepted),
            settings.training.policy,
        )
    holdout = load_holdout(settings, ctx.ledger).frame
    prequential = prequential_score(ctx, new)
    result = train_and_evaluate(accepted, holdout, settings.dataset, settings.model)
    ctx.logger.info(
        "Trained on %d rows from %d file(s) (%d new, policy %s); holdout %s",
        result.train_rows,
        len(frames),
        len(new),
        settings.training.policy,
        {k: round(v, 4) for k, v in result.metrics.items()},
    )
    return Trained(result, new, earlier, holdout, prequential)


def _lineage(trained: Trained) -> list[dict[str, Any]]:
    return [
        {"name": r.name, "sha256": r.sha256, "rows": r.rows, "new": False} for r in trained.earlier
    ] + [
        {"name": a.record.name, "sha256": a.record.sha256, "rows": len(a.frame), "new": True}
        for a in trained.new
    ]


def _best_clean_version(
    ctx: RetrainContext, registry: Any, retracted: set[str], candidate: str, metrics: dict
) -> tuple[str, dict[str, float]]:
    """The best version trained on none of the retracted files (the new one included)."""
    from consumer.training import LOWER_IS_BETTER

    metric = ctx.settings.promotion.metric
    scored = {v: registry.version_metrics(v) for v in ctx.ledger.versions_without(retracted)}
    scored[candidate] = metrics
    usable = {v: m for v, m in scored.items() if metric in m}
    sign = -1 if metric in LOWER_IS_BETTER else 1
    # Ties go to the newest version: it has seen the most clean data.
    best = max(usable, key=lambda v: (sign * usable[v][metric], int(v)))
    return best, usable[best]


def register_and_judge(
    ctx: RetrainContext, trained: Trained, *, retracted: set[str] = frozenset()
) -> dict[str, Any]:
    """Log and register the challenger; move `champion` only if it is better.

    If the champion was trained on a retracted file, the champion moves regardless: to the
    best version (by the primary metric) trained on none of the retracted files.
    """
    from consumer.plots import evaluation_figures, metric_over_versions
    from consumer.registry import MlflowRegistry, NewFile
    from consumer.training import SKOPS_TRUSTED_TYPES, Decision, decide, split_xy

    settings = ctx.settings
    result = trained.result
    registry = MlflowRegistry(settings.mlflow_url, settings.model.name, settings.dataset.name)
    orphans = {a.record.previous_claimed_by for a in trained.new if a.record.previous_claimed_by}
    if orphans:
        discarded = registry.discard_versions_of(orphans)
        ctx.logger.warning(
            "Files came back from run(s) %s that died; discarded their versions %s",
            ", ".join(sorted(orphans)),
            discarded or "(none registered)",
        )
    champion = registry.champion()
    previous = champion.version if champion else None
    lineage = _lineage(trained)
    new_names = ", ".join(a.record.name for a in trained.new)
    x_hold, y_hold = split_xy(trained.holdout, settings.dataset)
    registered = registry.log_and_register(
        pipeline=result.pipeline,
        x_example=x_hold.head(5),
        params={
            "model_kind": settings.model.kind,
            **{f"model.{k}": v for k, v in settings.model.params.items()},
            "train_rows": result.train_rows,
            "train_policy": settings.training.policy,
            "holdout_rows": result.holdout_rows,
            "leaked_rows_dropped": result.leaked_rows_dropped,
            "files_total": len(lineage),
            "files_new": len(trained.new),
        },
        metrics={**result.metrics, **trained.prequential},
        new_files=[NewFile(a.record.name, a.record.sha256, a.path, a.frame) for a in trained.new],
        tags={
            "arrivals.run_name": f"retrain-{ctx.run_name}" if ctx.run_name else "retrain",
            "arrivals.flow_run_id": ctx.run_id,
            "arrivals.flow_run_url": ctx.run_url,
            "arrivals.trigger_event_id": ctx.trigger_event_id or "",
            "arrivals.files_new": new_names[:4000],
        },
        artifacts={"lineage.json": {"files": lineage}},
        figures=evaluation_figures(result.pipeline, x_hold, y_hold),
        trusted_types=SKOPS_TRUSTED_TYPES[settings.model.kind],
    )
    version = registered.version
    ctx.ledger.record_lineage(version, {f["sha256"]: f["new"] for f in lineage})
    _export_version(ctx, result.pipeline, version)

    tainted = previous is not None and bool(retracted & _shas_of(ctx, previous))
    if tainted:
        best, best_metrics = _best_clean_version(ctx, registry, retracted, version, result.metrics)
        metric = settings.promotion.metric
        decision = Decision(
            promote=best == version,
            metric=metric,
            challenger=result.metrics.get(metric),
            champion=champion.metrics.get(metric),
            delta=best_metrics.get(metric, 0) - champion.metrics.get(metric, 0),
            reason=f"champion v{previous} was trained on a retracted file; "
            f"v{best} is the best version without it",
        )
        target = best
    else:
        champion_metrics = champion.metrics if champion else None
        decision = decide(result.metrics, champion_metrics, settings.promotion)
        target = version if decision.promote else None

    if target is not None and target != previous:
        registry.move_champion(target, previous)
        _promote_export(ctx, registry, target)
    ctx.logger.info(
        "Registered %s v%s: %s",
        settings.model.name,
        version,
        f"champion is now v{target} ({decision.reason})"
        if target is not None and target != previous
        else f"champion stays {f'v{previous}' if previous else 'none'} ({decision.reason})",
    )

    ctx.ledger.mark_trained(
        {a.record.sha256: len(a.frame) for a in trained.new}, run_id=ctx.run_id, version=version
    )
    # Last: the decision tag marks the version finished (see discard_versions_of).
    registry.tag_version(
        version,
        {
            "arrivals.flow_run_id": ctx.run_id,
            "arrivals.flow_run_url": ctx.run_url,
            "arrivals.trigger_event_id": ctx.trigger_event_id or "",
            "arrivals.files_new": new_names[:4000],
            "arrivals.prequential": ", ".join(
                f"{k.removeprefix('prequential_')}={v:.4f}" for k, v in trained.prequential.items()
            ),
            "arrivals.decision_reason": decision.reason,
            "arrivals.decision": "promoted" if decision.promote else "kept champion",  # last
        },
    )
    champion_now = target if target is not None else previous
    moved = champion_now != previous
    summary = {
        "version": version,
        "decision_title": f"v{version}: champion is now v{champion_now}"
        if moved
        else f"v{version}: champion stays v{previous}",
        "promoted": decision.promote,
        "previous_champion": previous,
        "champion": champion_now,
        "champion_moved": moved,
        "metric": decision.metric,
        "delta": decision.delta,
        "reason": decision.reason,
        "metrics": result.metrics,
        "champion_metrics": champion.metrics if champion else None,
        "prequential": trained.prequential,
        "files": [a.record.name for a in trained.new],
        "files_total": len(lineage),
        "train_rows": result.train_rows,
        "mlflow_run_id": registered.run_id,
        "mlflow_run_url": f"{settings.mlflow_url}/#/experiments/{registered.experiment_id}"
        f"/runs/{registered.run_id}",
    }
    history = _write_history(ctx, summary, trained)
    registry.log_figure(
        registered.run_id,
        metric_over_versions(history, settings.promotion.metric),
        "plots/metric_over_versions.png",
    )
    _announce_model(ctx, summary, trained)
    return summary


def _shas_of(ctx: RetrainContext, version: str) -> set[str]:
    return {record.sha256 for record, _new in ctx.ledger.files_of_version(version)}


def _export_version(ctx: RetrainContext, pipeline: Any, version: str) -> None:
    """Every version's model, kept locally so a rollback or retraction needs no download."""
    import joblib

    path = _champion_export(ctx, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    joblib.dump(pipeline, tmp)
    tmp.replace(path)


def _promote_export(ctx: RetrainContext, registry: Any, version: str) -> None:
    """models/champion.joblib + champion.json: the champion a person (or a server) loads."""
    import shutil

    source = _champion_export(ctx, version)
    if not source.exists():  # a home from before local exports: fetch it from MLflow
        _export_version(ctx, registry.load_model(version), version)
    target = _champion_export(ctx)
    tmp = target.with_name(".champion.joblib.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    atomic_write_json(
        ctx.settings.dirs.models / "champion.json",
        {
            "model": ctx.settings.model.name,
            "version": version,
            "metrics": registry.version_metrics(version),
            "files": [
                {"name": r.name, "sha256": r.sha256, "rows": r.rows}
                for r, _new in ctx.ledger.files_of_version(version)
            ],
            "promoted_at": now_iso(),
            "flow_run": ctx.run_url,
        },
    )


def _write_history(ctx: RetrainContext, summary: dict, trained: Trained) -> list[dict]:
    """The seed's human-readable history: batch_state.json and metrics/version-N.json.

    Returns every version's record so far, oldest first.
    """
    dirs = ctx.settings.dirs
    at = now_iso()
    atomic_write_json(
        dirs.metrics / f"version-{summary['version']}.json",
        {**summary, "at": at, "flow_run": ctx.run_url},
    )
    state = read_json(dirs.batch_state, {"processed": [], "champion": None})
    for accepted in trained.new:
        state["processed"].append(
            {
                "file": accepted.record.name,
                "sha256": accepted.record.sha256,
                "rows": len(accepted.frame),
                "version": summary["version"],
                "promoted": summary["promoted"],
                "metrics": summary["metrics"],
                "at": at,
            }
        )
    if summary["champion_moved"]:
        state["champion"] = {"version": summary["champion"], "since": at}
    atomic_write_json(dirs.batch_state, state)
    history = [read_json(path, None) for path in dirs.metrics.glob("version-*.json")]
    return sorted((h for h in history if h), key=lambda h: int(h["version"]))


def _announce_model(ctx: RetrainContext, summary: dict, trained: Trained) -> None:
    model = ctx.settings.model.name
    version = summary["version"]

    def resource(v: str) -> dict[str, str]:
        return {
            "prefect.resource.id": events.model_resource_id(model, v),
            "prefect.resource.name": f"{model} v{v}",
        }

    related = [ctx.run_related()] + [
        {
            "prefect.resource.id": events.file_resource_id(a.record.sha256),
            "prefect.resource.role": "input-file",
            "prefect.resource.name": a.record.name,
        }
        for a in trained.new
    ]
    out = [
        events.Event(
            event=events.VERSION_REGISTERED,
            resource=resource(version),
            payload={
                "metrics": summary["metrics"],
                "prequential": summary["prequential"],
                "files": summary["files"],
                "files_total": summary["files_total"],
                "decision": summary["reason"],
                "mlflow_run": summary["mlflow_run_url"],
                "host": socket.gethostname(),
            },
            id=events.event_id(events.VERSION_REGISTERED, model, version),
            related=related,
        )
    ]
    if summary["champion_moved"]:
        champion = summary["champion"]
        out.append(
            events.Event(
                event=events.CHAMPION_PROMOTED,
                resource=resource(champion),
                payload={
                    "old_version": summary["previous_champion"],
                    "new_version": champion,
                    "metric": summary["metric"],
                    "delta": summary["delta"],
                    "reason": summary["reason"],
                },
                id=events.event_id(events.CHAMPION_PROMOTED, model, champion, version),
                related=related,
            )
        )
    ctx.emit(*out)


def render_report(summary: dict[str, Any]) -> str:
    """The retrain's report for the Prefect UI (a markdown artifact on the flow run)."""
    metrics = summary["metrics"]
    champion = summary.get("champion_metrics") or {}
    prequential = summary.get("prequential") or {}
    names = sorted(set(metrics) | set(champion))
    lines = [
        f"## {summary['decision_title']}",
        "",
        f"**Decision:** {summary['reason']}",
        "",
        f"Version **v{summary['version']}** trained on {summary['train_rows']} rows from "
        f"{summary['files_total']} file(s); new in this run: "
        + (", ".join(f"`{name}`" for name in summary["files"]) or "none (rebuild)"),
        "",
        "| metric (holdout) | challenger | champion before | champion on new rows |",
        "|---|---|---|---|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {_fmt(metrics.get(name))} | {_fmt(champion.get(name))} "
            f"| {_fmt(prequential.get(f'prequential_{name}'))} |"
        )
    lines += ["", f"[MLflow run]({summary['mlflow_run_url']})"]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


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
