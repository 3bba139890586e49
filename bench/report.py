"""The report: what the numbers were measured on, every part's tables, and the JSON files."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.scenarios.burst import render_bursts
from bench.scenarios.latency import polling_parts, render_polling_comparison, render_stages
from bench.scenarios.retrain import render_retrain
from bench.scenarios.serve import render_serve
from bench.scenarios.window import render_window
from shared.fs import atomic_write_json
from shared.settings import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, versions, load: what the numbers were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024**2, 1)
    versions = {}
    for package in ("prefect", "mlflow", "scikit-learn", "pandas", "pyarrow", "watchdog"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "memory_gib": memory_gib,
        "cpu_model": cpu,
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "git": commit,
        "load_average_at_start": os.getloadavg(),
    }


def report_errors(report: dict[str, Any]) -> dict[str, str]:
    """The parts (and bursts) that failed, with their errors."""
    errors = {}
    for key, part in report["parts"].items():
        if isinstance(part, dict) and "error" in part:
            errors[key] = part["error"]
        elif isinstance(part, list):
            for item in part:
                if "error" in item:
                    errors[f"{key} of {item['files']}"] = item["error"]
    return errors


def render_report(report: dict[str, Any]) -> str:
    """Every table of the report, as markdown."""
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    load = ", ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    out = [
        "# Arrivals benchmark",
        "",
        f"Machine: {m['nproc']} cores, {m['memory_gib']} GiB, {m['cpu_model']}; "
        f"Python {m['python']}; {versions}; git {m['git']}; load average at start {load}. "
        f"Started {report['started_at']}, took {report.get('duration_seconds', 0) / 60:.1f} min"
        f" ({report.get('outcome', '?')}).",
        "",
    ]
    polling = polling_parts(report)
    out += [render_stages(key, part) for key, part in polling]
    if polling:
        out.append(render_polling_comparison(polling))
    if isinstance(window := report["parts"].get("window"), dict) and "error" not in window:
        out.append(render_window(window))
    if isinstance(bursts := report["parts"].get("burst"), list):
        out.append(render_bursts(bursts))
    if isinstance(retrain := report["parts"].get("retrain"), list):
        out.append(render_retrain(retrain))
    if isinstance(decisions := report["parts"].get("decisions"), dict) and "error" not in decisions:
        # Imported only when the part ran: it loads scikit-learn and the judge.
        from bench.scenarios.decisions import render_decisions

        out.append(render_decisions(decisions))
    if isinstance(serve := report["parts"].get("serve"), dict) and "throughput" in serve:
        out.append(render_serve(serve))  # shown even when it failed (its failed requests)
    errors = report_errors(report)
    if errors:
        out += ["## Parts that failed", "", *(f"- {k}: {v}" for k, v in errors.items()), ""]
    return "\n".join(out)


def write_results(report: dict[str, Any]) -> Path:
    """bench/results/latest.json plus a timestamped copy; returns the copy."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    copy = RESULTS_DIR / f"bench-{stamp}.json"
    atomic_write_json(copy, report)
    atomic_write_json(RESULTS_DIR / "latest.json", report)
    return copy
