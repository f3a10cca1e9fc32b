"""Runtime settings of the sidecar, read from the environment and checked once at start-up.

Every setting is an environment variable ``MONITOR_<NAME>``, except the two paths the scorer shares
with the sidecar, which keep the scorer's names: ``PREDICTION_LOG`` and ``MODEL_DIR``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    Field,
    NonNegativeFloat,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mlops.core.errors import StageError
from mlops.core.network import is_loopback

ENV_PREFIX = "MONITOR_"
SHARED_NAMES = {"prediction_log": "PREDICTION_LOG", "model_dir": "MODEL_DIR"}
# A registry version, as GTO tags it (mlops.gitops.versions.VERSION_PATTERN).
REGISTRY_VERSION = r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$"
# Fields whose value must never appear in a message or a log line.
SECRET_FIELDS = {"github_token"}


class MonitorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, validate_by_name=True, extra="ignore", frozen=True
    )

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8090, ge=1, le=65535)
    prediction_log: Path = Field(
        default=Path("logs/predictions.jsonl"), validation_alias="PREDICTION_LOG"
    )
    model_dir: Path = Field(default=Path("models/package"), validation_alias="MODEL_DIR")
    feedback_log: Path = Path("logs/feedback.jsonl")
    state_file: Path = Path("logs/monitor_state.json")
    poll_interval_seconds: float = Field(default=1.0, ge=0.05, le=60)

    window_size: int = Field(default=1000, ge=1, le=1_000_000)
    window_seconds: float | None = Field(default=None, gt=0)
    min_window_size: int = Field(default=200, ge=1)
    # The share of windows of unchanged traffic allowed to raise an alert (all checks together).
    false_alarm_rate: float = Field(default=0.005, gt=0, le=0.5)
    # The floors: the smallest change reported, however significant.
    psi_threshold: float = Field(default=0.02, ge=0)
    # JSON object in the environment, e.g. {"body_mass_g": 0.3}
    feature_psi_thresholds: Annotated[dict[str, NonNegativeFloat], NoDecode] = Field(
        default_factory=dict
    )
    prediction_psi_threshold: float = Field(default=0.02, ge=0)
    missing_rate_threshold: float = Field(default=0.02, ge=0, le=1)
    out_of_range_threshold: float = Field(default=0.01, ge=0, le=1)

    # A point of the page's drift history at most this often (and whenever the verdict changes).
    history_interval_seconds: float = Field(default=60.0, ge=0, le=3600)

    performance_window: int = Field(default=500, ge=1, le=1_000_000)
    min_feedback: int = Field(default=50, ge=1)
    performance_tolerance: float = Field(default=0.05, ge=0, le=1)  # classification, points
    rmse_tolerance: float = Field(default=0.2, ge=0, le=10)  # regression, a share of the RMSE
    prediction_memory: int = Field(default=100_000, ge=1, le=10_000_000)
    # Every accepted label, as received (mlops.monitor.labels); shipped with the predictions.
    label_log: Path = Path("logs/labels.jsonl")
    label_buffer_size: int = Field(default=100_000, ge=1, le=10_000_000)
    label_ttl_seconds: float = Field(default=900.0, ge=1, le=7 * 86_400)

    # Shipping (mlops.monitor.ship): closed segments of both logs to object storage as Parquet.
    ship_url: str | None = None  # s3://bucket/prefix, or a local directory; unset: no shipping
    # Not shipping: closed prediction segments kept once read (SCORER_LOG_SIDECAR=true).
    log_backups: int = Field(default=5, ge=1, le=10_000)
    ship_interval_seconds: float = Field(default=30.0, ge=0.1, le=3600)
    ship_segment_seconds: float = Field(default=900.0, ge=1, le=86_400)
    ship_state_file: Path = Path("logs/ship_state.json")
    ship_shutdown_wait_seconds: float = Field(default=40.0, ge=0, le=3600)
    ship_timeout_seconds: float = Field(default=60.0, gt=0, le=600)

    alert_hold_seconds: float = Field(default=600.0, ge=0)
    retrain_cooldown_seconds: float = Field(default=86_400.0, ge=60)
    retrain_retry_seconds: float = Field(default=300.0, ge=10)
    github_repository: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
    )
    github_token: SecretStr | None = None
    github_api_url: str = "https://api.github.com"
    github_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    # The rollout verdict (mlops.monitor.rollout): its thresholds (a YAML file; unset: the
    # defaults deploy/rollout.yaml documents), the scorer whose request counts give the roles'
    # error rates (unset: not compared), and the registry versions the deployment runs.
    rollout_settings: Path | None = None
    scorer_url: str | None = None
    scorer_scrape_seconds: float = Field(default=15.0, ge=0.05, le=3600)
    champion_registry_version: str | None = Field(default=None, pattern=REGISTRY_VERSION)
    challenger_registry_version: str | None = Field(default=None, pattern=REGISTRY_VERSION)
    # The challenger's packaged model (the scorer's SCORER_CHALLENGER_DIR): its own reference, so
    # that its predictions' drift is measured against what it predicted on its test split.
    challenger_model_dir: Path | None = None

    @field_validator("host")
    @classmethod
    def _host_is_one_word(cls, host: str) -> str:
        if any(character.isspace() for character in host):
            raise ValueError("expected an IP address or a host name")
        return host

    @field_validator(
        "ship_url",
        "rollout_settings",
        "scorer_url",
        "champion_registry_version",
        "challenger_registry_version",
        "challenger_model_dir",
        mode="before",
    )
    @classmethod
    def _empty_means_unset(cls, value: Any) -> Any:
        return None if value == "" else value  # compose passes an unset shell variable as ""

    @field_validator("scorer_url")
    @classmethod
    def _scorer_url(cls, url: str | None) -> str | None:
        parts = urlsplit(url or "")
        if url is not None and not (parts.scheme in ("http", "https") and parts.hostname):
            raise ValueError("expected the scorer's base URL, e.g. http://127.0.0.1:8080")
        return url

    @field_validator("feature_psi_thresholds", mode="before")
    @classmethod
    def _parse_json(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ValueError('expected a JSON object such as {"body_mass_g": 0.3}') from None

    @model_validator(mode="after")
    def _consistent(self) -> MonitorSettings:
        if self.min_window_size > self.window_size:
            raise ValueError(
                f"{env_name('min_window_size')}={self.min_window_size} is larger than "
                f"{env_name('window_size')}={self.window_size}: no alert could ever fire"
            )
        if self.github_token is not None and not self.github_token.get_secret_value().strip():
            raise ValueError(f"{env_name('github_token')} is empty; unset it for a dry run")
        if self.github_token is not None and self.github_repository is None:
            raise ValueError(
                f"{env_name('github_token')} is set but {env_name('github_repository')} is not: "
                "set it to owner/name of the repository to dispatch the retrain event to"
            )
        _check_api_url(self.github_api_url)
        versions = (self.champion_registry_version, self.challenger_registry_version)
        if versions[0] is not None and versions[0] == versions[1]:
            raise ValueError(
                f"{env_name('champion_registry_version')} and "
                f"{env_name('challenger_registry_version')} are both {versions[0]}: the "
                "challenger is another registry version than the champion"
            )
        if self.ship_url is not None:
            _check_ship_url(self.ship_url)
        paths = {"prediction_log": self.prediction_log, "feedback_log": self.feedback_log}
        paths |= {
            "state_file": self.state_file,
            "label_log": self.label_log,
            "ship_state_file": self.ship_state_file,
        }
        if len({path.resolve() for path in paths.values()}) < len(paths):
            raise ValueError(
                f"{', '.join(env_name(name) for name in paths)} must be different files"
            )
        return self


def env_name(field: str) -> str:
    return SHARED_NAMES.get(field, ENV_PREFIX + field.upper())


def load_settings() -> MonitorSettings:
    """The settings from the environment; a bad value stops start-up with one line naming it."""
    known = {env_name(name) for name in MonitorSettings.model_fields}
    unknown = sorted(
        key for key in os.environ if key.upper().startswith(ENV_PREFIX) and key.upper() not in known
    )
    if unknown:
        raise StageError(f"unknown setting(s) {unknown}; known settings are {sorted(known)}")
    try:
        return MonitorSettings()
    except ValidationError as error:
        raise StageError(describe(error)) from None


def describe(error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        location = detail["loc"]
        message = str(detail["msg"]).removeprefix("Value error, ")
        if not location:
            problems.append(message)
            continue
        field = _field_of(str(location[0]))
        shown = "" if field in SECRET_FIELDS else f" (got {detail.get('input')!r})"
        problems.append(f"{env_name(field)}: {message}{shown}")
    return "; ".join(problems)


def _field_of(location: str) -> str:
    by_alias = {alias.lower(): field for field, alias in SHARED_NAMES.items()}
    return by_alias.get(location.lower(), location)


def _check_api_url(url: str) -> None:
    """The token travels to this URL: https, or plain http to this machine only (a test server)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    raise ValueError(
        f"{env_name('github_api_url')}={url!r} must be an https:// URL "
        "(plain http is allowed only to 127.0.0.1/localhost, for tests)"
    )


def _check_ship_url(url: str) -> None:
    """``s3://bucket[/prefix]`` or a local directory (a path or ``file://``); nothing else."""
    parts = urlsplit(url)
    if parts.scheme == "s3" and parts.netloc and not parts.query:
        return
    if parts.scheme in ("", "file") and (parts.path or url):
        return
    raise ValueError(
        f"{env_name('ship_url')}={url!r}: expected s3://bucket/prefix (credentials from AWS_* "
        "in the environment) or a local directory"
    )


def settings_help() -> str:
    """One line per environment variable with its default, for ``--help``."""
    lines = []
    for name, field in MonitorSettings.model_fields.items():
        default: Any = field.get_default(call_default_factory=True)
        shown = "unset" if default is None else default
        lines.append(f"  {env_name(name):<36} default: {shown}")
    return "\n".join(lines)
