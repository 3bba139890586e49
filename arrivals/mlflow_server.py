"""Start the MLflow tracking server, creating or upgrading its database schema first.

Run as the `mlflow` service's process, so `arrivals up` never waits for the migration
(8 s here) before starting the other services.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def main() -> None:
    """`python -m arrivals.mlflow_server BACKEND_URI -- <mlflow server args>`"""
    backend = sys.argv[1]
    server_args = sys.argv[sys.argv.index("--") + 1 :]
    mlflow = str(Path(sys.executable).parent / "mlflow")
    sqlite_file = Path(backend.removeprefix("sqlite:///")) if backend.startswith("sqlite") else None
    if sqlite_file is None or not sqlite_file.exists():
        # One writer creates (or upgrades) the schema; on a fresh DB, migrations race between
        # server workers. On PostgreSQL the upgrade is a no-op when the schema is current.
        subprocess.run([mlflow, "db", "upgrade", backend], check=True)
    os.execv(mlflow, [mlflow, "server", "--backend-store-uri", backend, *server_args])


if __name__ == "__main__":
    main()
