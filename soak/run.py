"""One soak: a fresh stack, arrivals that never stop, faults, a full disk, then the invariants.

Timeline of a run of `minutes`: the driver drops files and the chaos loop kills parts for the
whole storm; at 40% of it the data folder is filled for a while and then freed; after the
storm the stack is healed once more and the soak waits until nothing is pending, then checks
the invariants (soak/invariants.py) and counts what was lost or duplicated.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arrivals.harness import RunningStack, WaitTimedOut, stack_environ, wait_for, write_params
from arrivals.scale import drop_databases
from bench.stats import summarize
from producer.batches import select_batch
from shared.dataset import training_pool
from shared.fs import is_temp_name
from shared.ledger import PENDING_STATES, FileState
from soak.chaos import EMBEDDED_PARTS, SCALE_PARTS, Chaos
from soak.disk import OwnRedis, SmallDisk
from soak.driver import Driver, Plan
from soak.gather import check, events_stored
from soak.invariants import Delivered

log = logging.getLogger("soak")
PRODUCER = "produce-batch/producer"
PRODUCER_GRACE_SECONDS = 15
STAGED_FILES = 5  # land on the full disk by rename: they must wait, then train
CLAIM_TTL_SECONDS = 60  # a killed run's files wait this long at most (the default is 300)
QUIET_TIMEOUT_SECONDS = 420  # after the storm: every file finished within this
# Then every arrival event stored: a resend of one a restart lost comes 15, 45 or 105 s on.
EVENTS_TIMEOUT_SECONDS = 150
DISK_MB = 64


@dataclass(frozen=True)
class SoakConfig:
    minutes: float
    profile: str
    seed: int
    keep: bool = False


def soak_overrides(config: SoakConfig, data_dir: Path, redis_port: int | None) -> dict:
    """params.yaml for the soak: a fast producer clock, short claims, data on the small disk."""
    overrides: dict[str, Any] = {
        "automation": {"cron_schedule": "* * * * *", "batch_size": 5, "max_batches": 200},
        "consumer": {"claim_ttl_seconds": CLAIM_TTL_SECONDS},
        "sensor": {"rescan_seconds": 2, "reannounce_after_seconds": 10},
        "paths": {"data": str(data_dir), "ledger_url": None},
    }
    if config.profile == "scale":
        tag = uuid.uuid4().hex[:8]
        overrides["profile"] = "scale"
        overrides["scale"] = {
            "prefect_database": f"arrivals_soak_{tag}_prefect",
            "mlflow_database": f"arrivals_soak_{tag}_mlflow",
            "ledger_database": f"arrivals_soak_{tag}_ledger",
            "redis_port": redis_port,
            "api_replicas": 2,
            "workers": 2,
        }
    return overrides


def producer_deliveries(stack: RunningStack) -> list[Delivered]:
    """What the cron producer dropped, with the content it wrote (batches are deterministic)."""
    s = stack.settings
    produced = []
    state = s.dirs.producer_state
    if state.exists():
        produced = json.loads(state.read_text(encoding="utf-8")).get("produced", [])
    pool = training_pool(s.dataset, s.holdout)
    found = []
    for entry in produced:
        batch = select_batch(
            pool,
            entry["batch"],
            batch_size=s.automation.batch_size,
            seed=s.automation.batch_seed,
            dataset_name=s.dataset.name,
        )
        data = batch.rows.to_csv(index=False).encode()
        found.append(
            Delivered(entry["file"], hashlib.sha256(data).hexdigest(), "producer", "trained")
        )
    return found


def stop_producer(stack: RunningStack) -> None:
    """Stop the producer's clock and drop its scheduled runs: no file may land while we count."""
    deployment = stack.prefect("GET", "/deployments/name/produce-batch/producer").json()
    stack.prefect("PATCH", f"/deployments/{deployment['id']}", json={"paused": True})
    for run in stack.flow_runs(PRODUCER, "SCHEDULED"):
        stack.prefect("DELETE", f"/flow_runs/{run['id']}")
    # A run already started writes its one file within seconds. Its Prefect state cannot be
    # waited on: a run whose process a fault killed stays Running there.
    time.sleep(PRODUCER_GRACE_SECONDS)


def quiet(stack: RunningStack, shas: set[str]) -> bool:
    """Nothing pending in the ledger, every delivered content finished, an empty inbox."""
    if unfinished(stack, shas) or stack.open_ledger.counts()["pending"]:
        return False
    return not [p for p in stack.settings.dirs.inbox.iterdir() if not is_temp_name(p.name)]


def claimed_shas(stack: RunningStack) -> set[str]:
    """The contents a run holds a claim on now."""
    return {r.sha256 for r in stack.open_ledger.files(FileState.CLAIMED)}


def unfinished(stack: RunningStack, shas: set[str]) -> set[str]:
    """Of `shas`, those not yet in a terminal state (or not recorded yet)."""
    states = {r.sha256: r.state for r in stack.open_ledger.files()}
    return {sha for sha in shas if states.get(sha) in (None, *PENDING_STATES)}


def disk_phase(stack: RunningStack, disk: SmallDisk, driver: Driver, hold: float) -> dict:
    """Fill the data folder, land files it cannot store, hold it full while arrivals go on,
    free it, and time the catch-up."""
    staged = driver.stage(disk.path / ".soak-staged", STAGED_FILES)
    refused_before = len(driver.log.refused)
    filled = disk.fill()
    driver.land(staged)  # in the inbox now, with no room for their accepted copies
    seen: list[dict] = []
    end = time.monotonic() + hold
    while time.monotonic() < end:
        try:
            seen.append(stack.status().get("disk") or {})
        except (subprocess.SubprocessError, ValueError) as error:  # during a fault: again
            log.info("status during the fill failed: %s", error)
        time.sleep(3)
    disk.free()
    freed = time.monotonic()
    pending = {d.sha256 for d in driver.log.delivered}
    try:
        wait_for(lambda: not unfinished(stack, pending), 300, "catch-up after the disk was freed")
        catch_up = time.monotonic() - freed
    except AssertionError:
        catch_up = None
    waiting = max((entry.get("waiting_for_space") or 0 for entry in seen), default=0)
    return {
        "filler_bytes": filled,
        "held_seconds": hold,
        "landed_on_full_disk": len(staged),
        "drops_refused": len(driver.log.refused) - refused_before,
        "status_samples": len(seen),
        "files_waiting_for_space_max": waiting,
        # `status` said the folder was low on space and that files waited for it.
        "status_named_it": any(entry.get("low") for entry in seen) and waiting > 0,
        "catch_up_seconds": catch_up,
    }


def storm(stack: RunningStack, config: SoakConfig, disk: SmallDisk, redis: OwnRedis | None) -> dict:
    """The driver and the chaos loop for `minutes`, with the disk phase in the middle."""
    s = stack.settings
    duration = config.minutes * 60
    until = time.monotonic() + duration
    driver = Driver(s.dirs.inbox, training_pool(s.dataset, s.holdout), config.seed, Plan())
    chaos = Chaos(
        stack,
        config.seed + 1,
        SCALE_PARTS if config.profile == "scale" else EMBEDDED_PARTS,
        restart_redis=redis.restart if redis else None,
        claimed=lambda: claimed_shas(stack),
    )
    threads = [
        threading.Thread(target=driver.run, args=(until,), name="driver", daemon=True),
        threading.Thread(target=chaos.run, args=(until,), name="chaos", daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(duration * 0.4)
        disk_result = disk_phase(stack, disk, driver, hold=min(60.0, duration * 0.15))
        time.sleep(max(0.0, until - time.monotonic()))
    finally:  # also on Ctrl-C: a heal after `down` would leave services running
        driver.stop()
        chaos.stop()
        for thread in threads:
            thread.join(timeout=360)
    return {"driver": driver.log, "chaos": chaos.log, "disk": disk_result}


def latencies(stack: RunningStack, delivered: list[Delivered], sent_at: dict[str, float]) -> dict:
    """Seconds from a file's drop to its content's decision (first delivery of each content)."""
    finished = {r.sha256: r.finished_at for r in stack.open_ledger.files()}
    first: dict[str, float] = {}
    for d in delivered:
        if d.kind != "duplicate" and d.name in sent_at:
            first.setdefault(d.sha256, sent_at[d.name])
    values = [finished[sha] - at for sha, at in first.items() if finished.get(sha)]
    return summarize([max(0.0, v) for v in values])


def run(config: SoakConfig) -> dict:
    """The whole soak; the result as the report prints it and the JSON keeps it."""
    work = Path(tempfile.mkdtemp(prefix="arrivals-soak-"))
    disk = SmallDisk(work / "data", DISK_MB)
    redis = OwnRedis() if config.profile == "scale" else None
    stack = None
    started = time.time()
    try:
        disk.mount()
        if redis is not None:
            redis.start()
        overrides = soak_overrides(config, disk.path, redis.port if redis else None)
        params = write_params(work / "params.yaml", overrides)
        stack = RunningStack.fresh(work / "home", params)
        with stack_environ(stack.env):
            stack.up()
            result = storm(stack, config, disk, redis)
            stack.up()  # whatever the last fault left down
            stop_producer(stack)
            delivered = result["driver"].delivered + producer_deliveries(stack)
            shas = {d.sha256 for d in delivered}
            # Not RunningStack.quiesce: a run whose worker was killed stays Running in
            # Prefect for good; the ledger and the inbox say whether work is left.
            try:
                wait_for(lambda: quiet(stack, shas), QUIET_TIMEOUT_SECONDS, "quiet")
            except WaitTimedOut as error:  # what is still pending shows as violations
                log.error("%s", error)
            try:
                wait_for(lambda: events_stored(stack), EVENTS_TIMEOUT_SECONDS, "events", every=5)
            except WaitTimedOut as error:  # what is still missing shows as violations
                log.error("%s", error)
            findings = check(stack, delivered, claim_ttl=CLAIM_TTL_SECONDS)
            latency = latencies(stack, delivered, result["driver"].sent_at)
        return {
            "started": started,
            "minutes": config.minutes,
            "profile": config.profile,
            "seed": config.seed,
            "delivered": delivered,
            "driver": result["driver"],
            "chaos": result["chaos"],
            "disk": result["disk"],
            "findings": findings,
            "latency": latency,
        }
    finally:
        if stack is not None:
            stack.down()
            if config.profile == "scale":  # the run's own databases: nothing is kept
                scale = stack.settings.scale
                databases = [scale.prefect_database, scale.mlflow_database, scale.ledger_database]
                drop_databases(scale.postgres_url, databases)
        if redis is not None:
            redis.stop()
        disk.unmount()
        if not config.keep:
            shutil.rmtree(work, ignore_errors=True)
