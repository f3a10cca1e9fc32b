"""The REST codec: ``POST /predict`` with ``{"records": [{feature: value, ...}, ...]}``.

A classifier answers a label and the probability of every class per record; a regressor one
number per record (``prediction``); a record the checks warned about carries its ``warnings``.
Input errors are ``{"error", "details", "issue_count"}`` naming each record and field.
"""

from __future__ import annotations

from typing import Any

import orjson

from mlops.core.artifacts import PREDICTION_OUTPUT
from mlops.serve.batches import MAX_EXTRA_BYTES, FieldWarning, Records, Result
from mlops.serve.errors import InputError, Issue, json_type
from mlops.serve.model import Scorer
from mlops.serve.schema import ExtraFieldsPolicy


class RestCodec:
    batch_name = "'records'"

    def __init__(
        self, features: frozenset[str] = frozenset(), extra_fields: ExtraFieldsPolicy = "reject"
    ) -> None:
        # With "ignore", the fields of a record beside ``features`` are taken out before the
        # checks (which would refuse them) and kept apart for the log.
        self.features = features if extra_fields == "ignore" else None

    def decode(self, body: object) -> tuple[Records, None]:
        """The ``{"records": [...]}`` envelope, checked; its records are checked by the data
        plane."""
        if type(body) is dict and len(body) == 1 and type(rows := body.get("records")) is list:
            if self.features is not None:
                return without_extra_fields(rows, self.features), None
            return Records(rows), None  # the commonest body, in a few C-speed steps
        if not isinstance(body, dict):
            raise InputError(f'expected a JSON object {{"records": [...]}}, got {json_type(body)}')
        if len(body) != 1 or "records" not in body:
            unknown_keys = sorted(set(body) - {"records"})
            if unknown_keys:
                raise InputError(f"unknown key(s) {unknown_keys}; the body holds only 'records'")
            raise InputError("'records' is missing; expected a list of records")
        records = body["records"]
        if not isinstance(records, list):
            raise InputError(f"'records' must be a list of objects, got {json_type(records)}")
        if self.features is not None:
            return without_extra_fields(records, self.features), None
        return Records(records), None

    def encode(self, result: Result, context: None) -> bytes:
        prediction = result.prediction
        if result.classes is None:
            answer = regression_predict_body(
                result.request_id, result.model_version, prediction.values, result.warnings
            )
        else:
            answer = predict_body(
                result.request_id,
                result.model_version,
                prediction.labels,
                prediction.probability_maps(result.classes),
                result.warnings,
            )
        return orjson.dumps(answer)

    def error_body(self, error: InputError) -> tuple[int, dict[str, Any]]:
        return error.status, error.payload()


def without_extra_fields(rows: list[Any], features: frozenset[str]) -> Records:
    """The records with only their features (what the checks and the model see), and the other
    fields of each record apart (``Records.extras``, for the log). A record with no extra field
    is passed on as it is; one that is not an object is left to the checks to name. Extra fields
    taking more than ``MAX_EXTRA_BYTES`` of JSON in a record are refused (InputError), naming
    them: the log keeps them whole, and its lines are bounded."""
    extras: list[dict[str, Any] | None] = [None] * len(rows)
    found = False
    issues: list[Issue] = []
    for index, row in enumerate(rows):
        if type(row) is dict and not row.keys() <= features:
            rows[index] = {name: value for name, value in row.items() if name in features}
            extra = {name: value for name, value in row.items() if name not in features}
            extras[index] = extra
            found = True
            size = len(orjson.dumps(extra))
            if size > MAX_EXTRA_BYTES:
                issues.append(_oversized_extra(index, extra, size))
    if issues:
        raise InputError("records carry too much beside their features", issues)
    return Records(rows, extras if found else None)


def _oversized_extra(index: int, extra: dict[str, Any], size: int) -> Issue:
    largest = max(extra, key=lambda name: len(orjson.dumps(extra[name])))
    return {
        "index": index,
        "field": largest,
        "message": (
            f"the fields beside the features take {size} bytes of JSON (the largest is this "
            f"one); at most {MAX_EXTRA_BYTES} are kept"
        ),
    }


def predict_body(
    request_id: str,
    model_version: str,
    labels: list[str],
    probability_maps: list[dict[str, float]],
    warnings: dict[int, list[FieldWarning]],
) -> dict[str, Any]:
    """``/predict`` of a classifier: one prediction per record, in order; ``warnings`` only where
    there are some."""
    predictions: list[dict[str, Any]] = [
        {"label": label, "probabilities": probabilities}
        for label, probabilities in zip(labels, probability_maps, strict=True)
    ]
    return _predict_body(request_id, model_version, predictions, warnings)


def regression_predict_body(
    request_id: str,
    model_version: str,
    values: list[float],
    warnings: dict[int, list[FieldWarning]],
) -> dict[str, Any]:
    """``/predict`` of a regressor: ``{"prediction": <number>}`` per record, in order."""
    predictions: list[dict[str, Any]] = [{PREDICTION_OUTPUT: value} for value in values]
    return _predict_body(request_id, model_version, predictions, warnings)


def _predict_body(
    request_id: str,
    model_version: str,
    predictions: list[dict[str, Any]],
    warnings: dict[int, list[FieldWarning]],
) -> dict[str, Any]:
    for index, record_warnings in warnings.items():
        predictions[index]["warnings"] = record_warnings
    return {"request_id": request_id, "model_version": model_version, "predictions": predictions}


def metadata_body(scorer: Scorer) -> dict[str, Any]:
    """``/metadata``: the model's name and version, its task, lineage, metrics and signature."""
    manifest = scorer.manifest
    return {
        "model_name": manifest["model_name"],
        "model_version": manifest["model_version"],
        "task": scorer.task,
        "lineage": manifest["lineage"],
        "metrics": manifest["metrics"],
        "signature": scorer.signature,
    }
