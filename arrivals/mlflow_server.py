"""Start the MLflow tracking server, creating its database schema first if it is new.

Run as the `mlflow` service's process, so `arrivals up` never waits for the migration
(8 s here) before starting the other services.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def main() -> None:
    """`python -m arrivals.mlflow_server DB_PATH -- <mlflow server args>`"""
    db = Path(sys.argv[1])
    server_args = sys.argv[sys.argv.index("--") + 1 :]
    mlflow = str(Path(sys.executable).parent / "mlflow")
    if not db.exists():
        # One writer creates the schema; migrations on a fresh DB race between workers.
        subprocess.run([mlflow, "db", "upgrade", f"sqlite:///{db}"], check=True)
    os.execv(mlflow, [mlflow, "server", "--backend-store-uri", f"sqlite:///{db}", *server_args])


if __name__ == "__main__":
    main()
