"""Logging setup for the long-running processes (the CLI, the sensor)."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S")
    # One line per HTTP request drowns what matters (arrivals, retrains, promotions).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic narrates every ledger check (context, DDL mode); `up` says what changed itself.
    logging.getLogger("alembic").setLevel(logging.WARNING)
