"""Tiny model signatures for the scorer's unit tests, written as one line per feature."""

from __future__ import annotations

from mlops.artifacts import Feature, Signature


def number(
    name: str, nullable: bool = True, low: float | None = None, high: float | None = None
) -> Feature:
    return {
        "name": name,
        "type": "number",
        "nullable": nullable,
        "categories": None,
        "min": low,
        "max": high,
    }


def string(name: str, categories: list[str], nullable: bool = True) -> Feature:
    return {
        "name": name,
        "type": "string",
        "nullable": nullable,
        "categories": categories,
        "min": None,
        "max": None,
    }


def signature(*features: Feature, classes: tuple[str, ...] = ("a", "b")) -> Signature:
    return {
        "model_name": "tiny",
        "target": "kind",
        "features": list(features),
        "classes": list(classes),
    }
