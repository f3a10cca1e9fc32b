"""The scorer's runtime settings, read from the environment and checked before anything starts.

Every variable is ``SCORER_<NAME>`` except ``MODEL_DIR`` and ``PREDICTION_LOG``, which the
monitoring sidecar reads too. docs/serving.md lists them all.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops.core.network import is_loopback

ENV_PREFIX = "SCORER_"
MIN_TOKEN_LENGTH = 16
MEBIBYTE = 1 << 20

logger = logging.getLogger("mlops.serve")


class SettingsError(ValueError):
    """A setting is missing or unsafe; the message names the environment variable."""


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_by_name=True, frozen=True
    )

    model_dir: Path = Field(
        default=Path("models/package"), validation_alias=AliasChoices("MODEL_DIR", "model_dir")
    )
    prediction_log: Path = Field(
        default=Path("logs/predictions.jsonl"),
        validation_alias=AliasChoices("PREDICTION_LOG", "prediction_log"),
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    grpc_port: int = Field(default=8081, ge=0, le=65535)  # Open Inference Protocol gRPC; 0: off
    max_records: int = Field(default=1000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=8 * MEBIBYTE, ge=1024, le=256 * MEBIBYTE)
    unknown_category: Literal["score", "reject"] = "score"
    out_of_range: Literal["flag", "reject", "ignore"] = "flag"
    extra_fields: Literal["reject", "ignore"] = "reject"  # /predict fields beside the features
    log_max_bytes: int = Field(default=100 * MEBIBYTE, ge=64 * 1024)
    log_backups: int = Field(default=5, ge=1, le=1000)
    # The monitoring sidecar takes the closed segments (ships them, or keeps MONITOR_LOG_BACKUPS of
    # them once read): none is deleted here, and the open one is closed at shutdown.
    log_sidecar: bool = False
    # Not ready (503) once the log holds more (unshipped segments); set it below the volume's size.
    log_max_total_bytes: int | None = Field(default=None, ge=1024 * 1024)
    # Longest string value accepted; None: derived from the training categories (schema.py).
    max_string_length: int | None = Field(default=None, ge=1, le=1_000_000)
    api_token: SecretStr | None = None
    ort_threads: int = Field(default=1, ge=1, le=64)
    workers: int = Field(default=1, ge=1, le=64)
    shutdown_timeout: int = Field(default=30, ge=1, le=600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = False
    # A second packaged model beside the champion (docs/serving.md, "Shadow and canary"): it
    # scores a copy of every request off the response path (shadow), or answers a share of them
    # (canary). Unset or empty: the champion alone.
    challenger_dir: Path | None = None
    challenger_mode: Literal["shadow", "canary"] = "shadow"
    canary_percent: float = Field(default=10.0, ge=0, le=100, allow_inf_nan=False)
    shadow_queue: int = Field(default=64, ge=1, le=100_000)  # copies waiting; beyond: dropped

    @property
    def shared_metrics_dir(self) -> Path:
        """Where worker processes publish their metric counts: beside the prediction log, the one
        directory the scorer may write to (the container's root file system is read-only)."""
        log = self.prediction_log
        return log.with_name(f".{log.name}.workers")

    @field_validator("host")
    @classmethod
    def _host_is_an_address_or_name(cls, host: str) -> str:
        if not host or any(character.isspace() for character in host):
            raise ValueError("expected an IP address or a host name")
        return host

    @model_validator(mode="after")
    def _grpc_port_is_its_own(self) -> ServeSettings:
        if self.grpc_port == self.port:
            raise ValueError(
                f"SCORER_GRPC_PORT={self.grpc_port} is SCORER_PORT too; give gRPC a port of its "
                "own, or 0 to turn it off"
            )
        return self

    @field_validator("challenger_dir", mode="before")
    @classmethod
    def _empty_challenger_means_unset(cls, directory: object) -> object:
        return None if directory == "" else directory

    @model_validator(mode="after")
    def _challenger_is_another_package(self) -> ServeSettings:
        challenger = self.challenger_dir
        if challenger is not None and challenger.resolve() == self.model_dir.resolve():
            raise ValueError(
                f"SCORER_CHALLENGER_DIR={challenger} is MODEL_DIR: a challenger is another "
                "packaged model (unset it to serve the champion alone)"
            )
        return self

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_means_unset(cls, token: object) -> object:
        return None if token == "" else token

    @field_validator("api_token")
    @classmethod
    def _token_is_strong(cls, token: SecretStr | None) -> SecretStr | None:
        if token is None:
            return None
        value = token.get_secret_value()
        if len(value) < MIN_TOKEN_LENGTH:
            raise ValueError(f"a bearer token needs at least {MIN_TOKEN_LENGTH} characters")
        if not value.isascii() or not value.isprintable() or " " in value:
            raise ValueError("a bearer token must be printable ASCII without spaces")
        return token

    @field_validator("prediction_log")
    @classmethod
    def _log_is_a_file(cls, path: Path) -> Path:
        if path.is_dir():
            raise ValueError(f"{path} is a directory; expected the path of a JSON Lines file")
        return path


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    aliases = {"model_dir": "MODEL_DIR", "prediction_log": "PREDICTION_LOG"}
    if field in aliases.values():
        return field
    return aliases.get(field, ENV_PREFIX + field.upper())


def load_settings() -> ServeSettings:
    """Read the settings from the environment, naming every offending variable on failure."""
    try:
        return ServeSettings()
    except ValidationError as error:
        problems = []
        for detail in error.errors():
            if not detail["loc"]:  # a rule between settings: its message names them
                problems.append(detail["msg"].removeprefix("Value error, "))
                continue
            field = str(detail["loc"][0])
            shown = env_name(field)
            value = os.environ.get(shown) if field != "api_token" else "<hidden>"
            problems.append(f"{shown}={value!r}: {detail['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


def describe(settings: ServeSettings) -> str:
    """One log line with every setting (the token only as set or not)."""
    values = settings.model_dump()
    values["api_token"] = "set" if settings.api_token else "not set"
    return ", ".join(f"{env_name(name)}={value}" for name, value in values.items())


def warn_if_exposed(settings: ServeSettings) -> None:
    if settings.api_token is None and not is_loopback(settings.host):
        logger.warning(
            "listening on %s without SCORER_API_TOKEN: anyone who can reach it can score",
            settings.host,
        )
