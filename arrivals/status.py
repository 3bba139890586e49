"""`arrivals status`: services, file counts and the champion, also when services are down."""

from __future__ import annotations

from typing import Any

import httpx

from arrivals.stack import Stack
from shared.fs import read_json
from shared.ledger import Ledger
from shared.settings import Settings


def champion_from_mlflow(settings: Settings) -> dict[str, Any] | None:
    """The champion via MLflow's REST API (no `import mlflow`: status must be fast)."""
    api = f"{settings.mlflow_url}/api/2.0/mlflow"
    name = settings.model.name
    with httpx.Client(timeout=5.0) as client:
        alias = client.get(
            f"{api}/registered-models/alias", params={"name": name, "alias": "champion"}
        )
        if alias.status_code != 200:
            return None
        version = alias.json()["model_version"]
        run = client.get(f"{api}/runs/get", params={"run_id": version["run_id"]})
        run.raise_for_status()
        metrics = {m["key"]: m["value"] for m in run.json()["run"]["data"].get("metrics", [])}
    return {"model": name, "version": version["version"], "metrics": metrics, "source": "mlflow"}


def champion_from_export(settings: Settings) -> dict[str, Any] | None:
    exported = read_json(settings.dirs.models / "champion.json", None)
    if exported is None:
        return None
    return {
        "model": exported["model"],
        "version": exported["version"],
        "metrics": exported["metrics"],
        "source": "models/champion.json (MLflow is down)",
    }


def collect_status(settings: Settings) -> dict[str, Any]:
    """The operator contract's status object."""
    stack = Stack(settings)
    services = {}
    for name, status in stack.statuses().items():
        entry: dict[str, Any] = {"healthy": status.healthy, "pid": status.pid}
        if status.url is not None:
            entry["url"] = status.url
        services[name] = entry
    ledger = Ledger(settings.ledger_url)
    try:
        files = ledger.counts()
    finally:
        ledger.close()
    if services["mlflow"]["healthy"]:
        champion = champion_from_mlflow(settings)
    else:
        champion = champion_from_export(settings)
    return {
        "home": str(settings.home),
        "config": str(settings.config_file),
        "services": services,
        "inbox": str(settings.dirs.inbox),
        "quarantine": str(settings.dirs.quarantine),
        "files": files,
        "champion": champion,
    }


def render_status(status: dict[str, Any]) -> str:
    """The same facts as a compact text table for people."""
    lines = [f"Arrivals home: {status['home']}", "", "service   healthy  pid      url"]
    for name, entry in status["services"].items():
        mark = "yes" if entry["healthy"] else "NO"
        pid = entry["pid"] if entry["pid"] is not None else "-"
        lines.append(f"{name:<9} {mark:<8} {pid!s:<8} {entry.get('url', '')}")
    files = status["files"]
    lines += [
        "",
        "files     " + "  ".join(f"{k}={v}" for k, v in files.items()),
        f"inbox     {status['inbox']}",
        f"quarantine {status['quarantine']}",
    ]
    champion = status["champion"]
    if champion is None:
        lines.append("champion  none yet")
    else:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(champion["metrics"].items()))
        lines.append(f"champion  {champion['model']} v{champion['version']} ({metrics})")
    return "\n".join(lines)
