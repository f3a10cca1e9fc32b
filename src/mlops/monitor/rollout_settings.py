"""The thresholds of the rollout verdict: a YAML file (``MONITOR_ROLLOUT_SETTINGS``).

The repository's ``deploy/rollout.yaml`` holds the defaults below, each key documented
(docs/monitoring.md); the image carries it at ``/app/deploy/rollout.yaml``. A file must name every
key (a forgotten one is a mistake, not a wish for the default) and no other: a problem stops the
sidecar's start-up with one line naming the file and the key. Without the setting the sidecar
compares with these defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops.core.errors import StageError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class WindowRules(_Section):
    records: int = Field(default=20_000, ge=2, le=1_000_000)  # the last lines, both roles
    seconds: float | None = Field(default=3600.0, gt=0)  # and of those the last ones (null: all)


class ShadowRules(_Section):
    min_agreement: float = Field(default=0.8, ge=0, le=1)  # classification
    max_prediction_difference: float = Field(default=0.25, ge=0)  # regression, in target scales


class ErrorRateRules(_Section):
    max_increase: float = Field(default=0.01, ge=0, le=1)


class LatencyRules(_Section):
    max_p95_ratio: float = Field(default=1.5, ge=1)
    min_p95_increase_seconds: float = Field(default=0.005, ge=0)


class PredictionDriftRules(_Section):
    max_psi_increase: float = Field(default=0.2, ge=0)


class RolePerformanceRules(_Section):
    min_labelled: int = Field(default=200, ge=1)
    required: bool = False
    max_drop: float = Field(default=0.02, ge=0, le=1)  # classification: accuracy, macro F1
    max_error_increase: float = Field(default=0.1, ge=0)  # regression: MAE, RMSE, a share


class RolloutRules(_Section):
    """When the challenger is promoted, held or rolled back (docs/monitoring.md)."""

    window: WindowRules = WindowRules()
    min_records: int = Field(default=500, ge=1)
    hold_seconds: float = Field(default=300.0, ge=0)
    shadow: ShadowRules = ShadowRules()
    error_rate: ErrorRateRules = ErrorRateRules()
    latency: LatencyRules = LatencyRules()
    prediction_drift: PredictionDriftRules = PredictionDriftRules()
    performance: RolePerformanceRules = RolePerformanceRules()


def load_rollout_rules(
    path: Path | None, setting: str = "MONITOR_ROLLOUT_SETTINGS"
) -> RolloutRules:
    """The rules in ``path`` (every key, no other), or the defaults when no file is set."""
    if path is None:
        return RolloutRules()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise StageError(f"{setting}={path}: cannot be read ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise StageError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(raw, Mapping):
        raise StageError(f"{path}: expected a mapping of the rollout thresholds, got {raw!r}")
    missing = missing_keys(RolloutRules, raw)
    if missing:
        raise StageError(
            f"{path}: missing key(s) {', '.join(missing)} (every key is required; "
            "deploy/rollout.yaml lists them with their defaults)"
        )
    try:
        return RolloutRules.model_validate(raw)
    except ValidationError as error:
        raise StageError(f"{path}: {describe(error)}") from None


def missing_keys(model: type[BaseModel], raw: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of ``model`` that ``raw`` lacks, sections included."""
    missing = []
    for name, field in model.model_fields.items():
        if name not in raw:
            missing.append(prefix + name)
            continue
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            value = raw[name]
            if isinstance(value, Mapping):
                missing += missing_keys(section, value, f"{prefix}{name}.")
    return missing


def describe(error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        key = ".".join(str(part) for part in detail["loc"])
        message = str(detail["msg"])
        if detail["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{key}: {message} (got {detail.get('input')!r})")
    return "; ".join(problems)
