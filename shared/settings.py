"""Settings: params.yaml + environment, validated once at start.

`load_settings()` is the only way to get a `Settings`; nothing is read at import time.
A bad file stops startup with `SettingsError`, whose message is one line naming the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from shared.alerts import AlertSettings
from shared.model_params import unknown_param
from shared.runtime_settings import (
    ConsumerSettings,
    Paths,
    PathSettings,
    ScaleSettings,
    SensorSettings,
    ServeSettings,
    ServiceSettings,
    StrictSection,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "params.yaml"


class SettingsError(ValueError):
    """params.yaml or the environment is invalid; the message names the key."""


class ColumnSpec(StrictSection):
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


class LabelRule(StrictSection):
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


class Features(StrictSection):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]


class DatasetSettings(StrictSection):
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


class HoldoutSettings(StrictSection):
    """The evaluation rows: a pinned `file`, else cut from the source, else from arrivals."""

    fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25  # of the source, or of each arrival
    seed: int = 7
    file: Path | None = None  # a CSV of the user's own, relative to params.yaml like source
    # Until the holdout has this many rows, versions are registered but none is champion.
    min_rows: Annotated[int, Field(ge=1)] = 30


class AutomationSettings(StrictSection):
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


class ModelSettings(StrictSection):
    name: Annotated[str, Field(min_length=1)]
    kind: Literal["random_forest", "logistic_regression", "hist_gradient_boosting"]
    # The estimator's own keyword arguments: names checked in load_settings, values by
    # consumer.estimators (it needs scikit-learn).
    params: dict[str, int | float | str | bool | None] = Field(default_factory=dict)
    random_state: int = 42


class TrainingSettings(StrictSection):
    """How much accepted data a retrain reads, so its cost stays bounded as data grows."""

    policy: Literal["all", "window", "sample"] = "all"  # window: newest rows; sample: seeded
    max_rows: Annotated[int, Field(ge=1)] = 200_000  # for window and sample
    seed: int = 0


Metric = Literal["roc_auc", "accuracy", "f1_macro", "log_loss"]


# Where each metric's values live; a numeric floor outside them can never be met.
METRIC_RANGES = {"roc_auc": (0.0, 1.0), "accuracy": (0.0, 1.0), "f1_macro": (0.0, 1.0)}


class PromotionSettings(StrictSection):
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


class Settings(StrictSection):
    dataset: DatasetSettings
    holdout: HoldoutSettings = HoldoutSettings()
    automation: AutomationSettings = AutomationSettings()
    model: ModelSettings
    training: TrainingSettings = TrainingSettings()
    promotion: PromotionSettings = PromotionSettings()
    services: ServiceSettings = ServiceSettings()
    serve: ServeSettings = ServeSettings()
    sensor: SensorSettings = SensorSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    alerts: AlertSettings = AlertSettings()
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
        return Paths(home=self.paths.home, data_dir=self.paths.data)

    @property
    def prefect_api_url(self) -> str:
        """The first Prefect API server's (the sensor's events and the retrain's go there)."""
        return self.services.prefect_api_url()

    @property
    def prefect_ui_url(self) -> str:
        return self.prefect_api_url.removesuffix("/api")

    @property
    def mlflow_url(self) -> str:
        host = self.services.mlflow_host or self.services.client_host
        return f"http://{host}:{self.services.mlflow_port}"

    @property
    def serve_url(self) -> str:
        """`arrivals serve` on this host (a client of the served champion)."""
        return f"http://{self.services.client_host}:{self.services.serve_port}"

    @property
    def ledger_url(self) -> str:
        if self.paths.ledger_url:
            return self.paths.ledger_url
        if self.scaled:
            return self.scale.database_url(self.scale.ledger_database, "psycopg")
        return f"sqlite:///{self.dirs.ledger}"


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
    ARRIVALS_SERVE_PORT, ARRIVALS_PROFILE (embedded | scale).
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
        ("serve_port", "ARRIVALS_SERVE_PORT"),
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
    # Names only (no scikit-learn import here); values: consumer.estimators at `up`/training.
    unknown = unknown_param(settings.model.kind, settings.model.params)
    if unknown is not None:
        raise SettingsError(f"{config_file}: {unknown}")

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
    data = settings.paths.data
    data = None if data is None else (home / data).resolve()  # an absolute one stays as is
    return settings.model_copy(
        update={
            "paths": settings.paths.model_copy(update={"home": home.resolve(), "data": data}),
            "dataset": settings.dataset.model_copy(update={"source": source}),
            "holdout": settings.holdout.model_copy(update={"file": holdout_file}),
        }
    )


def _beside(config_file: Path, path: Path | None) -> Path | None:
    """A data path from params.yaml, absolute: relative ones are relative to that file."""
    if path is None:
        return None
    return (path if path.is_absolute() else config_file.parent / path).resolve()
