"""The scale profile's test settings: the machine's PostgreSQL, and per-module overrides."""

from __future__ import annotations

import uuid

POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def scale_overrides() -> dict:
    """PARAMS_OVERRIDES for a scale-profile test module: unique databases, own Redis DBs."""
    tag = uuid.uuid4().hex[:8]
    redis_db = 2 + int(tag, 16) % 7 * 2  # an even number 2..14; docket uses the next one
    return {
        "profile": "scale",
        "automation": {"cron_schedule": "0 0 1 1 *"},
        "sensor": {"rescan_seconds": 2, "reannounce_after_seconds": 20},
        "scale": {
            "postgres_url": POSTGRES,
            "prefect_database": f"arrivals_test_{tag}_prefect",
            "mlflow_database": f"arrivals_test_{tag}_mlflow",
            "ledger_database": f"arrivals_test_{tag}_ledger",
            "redis_db": redis_db,
            "docket_redis_db": redis_db + 1,
            "api_replicas": 2,
            "workers": 2,
        },
    }
