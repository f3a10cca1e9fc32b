"""What a record must be, from the packaged signature: one ``FieldSpec`` per feature, the
policies for unseen categories and out-of-range numbers, the longest string accepted, and what
the checks precompute once (``InputSchema.plain_checks``, the getters) so that no request pays
for it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any, Literal, NamedTuple

import numpy as np

from mlops.core.artifacts import MISSING_CATEGORY, Signature

MAX_LISTED_CATEGORIES = 20
# The longest string value accepted by default: this many characters, or more where training saw
# longer categories (CATEGORY_LENGTH_FACTOR times the longest). A value is logged as sent, so this
# is what bounds a prediction log line.
MIN_STRING_LENGTH = 256
CATEGORY_LENGTH_FACTOR = 4
NUMBER_TYPES = frozenset({int, float})
STRING_TYPE = frozenset({str})
FLOAT32_MAX = float(np.finfo(np.float32).max)
# The strings pandas reads as missing by default, so that a file (batch scoring) or a tensor of
# bytes (which has no null) scores as the pipeline would have read it.
MISSING_MARKERS = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)  # fmt: skip

UnknownCategoryPolicy = Literal["score", "reject"]
OutOfRangePolicy = Literal["flag", "reject", "ignore"]
ExtraFieldsPolicy = Literal["reject", "ignore"]  # fields of a /predict record beside the features


@dataclass(frozen=True)
class FieldSpec:
    name: str  # the column's name: what clients send
    input_name: str  # the ONNX graph's input for it
    is_number: bool
    nullable: bool
    categories: frozenset[str] | None
    minimum: float | None
    maximum: float | None

    def expected(self) -> str:
        if self.is_number:
            return "a number" + (" or null" if self.nullable else "")
        if self.categories:
            listed = sorted(self.categories)
            shown = ", ".join(repr(value) for value in listed[:MAX_LISTED_CATEGORIES])
            more = ", ..." if len(listed) > MAX_LISTED_CATEGORIES else ""
            return f"one of [{shown}{more}]" + (" or null" if self.nullable else "")
        return "a string" + (" or null" if self.nullable else "")


@dataclass(frozen=True)
class InputSchema:
    fields: tuple[FieldSpec, ...]
    names: frozenset[str]
    unknown_category: UnknownCategoryPolicy = "score"
    out_of_range: OutOfRangePolicy = "flag"
    max_string_length: int = MIN_STRING_LENGTH

    @cached_property
    def order(self) -> list[str]:
        return [spec.name for spec in self.fields]

    @cached_property
    def by_name(self) -> dict[str, FieldSpec]:
        return {spec.name: spec for spec in self.fields}

    @cached_property
    def short_categories(self) -> frozenset[str]:
        """The text features whose every known category is within ``max_string_length`` (all
        of them, unless SCORER_MAX_STRING_LENGTH was set below a category's length)."""
        return frozenset(
            spec.name
            for spec in self.fields
            if spec.categories is not None
            and max(map(len, spec.categories), default=0) <= self.max_string_length
        )

    @cached_property
    def getters(self) -> list[tuple[str, itemgetter[Any]]]:
        """``(name, itemgetter(name))`` per feature, in order: made once, used per request."""
        return [(spec.name, itemgetter(spec.name)) for spec in self.fields]

    @cached_property
    def plain_checks(self) -> tuple[PlainCheck, ...]:
        """Per feature, what a value must be to need neither a conversion nor a warning: a number
        within the range that is not flagged (float32's, or the training range), or a string the
        model knows; ``None`` where missing values are allowed. Made once, used per request."""
        checks = []
        for spec in self.fields:
            low, high = -FLOAT32_MAX, FLOAT32_MAX
            if self.out_of_range != "ignore":
                low = max(low, -math.inf if spec.minimum is None else spec.minimum)
                high = min(high, math.inf if spec.maximum is None else spec.maximum)
            missing = (math.nan if spec.is_number else MISSING_CATEGORY) if spec.nullable else None
            checks.append(
                PlainCheck(spec.name, spec.is_number, low, high, spec.categories, missing)
            )
        return tuple(checks)


class PlainCheck(NamedTuple):
    name: str
    is_number: bool
    low: float
    high: float
    categories: frozenset[str] | None
    missing: float | str | None  # what a null becomes; None if the feature may not be null


def default_string_length(signature: Signature) -> int:
    """``MIN_STRING_LENGTH``, or ``CATEGORY_LENGTH_FACTOR`` times the longest category seen in
    training where that is more: room for unseen categories like the known ones, not for a
    megabyte of text (which would be scored as an unknown category and logged whole)."""
    categories = [feature["categories"] or [] for feature in signature["features"]]
    longest = max((len(category) for names in categories for category in names), default=0)
    return max(MIN_STRING_LENGTH, CATEGORY_LENGTH_FACTOR * longest)


def input_schema(
    signature: Signature,
    unknown_category: UnknownCategoryPolicy = "score",
    out_of_range: OutOfRangePolicy = "flag",
    max_string_length: int | None = None,
) -> InputSchema:
    fields = tuple(
        FieldSpec(
            name=feature["name"],
            input_name=feature["input_name"],
            is_number=feature["type"] == "number",
            nullable=bool(feature["nullable"]),
            categories=None if feature["categories"] is None else frozenset(feature["categories"]),
            minimum=feature["min"],
            maximum=feature["max"],
        )
        for feature in signature["features"]
    )
    names = frozenset(spec.name for spec in fields)
    longest = default_string_length(signature) if max_string_length is None else max_string_length
    return InputSchema(fields, names, unknown_category, out_of_range, longest)
