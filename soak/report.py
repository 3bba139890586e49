"""The soak's figures: one table for people, the same as JSON, and the one-line verdict."""

from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.stats import summarize
from bench.tables import fmt


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the run showed, as plain data (the JSON file holds exactly this)."""
    delivered = result["delivered"]
    faults = result["chaos"].faults
    findings = result["findings"]
    by_part: dict[str, list[float | None]] = {}
    for fault in faults:
        by_part.setdefault(fault.part, []).append(fault.recovery_seconds)
    fault_kinds = {part: {"count": len(v), **summarize(v)} for part, v in sorted(by_part.items())}
    fault_kinds["full disk"] = {"count": 1, "catch_up_seconds": result["disk"]["catch_up_seconds"]}
    return {
        "machine": {"cpus": _cpus(), "processor": platform.processor() or platform.machine()},
        "minutes": result["minutes"],
        "profile": result["profile"],
        "seed": result["seed"],
        "files": len(delivered),
        "files_by_kind": dict(sorted(Counter(d.kind for d in delivered).items())),
        "drops_refused_by_full_disk": len(result["driver"].refused),
        "faults": len(faults) + 1,
        "faults_by_kind": fault_kinds,
        "heal_failures": result["chaos"].failures,
        "lost": findings.lost,
        "duplicated": findings.duplicated,
        "file_to_decision_seconds": result["latency"],
        "disk": result["disk"],
        "invariants": "ok" if not findings.violations else "violated",
        "violations": [asdict(v) for v in findings.violations],
        "counts": findings.counts,
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def verdict_line(data: dict[str, Any]) -> str:
    """The last line printed, exactly as the issue asks for it."""
    return (
        f"soak: {data['files']} files, {data['faults']} faults, lost {len(data['lost'])}, "
        f"duplicated {len(data['duplicated'])}, invariants {data['invariants']}"
    )


def table(data: dict[str, Any]) -> str:
    """The figures for people: files by kind, faults by kind with recovery, the rest."""
    lines = [
        f"Soak: {data['minutes']:g} min, {data['profile']} profile, seed {data['seed']}, "
        f"{data['machine']['cpus']} CPUs ({data['machine']['processor']})",
        "",
        "FILES BY KIND      " + "  ".join(f"{k} {v}" for k, v in data["files_by_kind"].items()),
        f"REFUSED            {data['drops_refused_by_full_disk']} drops (the disk was full)",
        "",
        f"{'FAULT':<14}{'COUNT':>6}{'RECOVERY P50 S':>16}{'MAX S':>8}",
    ]
    for part, entry in data["faults_by_kind"].items():
        if part == "full disk":
            catch_up = fmt(entry["catch_up_seconds"])
            lines.append(f"{part:<14}{1:>6}{'catch-up ' + catch_up:>16}{'':>8}")
        else:
            lines.append(
                f"{part:<14}{entry['count']:>6}{fmt(entry['p50']):>16}{fmt(entry['max']):>8}"
            )
    latency = data["file_to_decision_seconds"]
    disk = data["disk"]
    lines += [
        "",
        f"FILE -> DECISION   p50 {fmt(latency['p50'])} s  p95 {fmt(latency['p95'])} s  "
        f"max {fmt(latency['max'])} s  ({latency['n']} contents)",
        f"FULL DISK          held {disk['held_seconds']:.0f} s, up to "
        f"{disk['files_waiting_for_space_max']} files waited for space, status named it: "
        f"{'yes' if disk['status_named_it'] else 'NO'}",
        f"LOST               {len(data['lost'])}  {', '.join(data['lost'][:5])}",
        f"DUPLICATED         {len(data['duplicated'])}  {', '.join(data['duplicated'][:5])}",
        f"INVARIANTS         {data['invariants']}",
    ]
    lines += [f"  {v['invariant']}: {v['detail']}" for v in data["violations"][:20]]
    if data["heal_failures"]:
        lines.append(f"HEAL FAILURES      {'; '.join(data['heal_failures'])}")
    return "\n".join(lines)


def write_json(data: dict[str, Any], folder: Path, stamp: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"soak-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path
