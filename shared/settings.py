"""Settings: params.yaml + environment, validated once at start.

`load_settings()` is the only way to get a `Settings`; nothing is read at import time.
A bad file stops startup with `SettingsError`, whose message is one line naming the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "params.yaml"


class SettingsError(ValueError):
    """params.yaml or the environment is invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    type: Literal["float", "int", "category", "string"]
    min: float | None = None
    max: float | None = None
    values: list[str] | None = None
    # A missing value (see dataset.na_values) is allowed: NaN in the typed frame. Otherwise
    # the row is dropped as bad. A label source column is never usable when missing.
    nullable: bool = False
    # `yes` in the file is read as the declared `Yes` (only for a category with values).
    case_insensitive: bool = False

    @model_validator(mode="after")
    def _values_only_for_categories(self) -> ColumnSpec:
        if self.values is not None and self.type != "category":
            raise ValueError("'values' is only allowed for type: category")
        if self.case_insensitive:
            if self.type != "category" or self.values is None:
                raise ValueError(
                    "'case_insensitive' is only allowed for type: category with values"
                )
            folded = [value.lower() for value in self.values]
            clashes = sorted({v for v in self.values if folded.count(v.lower()) > 1})
            if clashes:
                raise ValueError(
                    f"'case_insensitive' would merge values {', '.join(clashes)}: "
                    "they differ only in case"
                )
        return self


class LabelRule(_Strict):
    name: str = "label"
    kind: Literal["ratio_above", "above", "column"]
    numerator: str | None = None
    denominator: str | None = None
    column: str | None = None
    threshold: float | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> LabelRule:
        needed = {
            "ratio_above": ("numerator", "denominator", "threshold"),
            "above": ("column", "threshold"),
            "column": ("column",),
        }[self.kind]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"label kind {self.kind!r} needs {', '.join(missing)}")
        return self

    def source_columns(self) -> list[str]:
        """Columns the rule reads."""
        if self.kind == "ratio_above":
            return [self.numerator, self.denominator]  # type: ignore[list-item]
        return [self.column]  # type: ignore[list-item]


class Features(_Strict):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]


class DatasetSettings(_Strict):
    name: str
    # The file the demo producer slices into batches (and the fixed holdout is cut from).
    # None: data only arrives; the holdout then comes from the arrivals (see holdout).
    source: Path | None = None
    columns: dict[str, ColumnSpec]
    label: LabelRule
    features: Features
    max_file_bytes: Annotated[int, Field(gt=0)] = 50_000_000  # of a .csv.gz: decompressed too
    # Cells that mean "no value", compared after stripping whitespace and ignoring case (so
    # `na`, `NULL` and `nan` count too). A category's declared value is never one of them.
    na_values: list[str] = Field(default_factory=lambda: ["", "NA", "N/A", "null", "NaN", "None"])
    # drop: rows that fail validation go to quarantine/<file>.rows.csv, the rest is accepted.
    # reject_file: one bad row quarantines the whole file.
    bad_rows: Literal["drop", "reject_file"] = "drop"
    # More bad rows than this fraction of a file's rows: the whole file is rejected.
    max_bad_row_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2

    @model_validator(mode="after")
    def _columns_exist(self) -> DatasetSettings:
        for column in [*self.label.source_columns(), *self.features.all]:
            if column not in self.columns:
                raise ValueError(f"column {column!r} is used but not declared under columns")
        if not self.features.all:
            raise ValueError("features: at least one feature is needed")
        if self.label.kind == "column" and self.label.column in self.features.all:
            raise ValueError(f"label column {self.label.column!r} cannot also be a feature")
        return self


class HoldoutSettings(_Strict):
    """The evaluation rows: a pinned `file`, else cut from the source, else from arrivals."""

    fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25  # of the source, or of each arrival
    seed: int = 7
    file: Path | None = None  # a CSV of the user's own, relative to params.yaml like source
    # Until the holdout has this many rows, versions are registered but none is champion.
    min_rows: Annotated[int, Field(ge=1)] = 30


class AutomationSettings(_Strict):
    producer: bool = True  # the demo producer's cron deployment (needs dataset.source)
    cron_schedule: str = "*/2 * * * *"
    max_batches: Annotated[int, Field(ge=1)] = 8
    batch_size: Annotated[int, Field(ge=1)] = 22
    batch_seed: int = 42

    @model_validator(mode="after")
    def _cron_has_five_fields(self) -> AutomationSettings:
        if len(self.cron_schedule.split()) != 5:
            raise ValueError(f"cron_schedule {self.cron_schedule!r} must have 5 fields")
        return self


class ModelSettings(_Strict):
    name: Annotated[str, Field(min_length=1)]
    kind: Literal["random_forest", "logistic_regression", "hist_gradient_boosting"]
    params: dict[str, int | float | str | bool | None] = Field(default_factory=dict)
    random_state: int = 42


class TrainingSettings(_Strict):
    """How much accepted data a retrain reads, so its cost stays bounded as data grows."""

    policy: Literal["all", "window", "sample"] = "all"  # window: newest rows; sample: seeded
    max_rows: Annotated[int, Field(ge=1)] = 200_000  # for window and sample
    seed: int = 0


Metric = Literal["roc_auc", "accuracy", "f1_macro", "log_loss"]


# Where each metric's values live; a numeric floor outside them can never be met.
METRIC_RANGES = {"roc_auc": (0.0, 1.0), "accuracy": (0.0, 1.0), "f1_macro": (0.0, 1.0)}


class PromotionSettings(_Strict):
    """Paired, statistical champion/challenger: see `consumer.decision.decide`."""

    metric: Metric = "roc_auc"
    # The challenger's interval vs the champion must lie above this (in the metric's units).
    min_improvement: Annotated[float, Field(ge=0)] = 0.0
    # baseline: beat the prior-probability baseline on the same rows with confidence;
    # a number: the metric must be better than it; null: no floor.
    floor: Literal["baseline"] | float | None = "baseline"
    guard_metric: Metric | None = None  # a second metric that must not regress...
    guard_tolerance: Annotated[float, Field(ge=0)] = 0.05  # ...by more than this, with confidence
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95  # of the two-sided intervals
    resamples: Annotated[int, Field(ge=1000, le=100_000)] = 2000  # paired bootstrap resamples
    seed: int = 0  # of the bootstrap: the same data always gives the same decision
    # Suspect search: leave one file out when a round has at most this many new files,
    # else bisect the round's files.
    leave_one_out_max: Annotated[int, Field(ge=1)] = 8

    @model_validator(mode="after")
    def _floor_fits_metric(self) -> PromotionSettings:
        if isinstance(self.floor, float):
            low, high = METRIC_RANGES.get(self.metric, (0.0, float("inf")))
            if not low <= self.floor <= high:
                raise ValueError(
                    f"floor {self.floor} is outside {self.metric}'s range [{low}, {high}]; "
                    "use floor: baseline to derive it from the data"
                )
        return self


Port = Annotated[int, Field(ge=1, le=65535)]


LOOPBACK = ("127.0.0.1", "localhost", "::1")
AF_UNIX_PATH_MAX = 108  # bytes, the terminating NUL included (Linux)
WILDCARD = ("0.0.0.0", "::", "")


class ServiceSettings(_Strict):
    # Exposing the services beyond this machine is an explicit choice, refused unless the
    # Prefect API has an auth string (PREFECT_SERVER_API_AUTH_STRING, from the environment:
    # a secret never goes in params.yaml) and MLflow is told which host names to accept.
    expose: bool = False
    allowed_hosts: list[str] = Field(default_factory=list)  # MLflow --allowed-hosts
    host: str = "127.0.0.1"  # where the servers listen; anything else needs expose: true
    prefect_port: Port = 4200
    mlflow_port: Port = 5000
    worker_query_seconds: Annotated[float, Field(gt=0)] = 1.0
    # Flow runs start as forks of a process that has imported Prefect, pandas, scikit-learn
    # and MLflow already (arrivals/warm_engine.py; on 2 cores a run reaches Running 1.2 s
    # sooner and its decision 7 s sooner); false: every run is a cold `python -m prefect.engine`.
    warm_start: bool = True
    startup_timeout_seconds: Annotated[float, Field(gt=0)] = 120
    work_pool: str = "arrivals"

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


class SensorSettings(_Strict):
    settle_seconds: Annotated[float, Field(gt=0)] = 0.5
    rescan_seconds: Annotated[float, Field(gt=0)] = 5
    retry_seconds: Annotated[float, Field(gt=0)] = 2
    heartbeat_seconds: Annotated[float, Field(gt=0)] = 30
    open_grace_seconds: Annotated[float, Field(gt=0)] = 10
    reannounce_after_seconds: Annotated[float, Field(gt=0)] = 10


class ConsumerSettings(_Strict):
    claim_ttl_seconds: Annotated[float, Field(gt=0)] = 300
    max_rounds_per_run: Annotated[int, Field(ge=1)] = 20


class ScaleSettings(_Strict):
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


class PathSettings(_Strict):
    home: Path = Path(".arrivals")
    # Any SQLAlchemy URL (e.g. postgresql+psycopg://host/db); default: SQLite in the home.
    ledger_url: str | None = None


class Paths(BaseModel):
    """Every runtime location, all under one home folder."""

    model_config = ConfigDict(frozen=True)
    home: Path

    @property
    def data(self) -> Path:
        return self.home / "data"

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


class Settings(_Strict):
    dataset: DatasetSettings
    holdout: HoldoutSettings = HoldoutSettings()
    automation: AutomationSettings = AutomationSettings()
    model: ModelSettings
    training: TrainingSettings = TrainingSettings()
    promotion: PromotionSettings = PromotionSettings()
    services: ServiceSettings = ServiceSettings()
    sensor: SensorSettings = SensorSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    paths: PathSettings = PathSettings()
    profile: Literal["embedded", "scale"] = "embedded"  # ARRIVALS_PROFILE overrides
    scale: ScaleSettings = ScaleSettings()
    config_file: Path = DEFAULT_CONFIG

    @property
    def producer_off_reason(self) -> str | None:
        """Why these settings have no demo producer, as a person reads it; None: they have one."""
        if self.dataset.source is None:
            return "params.yaml has no dataset.source to slice into batches"
        if not self.automation.producer:
            return "automation.producer is false in params.yaml"
        return None

    @property
    def scaled(self) -> bool:
        return self.profile == "scale"

    @property
    def prefect_ports(self) -> list[int]:
        """One port per Prefect API replica (one in the embedded profile)."""
        replicas = self.scale.api_replicas if self.scaled else 1
        return [self.services.prefect_port + i for i in range(replicas)]

    def prefect_api_url_of(self, replica: int) -> str:
        port = self.prefect_ports[replica % len(self.prefect_ports)]
        return f"http://{self.services.client_host}:{port}/api"

    @property
    def mlflow_backend_uri(self) -> str:
        if self.scaled:
            return self.scale.database_url(self.scale.mlflow_database, "psycopg")
        return f"sqlite:///{self.dirs.mlflow / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        if self.scaled and self.scale.artifacts is not None:
            return self.scale.artifacts
        return self.dirs.mlflow / "artifacts"

    @property
    def home(self) -> Path:
        return self.paths.home

    @property
    def dirs(self) -> Paths:
        return Paths(home=self.paths.home)

    @property
    def warm_engine_socket(self) -> Path | None:
        """Where flow runs start warm (`arrivals.warm_engine`), or None: they start cold.

        Also None when the home is so deep that the socket path would not fit AF_UNIX's
        108 bytes: warm start only ever saves time, it is never worth a failed start."""
        path = self.dirs.engine_socket
        fits = len(os.fsencode(path)) < AF_UNIX_PATH_MAX
        return path if self.services.warm_start and fits else None

    @property
    def prefect_api_url(self) -> str:
        return f"http://{self.services.client_host}:{self.services.prefect_port}/api"

    @property
    def prefect_ui_url(self) -> str:
        return f"http://{self.services.client_host}:{self.services.prefect_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.services.client_host}:{self.services.mlflow_port}"

    @property
    def ledger_url(self) -> str:
        if self.paths.ledger_url:
            return self.paths.ledger_url
        if self.scaled:
            return self.scale.database_url(self.scale.ledger_database, "psycopg")
        return f"sqlite:///{self.dirs.ledger}"

    def prefect_env(self) -> dict[str, str]:
        """Environment every process needs to talk to this instance's Prefect, never ~/.prefect."""
        env = {
            "PREFECT_HOME": str(self.dirs.prefect_home),
            "PREFECT_API_URL": self.prefect_api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            # A database error that makes a client retry (a 503, seconds lost) goes to
            # prefect.log with its traceback instead of being filtered out. On SQLite
            # arrivals/prefect_server.py prevents the usual one.
            "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",
            "PREFECT_WORKER_QUERY_SECONDS": str(self.services.worker_query_seconds),
            "PREFECT_RUNNER_POLL_FREQUENCY": str(max(1, int(self.services.worker_query_seconds))),
        }
        auth = os.environ.get("PREFECT_SERVER_API_AUTH_STRING")
        if auth:
            env["PREFECT_API_AUTH_STRING"] = auth  # what clients send to an authed server
        if self.scaled:
            scale = self.scale
            env.update(
                {
                    "PREFECT_SERVER_DATABASE_CONNECTION_URL": scale.database_url(
                        scale.prefect_database, "asyncpg"
                    ),
                    # Migrations run once, before the replicas start (they would race).
                    "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
                    "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
                    "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
                    "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
                    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
                    "PREFECT_REDIS_MESSAGING_HOST": scale.redis_host,
                    "PREFECT_REDIS_MESSAGING_PORT": str(scale.redis_port),
                    "PREFECT_REDIS_MESSAGING_DB": str(scale.redis_db),
                    "PREFECT_SERVER_DOCKET_URL": (
                        f"redis://{scale.redis_host}:{scale.redis_port}/{scale.docket_redis_db}"
                    ),
                }
            )
        return env

    def child_env(self) -> dict[str, str]:
        """The full environment for a child process: ours + Prefect's + this config and home."""
        env = dict(os.environ)
        env.update(self.prefect_env())
        env["ARRIVALS_HOME"] = str(self.home)
        env["ARRIVALS_CONFIG"] = str(self.config_file)
        env["ARRIVALS_PREFECT_PORT"] = str(self.services.prefect_port)
        env["ARRIVALS_MLFLOW_PORT"] = str(self.services.mlflow_port)
        env["ARRIVALS_PROFILE"] = self.profile
        env["MLFLOW_TRACKING_URI"] = self.mlflow_url
        # The machine is offline and users did not opt in: no telemetry from any service.
        env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        env["DO_NOT_TRACK"] = "true"
        return env


def _format_error(error: ValidationError, config_file: Path) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{config_file}: {key}: {message}{suffix}"


def _env_port(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as error:
        raise SettingsError(f"{name}={raw!r}: must be a port number") from error


def load_settings(config: str | Path | None = None) -> Settings:
    """Build the settings from params.yaml (or ARRIVALS_CONFIG) and the environment.

    Environment overrides: ARRIVALS_HOME, ARRIVALS_PREFECT_PORT, ARRIVALS_MLFLOW_PORT,
    ARRIVALS_PROFILE (embedded | scale).
    Relative dataset paths resolve against the config file's folder, the home folder
    against the current directory only when given through ARRIVALS_HOME.
    """
    config_file = Path(config or os.environ.get("ARRIVALS_CONFIG") or DEFAULT_CONFIG).resolve()
    try:
        raw = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise SettingsError(f"{config_file}: file not found") from error
    except yaml.YAMLError as error:
        raise SettingsError(f"{config_file}: not valid YAML: {error}".splitlines()[0]) from error
    if not isinstance(raw, dict):
        raise SettingsError(f"{config_file}: (top level): expected a mapping of sections")
    raw["config_file"] = config_file

    services = raw.get("services") or {}
    if not isinstance(services, dict):
        raise SettingsError(f"{config_file}: services: expected a mapping of settings")
    services = dict(services)
    for key, env_name in (
        ("prefect_port", "ARRIVALS_PREFECT_PORT"),
        ("mlflow_port", "ARRIVALS_MLFLOW_PORT"),
    ):
        port = _env_port(env_name)
        if port is not None:
            services[key] = port
    raw["services"] = services
    profile = os.environ.get("ARRIVALS_PROFILE")
    if profile:
        raw["profile"] = profile

    try:
        settings = Settings.model_validate(raw)
    except ValidationError as error:
        raise SettingsError(_format_error(error, config_file)) from None

    if settings.services.expose:
        if not os.environ.get("PREFECT_SERVER_API_AUTH_STRING"):
            raise SettingsError(
                f"{config_file}: services.expose: true needs PREFECT_SERVER_API_AUTH_STRING in "
                "the environment (the Prefect API's basic-auth secret)"
            )
        if not settings.services.allowed_hosts:
            raise SettingsError(
                f"{config_file}: services.allowed_hosts: required when services.expose is true "
                "(the host names MLflow may be reached by)"
            )
    env_home = os.environ.get("ARRIVALS_HOME")
    home = Path(env_home).resolve() if env_home else config_file.parent / settings.paths.home
    source = _beside(config_file, settings.dataset.source)
    holdout_file = _beside(config_file, settings.holdout.file)
    if holdout_file is not None and not holdout_file.is_file():
        raise SettingsError(f"{config_file}: holdout.file: {holdout_file} is not a file")
    return settings.model_copy(
        update={
            "paths": settings.paths.model_copy(update={"home": home.resolve()}),
            "dataset": settings.dataset.model_copy(update={"source": source}),
            "holdout": settings.holdout.model_copy(update={"file": holdout_file}),
        }
    )


def _beside(config_file: Path, path: Path | None) -> Path | None:
    """A data path from params.yaml, absolute: relative ones are relative to that file."""
    if path is None:
        return None
    return (path if path.is_absolute() else config_file.parent / path).resolve()
