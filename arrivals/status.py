"""`arrivals status`: services, files, recent arrivals, champion; also when services are down.

`collect_status` gathers the facts (the operator contract's JSON object, extended with
`recent`, `oldest_pending_age_seconds`, `primary_metric`, `logs` and `disk`, see
`arrivals.disk`); `render_status` is pure and turns that object into the table people read.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

import httpx

from arrivals.disk import disk_line, disk_problem, disk_status
from arrivals.events_feed import human_size, shorten
from arrivals.stack import Stack
from shared.fs import read_json
from shared.ledger import PENDING_STATES, WAITING_FOR_SPACE, Disposition, FileState, Ledger
from shared.settings import Settings

if TYPE_CHECKING:
    from consumer.registry import Registry

log = logging.getLogger("arrivals.status")

RECENT = 10
PENDING = "pending"  # the outcome of an arrival whose file is in one of PENDING_STATES
# What a pending file waits for, by ledger state.
WAITING_FOR = {
    FileState.DETECTED: "waiting for Prefect to accept its event",
    FileState.ANNOUNCED: "waiting for a retrain run",
    FileState.CLAIMED: "a retrain run is on it",
}


def champion_from_registry(registry: Registry, model: str) -> dict[str, Any] | None:
    """The champion as the retrain's registry sees it, with the decision its tags record."""
    champion = registry.champion()
    if champion is None:
        return None
    return {
        "model": model,
        "version": champion.version,
        "metrics": dict(champion.metrics),
        "decision": decision_of_tags(champion.tags),
        "source": "mlflow",
    }


def champion_from_mlflow(
    settings: Settings, registry: Registry | None = None
) -> dict[str, Any] | None:
    """The champion from MLflow (the export, if MLflow fails to answer)."""
    # Imported here: MLflow costs over a second to import, and only a live MLflow needs it.
    from mlflow.exceptions import MlflowException

    from consumer.registry import MlflowRegistry

    if registry is None:
        registry = MlflowRegistry(settings.mlflow_url, settings.model.name, settings.dataset.name)
    try:
        return champion_from_registry(registry, settings.model.name)
    except MlflowException as error:
        log.warning("MLflow did not answer for the champion: %s", error)
        return champion_from_export(settings, f"MLflow did not answer: {error}")


def decision_of_tags(tags: dict[str, str]) -> dict[str, Any] | None:
    """A version's decision from its `arrivals.*` tags (None: a version from before them)."""
    if "arrivals.decision" not in tags:
        return None

    def number(key: str) -> float | None:
        value = tags.get(key, "")
        return float(value) if value else None

    return {
        "outcome": tags["arrivals.decision"],
        "reason": tags.get("arrivals.decision_reason", ""),
        "delta": number("arrivals.delta"),
        "delta_ci_low": number("arrivals.delta_ci_low"),
        "delta_ci_high": number("arrivals.delta_ci_high"),
        "confidence": number("arrivals.confidence"),
    }


def last_decision(settings: Settings) -> dict[str, Any] | None:
    """The newest version's decision, from the local history (no MLflow call)."""
    newest = max(
        settings.dirs.metrics.glob("version-*.json"),
        key=lambda p: int(p.stem.removeprefix("version-")),
        default=None,
    )
    record = read_json(newest, None) if newest else None
    if not record:
        return None
    keys = ("version", "outcome", "reason", "delta", "delta_ci_low", "delta_ci_high", "at")
    return {key: record.get(key) for key in keys}


def champion_from_export(settings: Settings, why: str = "MLflow is down") -> dict[str, Any] | None:
    exported = read_json(settings.dirs.models / "champion.json", None)
    if exported is None:
        return None
    return {
        "model": exported["model"],
        "version": exported["version"],
        "metrics": exported["metrics"],
        "source": f"models/champion.json ({why})",
    }


def arrival_outcome(
    disposition: str, state: str, arrival_detected_at: float, file_detected_at: float
) -> str:
    """What became of one arrival: trained, rejected, duplicate, pending, retracted, released.

    A rejected file a person re-admitted gets a fresh `detected_at`; its earlier arrivals
    ended as `released` (rejected, then let in again), whatever the content's state now.
    """
    if disposition == Disposition.DUPLICATE:
        return Disposition.DUPLICATE.value
    if arrival_detected_at < file_detected_at or state == FileState.RELEASED:
        return FileState.RELEASED.value
    if state in PENDING_STATES:
        return PENDING
    return state


def recent_arrivals(ledger: Ledger, limit: int, now: float) -> list[dict[str, Any]]:
    """The newest `limit` arrivals (names files came in under), newest first, with outcomes."""
    recent = []
    for arrival, record in ledger.recent_arrivals(limit):
        outcome = arrival_outcome(
            arrival.disposition, record.state, arrival.detected_at, record.detected_at
        )
        if outcome == Disposition.DUPLICATE:
            note = f"same content as {arrival.duplicate_of}"
        elif outcome == PENDING and (record.reason or "").startswith(WAITING_FOR_SPACE):
            note = record.reason or ""  # which write found the data folder full
        elif outcome == PENDING:
            note = WAITING_FOR.get(record.state, record.state)
        elif outcome == FileState.RELEASED:
            note = "rejected, then released from the quarantine"
        else:
            note = record.reason or ""
        with_version = outcome in (FileState.TRAINED, FileState.RETRACTED)
        recent.append(
            {
                "name": arrival.name,
                "sha256": arrival.sha256,
                "size": arrival.size,
                "detected_via": arrival.detected_via,
                "detected_at": datetime.fromtimestamp(arrival.detected_at, UTC).isoformat(),
                "age_seconds": round(max(0.0, now - arrival.detected_at), 1),
                "outcome": outcome,
                "model_version": record.model_version if with_version else None,
                "note": note,
            }
        )
    return recent


def oldest_pending_age(ledger: Ledger, now: float) -> float | None:
    """Seconds since the oldest still-pending file was detected (None: nothing pending)."""
    oldest = ledger.oldest_pending_detected_at()
    return None if oldest is None else round(max(0.0, now - oldest), 1)


def serving_from_serve(settings: Settings, services: dict[str, Any]) -> dict[str, Any] | None:
    """What `arrivals serve` answers with now (GET /version), when it runs here and answers."""
    entry = services.get("serve")
    if entry is None or not entry["healthy"] or entry.get("where") == "remote":
        return None
    try:
        response = httpx.get(f"{settings.serve_url}/version", timeout=2.0)
        response.raise_for_status()
        return {**response.json(), "url": settings.serve_url}
    except (httpx.HTTPError, ValueError):
        return None


def collect_status(
    settings: Settings, *, recent: int = RECENT, registry: Registry | None = None
) -> dict[str, Any]:
    """The operator contract's status object, plus recent arrivals and the pending age.

    `registry` (MLflow at the configured URL when None) is asked only while MLflow is up.
    """
    stack = Stack(settings)
    services = {}
    for name, status in stack.statuses().items():
        entry: dict[str, Any] = {"healthy": status.healthy, "pid": status.pid}
        if status.url is not None:
            entry["url"] = status.url
        if status.where == "remote":  # another host runs it (`arrivals up --only`)
            entry.update(where="remote", reachable=status.reachable, detail=status.detail)
        services[name] = entry
    now = time.time()
    ledger = Ledger(settings.ledger_url)
    try:
        files = ledger.counts()
        last = recent_arrivals(ledger, recent, now) if recent > 0 else []
        pending_age = oldest_pending_age(ledger, now)
        waiting = ledger.waiting_for_space()
    finally:
        ledger.close()
    if services["mlflow"]["healthy"]:
        champion = champion_from_mlflow(settings, registry)
    else:
        champion = champion_from_export(settings)
    return {
        "home": str(settings.home),
        "config": str(settings.config_file),
        "services": services,
        "inbox": str(settings.dirs.inbox),
        "quarantine": str(settings.dirs.quarantine),
        "logs": str(settings.dirs.logs),
        "files": files,
        "oldest_pending_age_seconds": pending_age,
        "recent": last,
        "primary_metric": settings.promotion.metric,
        "champion": champion,
        "last_decision": last_decision(settings),
        "serving": serving_from_serve(settings, services),
        "disk": disk_status(settings.dirs.data, waiting),
    }


def check_status(status: dict[str, Any], max_wait: float) -> tuple[bool, str]:
    """(healthy, one line saying why): every service healthy, no file waiting over `max_wait`."""
    problems = []
    down = [name for name, entry in status["services"].items() if not entry["healthy"]]
    if down:
        problems.append(f"down: {', '.join(down)} (`arrivals up --detach` starts what is missing)")
    pending = status["files"].get("pending", 0)
    age = status.get("oldest_pending_age_seconds")
    if age is not None and age > max_wait:
        problems.append(
            f"a file has waited {human_age(age)} to be trained, over --max-wait "
            f"{human_age(max_wait)} ({pending} pending; `arrivals status` says what each waits for)"
        )
    if full := disk_problem(status.get("disk")):
        problems.append(full)
    if problems:
        return False, "FAIL: " + "; ".join(problems)
    waiting = "nothing pending" if age is None else f"{pending} pending, oldest {human_age(age)}"
    return True, f"OK: {len(status['services'])} services healthy, {waiting}"


# -- rendering (pure) -----------------------------------------------------------------------
def human_age(seconds: float | None) -> str:
    """`42 s`, `3 min 05 s`, `2 h 10 min`, `3 d 4 h`."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return [
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)), r[-1]]
        ).rstrip()
        for r in [header, *rows]
    ]


def _files_line(status: dict[str, Any]) -> str:
    files = status["files"]
    pending = f"pending {files.get('pending', 0)}"
    details = []
    age = status.get("oldest_pending_age_seconds")
    if files.get("pending"):
        details.append(f"oldest {human_age(age)}")
    if files.get("unannounced"):
        details.append(f"{files['unannounced']} not yet accepted by Prefect")
    if details:
        pending += f" ({', '.join(details)})"
    shown = {"pending", "unannounced"}
    others = [f"{key} {value}" for key, value in files.items() if key not in shown]
    return "   ".join([pending, *others])


def _champion_line(status: dict[str, Any]) -> str:
    champion = status.get("champion")
    if champion is None:
        return (
            "none yet (the first version that beats the prior baseline with confidence, on a "
            "holdout of at least holdout.min_rows rows, becomes champion)"
        )
    metrics = champion.get("metrics") or {}
    primary = status.get("primary_metric")
    keys = [primary] if primary in metrics else []
    keys += [k for k in ("accuracy", "f1_macro", "log_loss") if k in metrics and k not in keys]
    scores = "  ".join(f"{k} {metrics[k]:.4f}" for k in keys)
    line = f"{champion['model']} v{champion['version']}  {scores}".rstrip()
    source = champion.get("source", "mlflow")
    return line if source == "mlflow" else f"{line}  (from {source})"


def _serving_line(serving: dict[str, Any], tz: tzinfo | None) -> str:
    if serving.get("version") is None:
        return f"no champion to serve yet ({serving['url']}/invocations answers 503)"
    loaded = datetime.fromisoformat(serving["loaded_at"]).astimezone(tz)
    line = f"v{serving['version']} since {loaded:%H:%M:%S} at {serving['url']}/invocations"
    shadow = serving.get("shadow")
    if shadow:
        if shadow.get("rows"):
            line += (
                f"; shadow v{shadow['version']} agrees on {shadow['agreement']:.1%} of "
                f"{shadow['rows']:,} rows ({shadow['requests']:,} requests)"
            )
        else:
            line += f"; shadow v{shadow['version']} (no request scored yet)"
    return line


def _health_cell(entry: dict[str, Any]) -> str:
    """`yes`/`NO` for this host's processes; `reachable`/`UNREACHABLE`/`not checked` else."""
    if entry.get("where") != "remote":
        return "yes" if entry["healthy"] else "NO"
    return {True: "reachable", False: "UNREACHABLE", None: "not checked"}[entry["reachable"]]


def render_status(status: dict[str, Any], *, tz: tzinfo | None = None) -> str:
    """The status object as a compact text report for people (`tz` None = local time)."""
    services = status["services"]
    lines = [f"Arrivals  {status['home']}", ""]
    lines += _table(
        ["SERVICE", "HEALTHY", "PID", "URL"],
        [
            [
                name,
                _health_cell(entry),
                str(entry["pid"]) if entry["pid"] is not None else "-",
                entry.get("url") or entry.get("detail", ""),
            ]
            for name, entry in services.items()
        ],
    )
    # Another host's process is started there (`arrivals up --only`), not by `up` here.
    down = [n for n, e in services.items() if not e["healthy"] and e.get("where") != "remote"]
    if down:
        where = status.get("logs", "<home>/logs")
        lines.append(
            f"down: {', '.join(down)}  (`arrivals up --detach` starts what is missing; "
            f"logs in {where})"
        )
    lines += [
        "",
        f"FILES       {_files_line(status)}",
        f"INBOX       {status['inbox']}",
        f"QUARANTINE  {status['quarantine']}",
    ]
    if disk := disk_line(status.get("disk")):
        lines.append(f"DISK        {disk}")
    lines.append(f"CHAMPION    {_champion_line(status)}")
    last = status.get("last_decision")
    if last:
        lines.append(f"DECISION    v{last['version']}: {last['reason']}")
    if status.get("serving"):
        lines.append(f"SERVING     {_serving_line(status['serving'], tz)}")
    recent = status.get("recent") or []
    lines += ["", f"LAST {len(recent)} ARRIVALS" if recent else "NO ARRIVALS YET"]
    if recent:
        rows = []
        for arrival in recent:
            when = datetime.fromisoformat(arrival["detected_at"]).astimezone(tz)
            version = arrival.get("model_version")
            rows.append(
                [
                    when.strftime("%m-%d %H:%M:%S"),
                    shorten(arrival["name"], 32),
                    human_size(arrival["size"]),
                    arrival["detected_via"],
                    arrival["outcome"],
                    f"v{version}" if version else "-",
                    shorten(arrival.get("note") or "", 70),
                ]
            )
        lines += _table(["DETECTED", "FILE", "SIZE", "VIA", "OUTCOME", "MODEL", "NOTE"], rows)
    return "\n".join(lines)
