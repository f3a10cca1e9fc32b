import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops.core.artifacts import MISSING_CATEGORY, Signature
from mlops.serve.validation import (
    VECTOR_MIN_VALUES,
    InputError,
    InputSchema,
    check_inference_request,
    example_record,
    input_schema,
    plain_record,
    records_to_columns,
    tensors_to_columns,
    validate_columns,
    validate_records,
    warm_up_records,
)
from signatures import USER_FEATURES, number, regression_signature, signature, string

SIGNATURE = signature(
    number("size", low=1.0, high=10.0),
    number("count", nullable=False),
    string("colour", ["blue", "red"]),
    string("shape", ["round"], nullable=False),
)
VALID = {"size": 2.5, "count": 3, "colour": "red", "shape": "round"}
LONG = VECTOR_MIN_VALUES + 5  # a batch whose number columns are checked as arrays


def schema(unknown: Any = "score", out_of_range: Any = "flag") -> InputSchema:
    return input_schema(SIGNATURE, unknown, out_of_range)


def validate(records: Any, checked: InputSchema | None = None, max_records: int = 100) -> Any:
    checked = checked or schema()
    columns, rows = records_to_columns({"records": records}, checked, max_records)
    return validate_columns(columns, len(rows), checked)


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
    assert (1, "weight", "not a feature of the model") in issues
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
    columns, _ = records_to_columns({"records": [{"size": 32.1}, {"size": 59.6}]}, checked, 10)
    assert validate_columns(columns, 2, checked).warnings == {}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ([VALID], 422, "expected a JSON object"),
        ({"rows": [VALID]}, 422, "unknown key(s) ['rows']"),
        ({}, 422, "'records' is missing"),
        ({"records": {"a": 1}}, 422, "'records' must be a list of objects, got an object"),
        ({"records": []}, 422, "'records' is empty"),
        ({"records": [VALID] * 4}, 413, "holds 4 records; the limit is 3"),
    ],
)
def test_the_body_envelope_is_checked_before_any_record(
    body: Any, status: int, message: str
) -> None:
    with pytest.raises(InputError) as caught:
        records_to_columns(body, schema(), max_records=3)
    assert caught.value.status == status
    assert message in caught.value.message


def test_error_payload_caps_details_and_counts_all() -> None:
    with pytest.raises(InputError) as caught:
        validate([{**VALID, "size": "x"}] * 150, max_records=200)
    payload = caught.value.payload()
    assert payload["issue_count"] == 150 and len(payload["details"]) == 100
    assert payload["error"] == "150 invalid value(s) in 150 record(s)"


def tensor(name: str, data: Any, datatype: str = "FP32", shape: Any = None) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape if shape is not None else [len(data), 1],
        "data": data,
    }


def v2_inputs(**overrides: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = {
        "size": tensor("size", [2.5, 7]),
        "count": tensor("count", [[1], [2]], "INT64"),
        "colour": tensor("colour", ["red", "blue"], "BYTES", [2]),
        "shape": tensor("shape", ["round", "round"], "BYTES"),
    }
    inputs.update(overrides)
    return list(inputs.values())


def test_v2_tensors_flat_or_nested_become_the_same_columns() -> None:
    columns, size = tensors_to_columns(v2_inputs(), schema(), 10)
    assert size == 2
    assert columns == {
        "size": [2.5, 7],
        "count": [1, 2],
        "colour": ["red", "blue"],
        "shape": ["round", "round"],
    }
    assert validate_columns(columns, size, schema()).feed["count"][:, 0].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "'inputs' must be a non-empty list"),
        (
            v2_inputs(size=tensor("size", [1.0, 2.0], "BYTES")),
            "input 'size' is numeric: datatype must be FP32",
        ),
        (
            v2_inputs(colour=tensor("colour", ["red", "red"], "FP32")),
            "input 'colour' is categorical: datatype must be BYTES",
        ),
        (
            v2_inputs(size=tensor("size", [1.0, 2.0], shape=[3, 1])),
            "has shape [3, 1] but 2 element(s)",
        ),
        (v2_inputs(size=tensor("size", [1.0, 2.0], shape=[1, 2])), "must have shape [n, 1] or [n]"),
        (v2_inputs(size=tensor("size", [1.0], shape=[1, 1])), "different numbers of elements"),
        (
            v2_inputs(size=tensor("size", [[1.0, 2.0]], shape=[2, 1])),
            "flat or a list of one-element rows",
        ),
        (v2_inputs()[:3], "missing input(s) ['shape']"),
        ([*v2_inputs(), tensor("size", [1.0, 2.0])], "input 'size' is given twice"),
        ([*v2_inputs(), tensor("weight", [1.0, 2.0])], "input 'weight' is not a feature"),
        ([{"name": "size", "datatype": "FP32"}], "input 'size' is missing ['shape', 'data']"),
        (["size"], "inputs[0] must be an object"),
    ],
)
def test_v2_tensor_problems_are_named(inputs: Any, message: str) -> None:
    with pytest.raises(InputError) as caught:
        tensors_to_columns(inputs, schema(), 10)
    assert message in caught.value.message


def test_v2_element_problems_name_the_input_and_element() -> None:
    columns, size = tensors_to_columns(v2_inputs(size=tensor("size", [2.5, "x"])), schema(), 10)
    with pytest.raises(InputError) as caught:
        validate_columns(columns, size, schema())
    assert caught.value.one_line() == (
        "1 invalid value(s) in 1 record(s): [1] size: expected a number or null, got a string"
    )


def test_v2_batch_over_the_limit_is_413() -> None:
    with pytest.raises(InputError) as caught:
        tensors_to_columns(v2_inputs(), schema(), 1)
    assert caught.value.status == 413


def test_example_and_warm_up_records_validate() -> None:
    assert example_record(schema()) == {
        "size": 5.5,
        "count": 0.0,
        "colour": "blue",
        "shape": "round",
    }
    records = warm_up_records(schema())
    batch = validate(records)
    assert batch.size == 3 and batch.unknown_categories == {"colour": 1, "shape": 1}
    assert len(warm_up_records(schema(unknown="reject"))) == 2


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
    body = {"records": [record]}
    plain = plain_record(body, checked)
    if plain is None:
        return
    general = validate([record], checked)
    batch, records = plain
    assert records == [record]
    assert batch.size == 1 and batch.columns.keys() == general.columns.keys()
    for name, values in batch.columns.items():
        assert same_values(list(values), list(general.columns[name])), name
    assert general.warnings == {} and general.out_of_range == {}
    assert general.unknown_categories == {}


@pytest.mark.parametrize(
    "record",
    [VALID, {**VALID, "size": None, "colour": None}, {**VALID, "count": 10**6, "size": 1}],
)
def test_plain_records_take_the_fast_path_and_validate_records_returns_it(
    record: dict[str, Any],
) -> None:
    checked = schema()
    assert plain_record({"records": [record]}, checked) is not None
    batch, records = validate_records({"records": [record]}, checked, 10)
    assert records == [record] and batch.size == 1
    flagged, _ = validate_records({"records": [{**record, "size": 11.0}]}, checked, 10)
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
    changed: dict[str, Any], out_of_range: Any
) -> None:
    record = {**VALID, **changed}
    assert plain_record({"records": [record]}, schema("score", out_of_range)) is None
    missing = {name: value for name, value in VALID.items() if name != "shape"}
    assert plain_record({"records": [missing]}, schema()) is None
    assert plain_record({"records": [VALID, VALID]}, schema()) is None


# --- the user's column names -------------------------------------------------------------------

USER_SCHEMA = input_schema(regression_signature())
USER_RECORD = {
    "Distance (km)": 3.5,
    "1st order?": 1,
    "Weather/Condition": "rain",
    "Temperatur (°C)": None,
    "plan.type [tier]": "pro",
}


def test_records_use_the_users_names_and_the_feed_the_onnx_input_names() -> None:
    batch = validate([USER_RECORD, {**USER_RECORD, "Distance (km)": 7}], USER_SCHEMA)

    assert list(batch.feed) == [feature["input_name"] for feature in USER_FEATURES]
    assert list(batch.feed)[:2] == ["Distance__km_", "_1st_order_"]
    assert batch.feed["Distance__km_"][:, 0].tolist() == [3.5, 7.0]
    assert math.isnan(batch.feed["Temperatur___C_"][0, 0])
    assert batch.feed["plan_type__tier_"][:, 0].tolist() == ["pro", "pro"]
    plain = plain_record({"records": [USER_RECORD]}, USER_SCHEMA)
    assert plain is not None and list(plain[0].feed) == list(batch.feed)


def test_the_onnx_input_names_are_not_what_clients_send() -> None:
    renamed = {feature["input_name"]: USER_RECORD[feature["name"]] for feature in USER_FEATURES}
    with pytest.raises(InputError) as caught:
        validate([renamed], USER_SCHEMA)
    fields = {issue["field"] for issue in caught.value.issues}
    assert {"Distance (km)", "Distance__km_"} <= fields  # missing, and not a feature
    tensors = [tensor(name, [value], "FP32") for name, value in renamed.items()]
    with pytest.raises(InputError, match=r"input 'Distance__km_' is not a feature"):
        tensors_to_columns(tensors, USER_SCHEMA, 10)


def test_v2_inputs_are_named_as_the_users_columns() -> None:
    tensors = [
        tensor(f["name"], [USER_RECORD[f["name"]]], "FP32" if f["type"] == "number" else "BYTES")
        for f in USER_FEATURES
    ]
    columns, size = tensors_to_columns(tensors, USER_SCHEMA, 10)
    feed = validate_columns(columns, size, USER_SCHEMA).feed
    assert feed["Weather_Condition"][0, 0] == "rain" and feed["_1st_order_"][0, 0] == 1.0


@pytest.mark.parametrize(
    ("outputs", "requested", "wanted"),
    [
        (("prediction",), None, ["prediction"]),
        (("label", "probabilities"), None, ["label", "probabilities"]),
        (("label", "probabilities"), [{"name": "probabilities"}], ["probabilities"]),
    ],
)
def test_a_v2_request_gets_the_models_outputs_or_those_it_names(
    outputs: tuple[str, ...], requested: Any, wanted: list[str]
) -> None:
    body = {"inputs": [], **({} if requested is None else {"outputs": requested})}
    assert check_inference_request(body, outputs) == (None, wanted)


def test_a_v2_request_for_an_output_the_model_lacks_is_refused() -> None:
    body = {"inputs": [], "outputs": [{"name": "label"}]}
    with pytest.raises(InputError, match=r"naming \['prediction'\]"):
        check_inference_request(body, ("prediction",))


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
    plain = plain_record({"records": [record]}, checked)
    if plain is None:
        return
    general = validate([record], checked)
    assert general.warnings == {} and general.out_of_range == {}
    fast, slow = plain[0].feed, general.feed
    assert list(fast) == list(slow) == [f["input_name"] for f in USER_FEATURES]
    for name in fast:
        assert fast[name].dtype == slow[name].dtype and fast[name].shape == (1, 1)
        assert same_values(fast[name][:, 0].tolist(), slow[name][:, 0].tolist()), name
