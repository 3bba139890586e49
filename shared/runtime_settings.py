"""The runtime half of the settings schema: where the services listen, how the sensor and the
consumer pace themselves, the scale profile's engines, and the folders under the home.

`shared.settings` composes these sections into `Settings` and loads them; nothing here is
read at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class StrictSection(BaseModel):
    """A params.yaml section: unknown keys are errors, values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Port = Annotated[int, Field(ge=1, le=65535)]


LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")


class ServiceSettings(StrictSection):
    # Exposing the services beyond this machine is an explicit choice, refused unless the
    # Prefect API has an auth string (PREFECT_SERVER_API_AUTH_STRING, from the environment:
    # a secret never goes in params.yaml) and MLflow is told which host names to accept.
    expose: bool = False
    allowed_hosts: list[str] = Field(default_factory=list)  # MLflow --allowed-hosts
    host: str = "127.0.0.1"  # where the servers listen; anything else needs expose: true
    prefect_port: Port = 4200
    mlflow_port: Port = 5000
    serve_port: Port = 5050  # `arrivals serve` (MLflow's tracking server has 5000)
    worker_query_seconds: Annotated[float, Field(gt=0)] = 1.0
    # Flow runs start as forks of a process that has imported Prefect, pandas, scikit-learn
    # and MLflow already (arrivals/warm_engine.py; on 2 cores a run reaches Running 1.2 s
    # sooner and its decision 7 s sooner); false: every run is a cold `python -m prefect.engine`.
    warm_start: bool = True
    startup_timeout_seconds: Annotated[float, Field(gt=0)] = 120
    work_pool: str = "arrivals"
    # Each service's log (<home>/logs/<name>.log) moves to <name>.log.1 before a line would
    # take it past log_max_bytes; log_backups older files are kept: at most
    # (1 + log_backups) * log_max_bytes per service (a line is never split).
    log_max_bytes: Annotated[int, Field(ge=64 * 1024)] = 10 * 1024 * 1024
    log_backups: Annotated[int, Field(ge=1, le=100)] = 5
    # Where clients reach Prefect and MLflow when another host runs them (`arrivals up --only`,
    # docs/scaling.md), on the ports above; None: this host, at client_host.
    prefect_host: str | None = None
    mlflow_host: str | None = None

    @field_validator("host")
    @classmethod
    def _exposure_is_explicit(cls, host: str, info: ValidationInfo) -> str:
        if host not in LOOPBACK and not info.data.get("expose"):
            raise ValueError(
                f"{host!r} is reachable from other machines: set services.expose: true "
                "(with services.allowed_hosts and PREFECT_SERVER_API_AUTH_STRING) or use "
                "127.0.0.1"
            )
        return host

    @property
    def client_host(self) -> str:
        """The address local clients use (a wildcard bind is reached through loopback)."""
        return "127.0.0.1" if self.host in WILDCARD else self.host

    def prefect_api_url(self, port: int | None = None) -> str:
        """The Prefect API on `port` (an API replica's), by default on `prefect_port`."""
        return f"http://{self.prefect_host or self.client_host}:{port or self.prefect_port}/api"


class ServeSettings(StrictSection):
    """`arrivals serve` (serving/): the champion over HTTP, swapped when the alias moves."""

    enabled: bool = True  # `up` starts the `serve` service
    # The newest challenger scores every request too; the answer is always the champion's.
    shadow: bool = False
    # Inputs, predictions and the version, appended to <home>/predictions/*.parquet.
    log_predictions: bool = False
    log_max_bytes: Annotated[int, Field(ge=64 * 1024)] = 8 * 1024 * 1024  # then a new file
    # The promotion event swaps the model at once; this alias check is the fallback for a
    # missed event (the Prefect server down at that moment, say).
    poll_seconds: Annotated[float, Field(gt=0)] = 10.0
    max_rows: Annotated[int, Field(ge=1)] = 100_000  # per request: a larger one gets a 413


class SensorSettings(StrictSection):
    settle_seconds: Annotated[float, Field(gt=0)] = 0.5
    rescan_seconds: Annotated[float, Field(gt=0)] = 5
    retry_seconds: Annotated[float, Field(gt=0)] = 2
    heartbeat_seconds: Annotated[float, Field(gt=0)] = 30
    open_grace_seconds: Annotated[float, Field(gt=0)] = 10
    reannounce_after_seconds: Annotated[float, Field(gt=0)] = 10


class ConsumerSettings(StrictSection):
    claim_ttl_seconds: Annotated[float, Field(gt=0)] = 300
    max_rounds_per_run: Annotated[int, Field(ge=1)] = 20


class ScaleSettings(StrictSection):
    """The scale profile: shared engines instead of the embedded SQLite default.

    One PostgreSQL server holds three databases (Prefect, MLflow, the ledger); Redis carries
    Prefect's messaging, cache, ordering, lease storage and docket. `up` creates the
    databases when missing. API replicas listen on consecutive ports from prefect_port.
    """

    postgres_url: str = "postgresql://postgres@127.0.0.1:5432"
    prefect_database: str = "arrivals_prefect"
    mlflow_database: str = "arrivals_mlflow"
    ledger_database: str = "arrivals_ledger"
    redis_host: str = "127.0.0.1"
    redis_port: Port = 6379
    redis_db: Annotated[int, Field(ge=0, le=15)] = 0
    docket_redis_db: Annotated[int, Field(ge=0, le=15)] = 1
    api_replicas: Annotated[int, Field(ge=1, le=8)] = 2
    workers: Annotated[int, Field(ge=1, le=16)] = 2
    artifacts: Path | None = None  # the shared MLflow artifact store; default <home>/mlflow

    def database_url(self, database: str, driver: str) -> str:
        base = self.postgres_url.rstrip("/").replace("postgresql://", f"postgresql+{driver}://", 1)
        return f"{base}/{database}"


class PathSettings(StrictSection):
    home: Path = Path(".arrivals")
    # Any SQLAlchemy URL (e.g. postgresql+psycopg://host/db); default: SQLite in the home.
    ledger_url: str | None = None
    # The inbox, archive, quarantine and accepted copies; relative to the home, default
    # <home>/data. The sensor's and the workers' hosts must see it at the same absolute path.
    data: Path | None = None


class Paths(BaseModel):
    """Every runtime location, all under one home folder."""

    model_config = ConfigDict(frozen=True)
    home: Path
    data_dir: Path | None = None  # paths.data, resolved; None: <home>/data

    @property
    def data(self) -> Path:
        return self.data_dir or self.home / "data"

    @property
    def inbox(self) -> Path:
        return self.data / "inbox"

    @property
    def archive(self) -> Path:
        return self.data / "archive"

    @property
    def accepted(self) -> Path:
        """Typed copies (Parquet) of accepted files: what a retrain reads."""
        return self.data / "accepted"

    @property
    def quarantine(self) -> Path:
        return self.data / "quarantine"

    @property
    def holdout(self) -> Path:
        """The fixed holdout cut from the source (when there is a source and no holdout.file)."""
        return self.data / "holdout.csv"

    @property
    def holdout_rows(self) -> Path:
        """Each arrival's holdout rows (`<sha256>.parquet`) when the holdout comes from arrivals."""
        return self.data / "holdout"

    @property
    def ledger(self) -> Path:
        return self.home / "ledger.db"

    @property
    def engine_socket(self) -> Path:
        return self.run / "engine.sock"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def mlflow(self) -> Path:
        return self.home / "mlflow"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def predictions(self) -> Path:
        """The prediction log (serve.log_predictions): Parquet files rotated by size."""
        return self.home / "predictions"

    @property
    def metrics(self) -> Path:
        return self.home / "metrics"

    @property
    def batch_state(self) -> Path:
        return self.home / "batch_state.json"

    @property
    def producer_state(self) -> Path:
        return self.home / "producer_state.json"

    def ensure(self) -> None:
        """Create the folders the services write into."""
        for folder in (
            self.inbox,
            self.archive,
            self.accepted,
            self.holdout_rows,
            self.quarantine,
            self.prefect_home,
            self.mlflow,
            self.logs,
            self.run,
            self.models,
            self.metrics,
        ):
            folder.mkdir(parents=True, exist_ok=True)
