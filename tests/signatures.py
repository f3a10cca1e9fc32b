"""Tiny model signatures for the scorer's unit tests, written as one line per feature.

A feature's ONNX input name is the one the package stage gives it (``artifacts.input_names``), so
user-style headers (``"Distance (km)"``) are mapped as in a real package.
"""

from __future__ import annotations

from mlops.core.artifacts import Feature, Signature, Task, input_names


def number(
    name: str, nullable: bool = True, low: float | None = None, high: float | None = None
) -> Feature:
    return {
        "name": name,
        "input_name": input_names([name])[name],
        "type": "number",
        "nullable": nullable,
        "categories": None,
        "min": low,
        "max": high,
    }


def string(name: str, categories: list[str], nullable: bool = True) -> Feature:
    return {
        "name": name,
        "input_name": input_names([name])[name],
        "type": "string",
        "nullable": nullable,
        "categories": categories,
        "min": None,
        "max": None,
    }


def signature(
    *features: Feature,
    classes: tuple[str, ...] = ("a", "b"),
    task: Task = "classification",
    positive_class: str | None = None,
    threshold: float | None = None,
    target: str = "kind",
) -> Signature:
    return {
        "model_name": "tiny",
        "target": target,
        "task": task,
        "features": list(features),
        "classes": list(classes) if task == "classification" else [],
        "positive_class": positive_class,
        "threshold": threshold,
    }


def regression_signature(*features: Feature) -> Signature:
    """A regressor over ``features`` (by default user-style headers: spaces, brackets, a unit
    sign, a leading digit, non-ASCII letters, a dot and a slash)."""
    return signature(*(features or USER_FEATURES), task="regression", target="Delivery Time [min]")


def binary_signature(*features: Feature, threshold: float | None = 0.3) -> Signature:
    """A binary classifier with the positive class ``yes`` and a decision threshold."""
    return signature(
        *(features or USER_FEATURES),
        classes=("no", "yes"),
        positive_class="yes",
        threshold=threshold,
        target="Churned?",
    )


USER_FEATURES = (
    number("Distance (km)", low=0.0, high=40.0),
    number("1st order?", low=0.0, high=1.0),
    string("Weather/Condition", ["clear", "rain", "snow"]),
    number("Temperatur (°C)", low=-20.0, high=40.0),
    string("plan.type [tier]", ["basic", "pro"]),
)

# One feature of each kind: a nullable number with a training range, a number that may not be
# null, a nullable category and one that may not be null; and a valid record of it.
MIXED = signature(
    number("size", low=1.0, high=10.0),
    number("count", nullable=False),
    string("colour", ["blue", "red"]),
    string("shape", ["round"], nullable=False),
)
MIXED_RECORD = {"size": 2.5, "count": 3, "colour": "red", "shape": "round"}

# A valid record of USER_FEATURES (a missing temperature).
USER_RECORD = {
    "Distance (km)": 3.5,
    "1st order?": 1,
    "Weather/Condition": "rain",
    "Temperatur (°C)": None,
    "plan.type [tier]": "pro",
}
