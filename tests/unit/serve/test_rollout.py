"""Which model answers (``mlops.serve.rollout``): a key's bucket is the contract's formula, the
same key always lands on the same side, a share without keys follows the percent; and which
challenger can be served beside a champion at all (one phrase naming the difference)."""

from __future__ import annotations

import copy
import hashlib
import random
from pathlib import Path
from typing import Any

import pytest

from mlops.core.artifacts import ArtifactError
from mlops.serve.rollout import (
    BUCKETS,
    bucket_of,
    canary_takes,
    incompatibility,
    is_the_champion,
    require_compatible,
)


def feature(name: str, kind: str = "number", input_name: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "input_name": input_name or name.replace(" ", "_"),
        "type": kind,
        "nullable": True,
        "categories": ["a", "b"] if kind == "string" else None,
        "min": 0.0 if kind == "number" else None,
        "max": 9.0 if kind == "number" else None,
    }


def package(version: str = "v1", **changes: Any) -> tuple[Any, Any]:
    """A (signature, manifest) pair of a binary classifier; ``changes`` replace signature keys
    (``model_name`` the manifest's)."""
    signature = {
        "model_name": "churn",
        "target": "Churned?",
        "task": "classification",
        "features": [feature("Monthly Charge ($)"), feature("plan/type", "string")],
        "classes": ["no", "yes"],
        "positive_class": "yes",
        "threshold": 0.3,
    }
    manifest = {"model_name": changes.pop("model_name", "churn"), "model_version": version}
    signature.update(changes)
    return signature, manifest


def test_a_keys_bucket_is_the_first_32_bits_of_its_sha256_modulo_10000() -> None:
    for key in ["customer-1", "", "Ünïcode kéy", "x" * 300]:
        expected = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10000
        assert bucket_of(key) == expected
    assert bucket_of("customer-1") == bucket_of("customer-1")


def test_a_key_goes_to_the_challenger_exactly_when_its_bucket_is_below_the_percent() -> None:
    keys = [f"customer-{number}" for number in range(2000)]
    for percent in (0, 0.01, 2.5, 30, 99.99, 100):
        taken = {key for key in keys if canary_takes(key, percent)}
        assert taken == {key for key in keys if bucket_of(key) < percent * 100}
    assert not any(canary_takes(key, 0) for key in keys)
    assert all(canary_takes(key, 100) for key in keys)
    share = sum(canary_takes(key, 30) for key in keys) / len(keys)
    assert 0.25 < share < 0.35  # sha256 spreads keys evenly


def test_without_a_key_each_request_draws_its_own_bucket() -> None:
    draws = iter([0, 2999, 3000, 9999])
    assert [canary_takes(None, 30, lambda _: next(draws)) for _ in range(4)] == [
        True,
        True,
        False,
        False,
    ]
    chosen = random.Random(3)
    taken = sum(canary_takes(None, 30, chosen.randrange) for _ in range(10_000))
    assert abs(taken - 3000) < 4 * (10_000 * 0.3 * 0.7) ** 0.5
    assert BUCKETS == 10_000


def test_a_challenger_of_the_same_signature_and_another_version_is_served() -> None:
    champion = package("v1")
    challenger = package("v2", threshold=0.5, positive_class="yes")  # its own decision
    ranges = copy.deepcopy(challenger)
    ranges[0]["features"][0].update(min=-5.0, max=50.0, nullable=False)
    assert incompatibility(champion, challenger) is None
    assert incompatibility(champion, ranges) is None  # ranges are the champion's checks'


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"model_name": "fraud"}, "its model name is 'fraud', the champion's 'churn'"),
        ({"task": "regression", "classes": []}, "its task is regression, the champion's"),
        (
            {"features": [feature("Monthly Charge ($)")]},
            "it lacks the champion's feature(s) ['plan/type']",
        ),
        (
            {
                "features": [feature("Monthly Charge ($)"), feature("plan/type", "string")] * 1
                + [feature("tenure")]
            },
            "it has feature(s) ['tenure'] the champion lacks",
        ),
        (
            {"features": [feature("Monthly Charge ($)", "string"), feature("plan/type", "string")]},
            "its feature 'Monthly Charge ($)' is a string, the champion's a number",
        ),
        (
            {
                "features": [
                    feature("Monthly Charge ($)", input_name="x0"),
                    feature("plan/type", "string"),
                ]
            },
            "its feature 'Monthly Charge ($)' is the ONNX input 'x0', the champion's",
        ),
        ({"classes": ["yes", "no"]}, "its classes are ['yes', 'no'], the champion's ['no', 'yes']"),
    ],
)
def test_a_challenger_that_answers_other_questions_is_refused_naming_the_difference(
    changes: dict[str, Any], phrase: str
) -> None:
    problem = incompatibility(package("v1"), package("v2", **changes))
    assert problem is not None and phrase in problem


def test_the_champions_own_version_is_no_challenger_and_a_refusal_names_the_setting() -> None:
    assert is_the_champion(package("v1")[1], package("v1")[1])
    assert not is_the_champion(package("v1")[1], package("v2")[1])
    assert incompatibility(package("v1"), package("v1")) is None  # served alone, not refused
    with pytest.raises(ArtifactError) as raised:
        require_compatible(package("v1"), package("v2", task="regression"), Path("/m/c"))
    message = str(raised.value)
    assert message.startswith("SCORER_CHALLENGER_DIR=/m/c: the challenger cannot")
    assert "\n" not in message
