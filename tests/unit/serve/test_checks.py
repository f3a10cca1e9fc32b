"""The checks of a request's values (``mlops.serve.checks``): what every protocol's records or
tensors go through, and the one-record fast path held to the general path."""

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops.core.artifacts import MISSING_CATEGORY, Signature
from mlops.serve import checks
from mlops.serve.batches import Columns, Records
from mlops.serve.checks import (
    VECTOR_MIN_VALUES,
    check,
    plain_record,
    records_to_columns,
    validate_columns,
)
from mlops.serve.errors import InputError
from mlops.serve.schema import InputSchema, input_schema
from signatures import (
    MIXED,
    MIXED_RECORD,
    USER_FEATURES,
    USER_RECORD,
    number,
    regression_signature,
    signature,
    string,
)

SIGNATURE = MIXED
VALID = MIXED_RECORD
LONG = VECTOR_MIN_VALUES + 5  # a batch whose number columns are checked as arrays


def schema(unknown: Any = "score", out_of_range: Any = "flag") -> InputSchema:
    return input_schema(SIGNATURE, unknown, out_of_range)


def validate(records: Any, checked: InputSchema | None = None) -> Any:
    """The general path (no one-record fast path): records to columns, then the column checks."""
    checked = checked or schema()
    return validate_columns(records_to_columns(records, checked), len(records), checked)


def issues_of(records: Any, checked: InputSchema | None = None) -> list[tuple[Any, Any, str]]:
    with pytest.raises(InputError) as caught:
        validate(records, checked)
    assert caught.value.status == 422
    return [(issue["index"], issue["field"], issue["message"]) for issue in caught.value.issues]


def test_valid_records_become_typed_columns_in_signature_order() -> None:
    batch = validate([VALID, {**VALID, "size": 7, "colour": "blue"}])
    assert list(batch.feed) == ["size", "count", "colour", "shape"]
    assert batch.feed["size"].dtype == np.float32 and batch.feed["size"].shape == (2, 1)
    assert batch.feed["size"][:, 0].tolist() == [2.5, 7.0]
    assert batch.feed["colour"].dtype == object and batch.feed["colour"][:, 0].tolist() == [
        "red",
        "blue",
    ]
    assert batch.size == 2 and batch.warnings == {}


def test_null_in_a_nullable_field_reaches_the_model_as_missing() -> None:
    batch = validate([{**VALID, "size": None, "colour": None}])
    assert math.isnan(batch.feed["size"][0, 0])
    assert batch.feed["colour"][0, 0] == MISSING_CATEGORY


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("size", "2.5", "expected a number or null, got a string"),
        ("size", True, "expected a number or null, got a boolean"),
        ("size", [1], "expected a number or null, got an array"),
        ("size", {"v": 1}, "expected a number or null, got an object"),
        ("size", float("nan"), "is NaN; send null for a missing value"),
        ("size", float("inf"), "is infinite; expected a finite number"),
        ("size", 1e39, "1e+39 is outside the float32 range"),
        ("size", 10**400, "outside the float32 range"),
        ("count", None, "is null, but the model was trained without missing values here"),
        ("colour", 3, "expected one of ['blue', 'red'] or null, got a number"),
        ("shape", None, "is null, but the model was trained without missing values here"),
    ],
)
@pytest.mark.parametrize("size", [2, LONG])
def test_each_bad_value_is_named_by_record_and_field(
    field: str, value: Any, message: str, size: int
) -> None:
    records = [VALID] * size
    records[size - 1] = {**VALID, field: value}
    issues = issues_of(records)
    assert len(issues) == 1
    index, named_field, text = issues[0]
    assert (index, named_field) == (size - 1, field)
    assert message in text


def test_a_long_number_column_reaches_the_model_as_float32_of_its_values() -> None:
    sizes = [1.0 + index / 7 for index in range(LONG)]
    batch = validate([{**VALID, "size": size, "count": index} for index, size in enumerate(sizes)])
    assert batch.feed["size"].dtype == np.float32 and batch.feed["size"].shape == (LONG, 1)
    assert batch.feed["size"][:, 0].tolist() == np.array(sizes, dtype=np.float32).tolist()
    assert batch.feed["count"][:, 0].tolist() == list(range(LONG))
    assert batch.warnings == {}


def test_missing_and_extra_fields_are_reported_with_the_value_problems_of_the_same_request() -> (
    None
):
    record = {"size": "big", "count": 1, "colour": "red", "weight": 3}
    issues = issues_of([VALID, record, "not a record"])
    assert (1, "shape", "missing; expected one of ['round']") in issues
    assert (1, "weight", checks.NOT_A_FEATURE) in issues
    assert (1, "size", "expected a number or null, got a string") in issues
    assert (2, None, "expected an object, got a string") in issues
    assert len(issues) == 4


def test_unknown_category_is_scored_with_a_warning_or_rejected_per_policy() -> None:
    batch = validate([{**VALID, "colour": "green"}])
    assert batch.feed["colour"][0, 0] == "green"
    assert batch.warnings == {
        0: [
            {
                "field": "colour",
                "message": "'green' was not seen in training; scored as an unknown category",
            }
        ]
    }
    assert batch.unknown_categories == {"colour": 1}
    issues = issues_of([{**VALID, "colour": "green"}], schema(unknown="reject"))
    assert issues == [
        (0, "colour", "'green' is not a known category; expected one of ['blue', 'red'] or null")
    ]


@pytest.mark.parametrize("others", [[{**VALID, "size": None}], [VALID] * LONG])
def test_out_of_range_numbers_are_flagged_rejected_or_ignored_per_policy(
    others: list[dict[str, Any]],
) -> None:
    records = [{**VALID, "size": 10.5}, {**VALID, "size": 10.0}, *others]
    flagged = validate(records)
    assert flagged.warnings == {
        0: [{"field": "size", "message": "10.5 is outside the training range [1.0, 10.0]"}]
    }
    assert flagged.out_of_range == {"size": 1}
    assert issues_of(records, schema(out_of_range="reject")) == [
        (0, "size", "10.5 is outside the training range [1.0, 10.0] (SCORER_OUT_OF_RANGE=reject)")
    ]
    assert validate(records, schema(out_of_range="ignore")).warnings == {}


def test_range_is_checked_at_full_precision_not_float32() -> None:
    signature: Signature = {
        **SIGNATURE,
        "features": [{**SIGNATURE["features"][0], "min": 32.1, "max": 59.6}],
    }
    checked = input_schema(signature)
    columns = records_to_columns([{"size": 32.1}, {"size": 59.6}], checked)
    assert validate_columns(columns, 2, checked).warnings == {}


def test_error_payload_caps_details_and_counts_all() -> None:
    with pytest.raises(InputError) as caught:
        validate([{**VALID, "size": "x"}] * 150)
    payload = caught.value.payload()
    assert payload["issue_count"] == 150 and len(payload["details"]) == 100
    assert payload["error"] == "150 invalid value(s) in 150 record(s)"


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 10.0, 10.5, 3.4e38, 3.5e38, -1e39]),
    st.sampled_from(["blue", "red", "round", "green", "", MISSING_CATEGORY]),
    st.lists(st.integers(), max_size=1),
)
RECORDS = st.one_of(
    st.dictionaries(st.sampled_from(list(VALID)), VALUES, max_size=2).map(
        lambda changed: {**VALID, **changed}  # a valid record with one or two values changed
    ),
    st.dictionaries(st.sampled_from([*VALID, "extra"]), VALUES),
    st.none(),
)


def same_values(left: list[Any], right: list[Any]) -> bool:
    return all(
        (isinstance(a, float) and math.isnan(a) and isinstance(b, float) and math.isnan(b))
        or (a == b and type(a) is type(b))
        for a, b in zip(left, right, strict=True)
    )


@settings(max_examples=400, deadline=None)
@given(
    RECORDS,
    st.sampled_from(["score", "reject"]),
    st.sampled_from(["flag", "reject", "ignore"]),
)
def test_the_one_record_fast_path_agrees_with_the_general_path(
    record: Any, unknown: Any, out_of_range: Any
) -> None:
    """Whatever the fast path accepts, the general path accepts the same way, without a warning;
    everything else is left to the general path (which then names the problems)."""
    checked = schema(unknown, out_of_range)
    batch = plain_record(record, checked)
    if batch is None:
        return
    general = validate([record], checked)
    assert check(Records([record]), checked).columns == batch.columns  # the check takes it
    assert batch.size == 1 and batch.columns.keys() == general.columns.keys()
    for name, values in batch.columns.items():
        assert same_values(list(values), list(general.columns[name])), name
    assert general.warnings == {} and general.out_of_range == {}
    assert general.unknown_categories == {}


@pytest.mark.parametrize(
    "record",
    [VALID, {**VALID, "size": None, "colour": None}, {**VALID, "count": 10**6, "size": 1}],
)
def test_plain_records_take_the_fast_path_and_the_check_returns_it(
    record: dict[str, Any],
) -> None:
    checked = schema()
    assert plain_record(record, checked) is not None
    batch = check(Records([record]), checked)
    assert batch.size == 1 and batch.warnings == {}
    flagged = check(Records([{**record, "size": 11.0}]), checked)
    assert flagged.out_of_range == {"size": 1}  # not plain: the general path flags it


@pytest.mark.parametrize(
    ("changed", "out_of_range"),
    [
        ({"size": 0.5}, "flag"),  # below the training range: flagged
        ({"size": 10.5}, "reject"),  # above it: rejected
        ({"count": 3.5e38}, "ignore"),  # beyond float32 even when the range is ignored
        ({"count": True}, "flag"),
        ({"count": math.nan}, "flag"),
        ({"count": None}, "flag"),  # not nullable
        ({"colour": "green"}, "flag"),  # unseen category: scored with a warning
        ({"colour": MISSING_CATEGORY}, "flag"),
        ({"shape": None}, "flag"),
        ({"extra": 1}, "flag"),
    ],
)
def test_records_needing_a_warning_or_an_error_are_left_to_the_general_path(
    changed: dict[str, Any], out_of_range: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = {**VALID, **changed}
    assert plain_record(record, schema("score", out_of_range)) is None
    missing = {name: value for name, value in VALID.items() if name != "shape"}
    assert plain_record(missing, schema()) is None
    tried: list[object] = []
    monkeypatch.setattr(checks, "plain_record", lambda *given: tried.append(given))
    check(Records([VALID, VALID]), schema())
    assert tried == []  # two records: only the general path


# --- the user's column names -------------------------------------------------------------------

USER_SCHEMA = input_schema(regression_signature())


def test_records_use_the_users_names_and_the_feed_the_onnx_input_names() -> None:
    batch = validate([USER_RECORD, {**USER_RECORD, "Distance (km)": 7}], USER_SCHEMA)

    assert list(batch.feed) == [feature["input_name"] for feature in USER_FEATURES]
    assert list(batch.feed)[:2] == ["Distance__km_", "_1st_order_"]
    assert batch.feed["Distance__km_"][:, 0].tolist() == [3.5, 7.0]
    assert math.isnan(batch.feed["Temperatur___C_"][0, 0])
    assert batch.feed["plan_type__tier_"][:, 0].tolist() == ["pro", "pro"]
    plain = plain_record(USER_RECORD, USER_SCHEMA)
    assert plain is not None and list(plain.feed) == list(batch.feed)


def test_the_onnx_input_names_are_not_what_clients_send() -> None:
    renamed = {feature["input_name"]: USER_RECORD[feature["name"]] for feature in USER_FEATURES}
    with pytest.raises(InputError) as caught:
        validate([renamed], USER_SCHEMA)
    fields = {issue["field"] for issue in caught.value.issues}
    assert {"Distance (km)", "Distance__km_"} <= fields  # missing, and not a feature


USER_VALUES = st.one_of(
    VALUES, st.sampled_from(["rain", "pro", "clear", "snow", "basic", 0, 1, 40.0, 41.0])
)
USER_RECORDS = st.one_of(
    st.dictionaries(st.sampled_from(list(USER_RECORD)), USER_VALUES, max_size=2).map(
        lambda changed: {**USER_RECORD, **changed}
    ),
    st.dictionaries(st.sampled_from([*USER_RECORD, "Distance__km_"]), USER_VALUES),
)


@settings(max_examples=300, deadline=None)
@given(USER_RECORDS, st.sampled_from(["score", "reject"]))
def test_the_fast_path_feeds_the_model_as_the_general_path_does_under_user_names(
    record: Any, unknown: Any
) -> None:
    checked = input_schema(regression_signature(), unknown, "flag")
    plain = plain_record(record, checked)
    if plain is None:
        return
    general = validate([record], checked)
    assert general.warnings == {} and general.out_of_range == {}
    fast, slow = plain.feed, general.feed
    assert list(fast) == list(slow) == [f["input_name"] for f in USER_FEATURES]
    for name in fast:
        assert fast[name].dtype == slow[name].dtype and fast[name].shape == (1, 1)
        assert same_values(fast[name][:, 0].tolist(), slow[name][:, 0].tolist()), name


def test_a_string_longer_than_the_limit_is_refused_naming_its_field_on_every_path() -> None:
    free = signature(number("size"), string("note", None), string("colour", ["blue", "red"]))
    limited = input_schema(free, max_string_length=8)
    record = {"size": 1.0, "note": "n" * 9, "colour": "red"}
    assert plain_record(record, limited) is None  # not the fast path: the general one refuses it
    with pytest.raises(InputError) as refused:
        check(Records([record]), limited)
    message = "a string of 9 characters; at most 8 are accepted (SCORER_MAX_STRING_LENGTH)"
    assert [(i["index"], i["field"], i["message"]) for i in refused.value.issues] == [
        (0, "note", message)
    ]
    # an unknown category is scored with a warning, unless it is too long to be logged
    unknown = [{**record, "note": "short", "colour": "c" * 9}, {**record, "note": "ok"}]
    assert issues_of(unknown, limited) == [(0, "colour", message)]
    assert check(Records([{**record, "note": "n" * 8}]), limited).size == 1
    # V2 tensors (columns) go through the same check
    columns = Columns({"size": [1.0], "note": ["n" * 9], "colour": ["red"]}, 1)
    with pytest.raises(InputError, match="1 invalid value"):
        check(columns, limited)
