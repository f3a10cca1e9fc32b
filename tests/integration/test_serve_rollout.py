"""A champion and a challenger served by one real scorer process (or two worker processes), over
real HTTP and gRPC, with the clients users run (httpx, tritonclient, grpc stubs).

The challengers are real packages of the same signature as the champion: a deliberately worse
model (trained on shuffled labels), and for the fault cases the champion's own model rewired so
that it fails on batches of five records or more, or takes about a second per call.

- shadow: every answer is the champion's; once the shadow queue drains, every answered record has
  exactly one champion line and one challenger line (``shadow: true``) with the same
  (request_id, index), over REST, V2 JSON, V2 binary and gRPC, with two worker processes; the
  metrics count both roles exactly.
- canary: the challenger's share of requests without a key is within a binomial tolerance; the
  same key always gets the same model, the one its bucket says; a request naming a version is
  answered by it; per-role log lines and metrics are exact; tritonclient over HTTP and gRPC.
- a challenger of another signature or task: the scorer refuses to start, naming the difference.
- a failing or slow shadow challenger: the champion answers every request, and fast; the copies
  are counted as errors or dropped.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlops.serve.grpc.open_inference_pb2_grpc import GRPCInferenceServiceStub
from mlops.serve.metrics import PUBLISH_SECONDS
from model_fixtures import (
    REGRESSION_TARGET,
    regression_table,
    split,
    trained_on,
)
from package_fixtures import (
    REGRESSION_RENAMES,
    binary_package,
    build_package,
    constant,
    regression_package,
    rewired,
    shuffled_classifier,
    shuffled_regressor,
    version_of,
)
from serve_fixtures import (
    Scorer,
    copy_package,
    grpc_infer_request,
    launch_to_refusal,
    post_json,
    running_scorer,
    signature_of,
    table_records,
    triton,
    v2_request,
)

CANARY_PERCENT = 30
CANARY_REQUESTS = 400
TOLERANCE_SIGMAS = 4  # a fair router falls outside this band about once in 16,000 runs
PREFIXES = ("http-", "grpc-")  # of the request ids the canary test's tritonclient calls send


def fails_on_five_records(first_input: str) -> list[Any]:
    """``zero`` = a 4-element table at index (batch size - 1): out of bounds from 5 records."""
    return [
        helper.make_node("Shape", [first_input], ["batch_shape"]),
        constant("first", 0),
        helper.make_node("Gather", ["batch_shape", "first"], ["rows"], axis=0),
        constant("one", 1),
        helper.make_node("Sub", ["rows", "one"], ["last_row"]),
        constant("table", [0.0, 0.0, 0.0, 0.0], TensorProto.FLOAT),
        helper.make_node("Gather", ["table", "last_row"], ["zero"], axis=0),
    ]


def takes_a_while(first_input: str) -> list[Any]:
    """``zero`` = 0 times the sum of three products of 2,000-square matrices (their shape made
    from the batch's, so that ONNX Runtime cannot compute it once at load time)."""
    return [
        helper.make_node("Shape", [first_input], ["batch_shape"]),
        constant("nothing", 0),
        helper.make_node("Mul", ["batch_shape", "nothing"], ["zeros"]),
        constant("side", 2000),
        helper.make_node("Add", ["zeros", "side"], ["square"]),
        helper.make_node(
            "ConstantOfShape",
            ["square"],
            ["ones"],
            value=numpy_helper.from_array(np.asarray([1e-3], "float32")),
        ),
        helper.make_node("MatMul", ["ones", "ones"], ["product1"]),
        helper.make_node("MatMul", ["product1", "ones"], ["product2"]),
        helper.make_node("MatMul", ["product2", "ones"], ["product3"]),
        helper.make_node("ReduceSum", ["product3"], ["total"], keepdims=0),
        constant("naught", 0.0, TensorProto.FLOAT),
        helper.make_node("Mul", ["total", "naught"], ["zero"]),
    ]


# --- packages --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regressors(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    champion = regression_package(tmp_path_factory.mktemp("champion-regressor"))
    challenger = shuffled_regressor(tmp_path_factory.mktemp("challenger-regressor"))
    assert version_of(champion) != version_of(challenger)
    return champion, challenger


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    champion = binary_package(tmp_path_factory.mktemp("champion-classifier"), threshold=0.3)
    challenger = shuffled_classifier(tmp_path_factory.mktemp("challenger-classifier"))
    assert version_of(champion) != version_of(challenger)
    return champion, challenger


# --- helpers ---------------------------------------------------------------------------------


def log_records(scorer: Scorer) -> list[dict[str, Any]]:
    log = scorer.prediction_log
    files = [log, *(f for f in log.parent.glob(log.name + ".*") if f.suffix[1:].isdigit())]
    return [
        json.loads(line)
        for file in files
        if file.exists()
        for line in file.read_text().splitlines()
    ]


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def metric_values(scorer: Scorer, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of ``family`` on ``/metrics``: its labels (sorted pairs) and value."""
    text = httpx.get(f"{scorer.url}/metrics", timeout=10).text
    samples = {}
    for match in re.finditer(rf"^{family}\{{(.*?)\}} (\S+)$", text, re.MULTILINE):
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', match.group(1))))
        samples[labels] = float(match.group(2))
    return samples


def model_requests(scorer: Scorer) -> dict[tuple[str, str, str], float]:
    """``scorer_model_requests_total`` by (role, model_version, outcome)."""
    return {
        (labels["role"], labels["model_version"], labels["outcome"]): value
        for pairs, value in metric_values(scorer, "scorer_model_requests_total").items()
        for labels in [dict(pairs)]
    }


def records_scored(scorer: Scorer) -> dict[tuple[str, str], float]:
    """``scorer_records_scored_total`` summed over routes, by (role, model_version)."""
    totals: Counter[tuple[str, str]] = Counter()
    for pairs, value in metric_values(scorer, "scorer_records_scored_total").items():
        labels = dict(pairs)
        totals[labels["role"], labels["model_version"]] += int(value)
    return dict(totals)


def expected_role(key: str) -> str:
    """The contract's sticky routing, written here independently of the scorer."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10000
    return "challenger" if bucket < CANARY_PERCENT * 100 else "champion"


def target_of(scorer: Scorer, protocol: str) -> str:
    return scorer.http_target if protocol == "http" else scorer.grpc_target


def columns_of(signature: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {f["name"]: [record[f["name"]] for record in records] for f in signature["features"]}


# --- shadow ----------------------------------------------------------------------------------


def test_shadow_answers_from_the_champion_and_logs_one_challenger_copy_per_record(
    regressors: tuple[Path, Path], tmp_path: Path
) -> None:
    """Two worker processes; REST, V2 JSON, V2 binary (tritonclient HTTP) and gRPC (tritonclient
    and a stub with a rollout key, ignored in shadow mode)."""
    champion, challenger = regressors
    signature = signature_of(champion)
    records = table_records(champion)
    name = signature["model_name"]
    settings = {"SCORER_CHALLENGER_DIR": str(challenger), "SCORER_WORKERS": "2"}
    with running_scorer(champion, tmp_path / "scorer", **settings) as scorer:
        answered: dict[str, int] = {}  # request id -> records

        def rest(number: int) -> None:
            batch = records[number % 40 : number % 40 + 1 + number % 7]
            with httpx.Client(base_url=scorer.url, timeout=30) as client:
                response = post_json(
                    client, "/predict", {"records": batch}, **{"x-rollout-key": f"k{number}"}
                )
            assert response.status_code == 200, response.text
            assert response.headers["x-model-role"] == "champion"
            assert response.json()["model_version"] == version_of(champion)
            answered[response.headers["x-request-id"]] = len(batch)

        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(rest, range(60)))
        with httpx.Client(base_url=scorer.url, timeout=30) as client:
            body = v2_request(signature, records[:25], outputs=("prediction",))
            response = client.post(f"/v2/models/{name}/infer", json=body)
        assert response.status_code == 200 and response.headers["x-model-role"] == "champion"
        answered[response.headers["x-request-id"]] = 25
        for protocol in ("http", "grpc"):  # binary tensors in and out (V2 binary, raw gRPC)
            call = {
                "call": "infer",
                "model": name,
                "columns": columns_of(signature, records[30:42]),
                "names": ["prediction"],
                "request_id": f"triton-{protocol}",
                "whole": True,
            }
            (answer,) = triton(protocol, target_of(scorer, protocol), [call])
            response_version = answer["response"].get("model_version") or answer["response"].get(
                "modelVersion"
            )
            assert response_version == version_of(champion), answer
        with grpc.insecure_channel(scorer.grpc_target) as channel:
            stub = GRPCInferenceServiceStub(channel)
            _, call_state = stub.ModelInfer.with_call(
                grpc_infer_request(signature, records[50:53]),
                metadata=[("x-rollout-key", "ignored in shadow mode")],
                timeout=30,
            )
        trailing = dict(call_state.trailing_metadata())
        assert trailing["x-model-role"] == "champion"
        answered[trailing["x-request-id"]] = 3

        total = sum(answered.values()) + 2 * 12
        wait_for(lambda: len(log_records(scorer)) >= 2 * total, "the shadow lines")
        time.sleep(2 * PUBLISH_SECONDS)  # every worker has published its counts since
        requests = model_requests(scorer)
        scored = records_scored(scorer)
        info = metric_values(scorer, "scorer_model_info")
    lines = log_records(scorer)
    assert len(lines) == 2 * total
    answers = [line for line in lines if "shadow" not in line]
    copies = [line for line in lines if line.get("shadow") is True]
    assert len(answers) == len(copies) == total
    assert {line["role"] for line in answers} == {"champion"}
    assert {line["model_version"] for line in answers} == {version_of(champion)}
    assert {line["role"] for line in copies} == {"challenger"}
    assert {line["model_version"] for line in copies} == {version_of(challenger)}
    by_record = {(line["request_id"], line["index"]): line for line in answers}
    assert len(by_record) == total
    copied = Counter((line["request_id"], line["index"]) for line in copies)
    assert copied == Counter(by_record.keys())
    for copy in copies:  # the same record and ids as the answered line, another prediction
        answer = by_record[copy["request_id"], copy["index"]]
        assert copy["features"] == answer["features"]
        assert copy.get("client_request_id") == answer.get("client_request_id")
        assert copy["ts"] == answer["ts"] and copy["latency_seconds"] > 0
    assert any(
        c["prediction"] != by_record[c["request_id"], c["index"]]["prediction"] for c in copies
    )
    for request_id, size in answered.items():
        assert sum(1 for line in answers if line["request_id"] == request_id) == size
    assert {line.get("client_request_id") for line in copies} >= {"triton-http", "triton-grpc"}

    requests_made = len(answered) + 2
    champion_key, challenger_key = (
        ("champion", version_of(champion)),
        (
            "challenger",
            version_of(challenger),
        ),
    )
    assert requests == {
        (*champion_key, "ok"): requests_made,
        (*challenger_key, "ok"): requests_made,
    }
    assert scored == {champion_key: total}  # answers only: the copies are not answers
    roles = {dict(pairs)["role"]: dict(pairs)["model_version"] for pairs in info}
    assert roles == {"champion": version_of(champion), "challenger": version_of(challenger)}


# --- canary ----------------------------------------------------------------------------------


def test_canary_shares_the_requests_sticks_to_keys_and_counts_each_role_exactly(
    classifiers: tuple[Path, Path], tmp_path: Path
) -> None:
    champion, challenger = classifiers
    versions = {"champion": version_of(champion), "challenger": version_of(challenger)}
    signature = signature_of(champion)
    records = table_records(champion)
    name = signature["model_name"]
    settings = {
        "SCORER_CHALLENGER_DIR": str(challenger),
        "SCORER_CHALLENGER_MODE": "canary",
        "SCORER_CANARY_PERCENT": str(CANARY_PERCENT),
    }
    with running_scorer(champion, tmp_path / "scorer", **settings) as scorer:
        answered: dict[str, tuple[str, int]] = {}  # request id -> role, records

        def predict(client: httpx.Client, batch: list[dict[str, Any]], **headers: str) -> str:
            response = post_json(client, "/predict", {"records": batch}, **headers)
            assert response.status_code == 200, response.text
            role = response.headers["x-model-role"]
            assert response.json()["model_version"] == versions[role]
            answered[response.headers["x-request-id"]] = (role, len(batch))
            return role

        with httpx.Client(base_url=scorer.url, timeout=30) as client:
            unkeyed = Counter(
                predict(client, [records[n % len(records)]]) for n in range(CANARY_REQUESTS)
            )
            keys = [f"customer-{n}" for n in range(60)]
            keyed = {key: {predict(client, records[:2], **{"X-Rollout-Key": key})} for key in keys}
            for key in keys[:20]:  # again, later: still the same model
                keyed[key].add(predict(client, records[2:5], **{"X-Rollout-Key": key}))
            for version_role, version in versions.items():  # a version named: that version
                body = v2_request(signature, records[:4])
                response = client.post(f"/v2/models/{name}/versions/{version}/infer", json=body)
                assert response.status_code == 200, response.text
                assert response.headers["x-model-role"] == version_role
                assert response.json()["model_version"] == version
                answered[response.headers["x-request-id"]] = (version_role, 4)
            metadata = client.get(f"/v2/models/{name}").json()
            assert metadata["versions"] == [versions["champion"], versions["challenger"]]

        mean = CANARY_REQUESTS * CANARY_PERCENT / 100
        spread = TOLERANCE_SIGMAS * math.sqrt(mean * (1 - CANARY_PERCENT / 100))
        assert abs(unkeyed["challenger"] - mean) <= spread, unkeyed
        assert all(len(roles) == 1 for roles in keyed.values()), keyed
        assert {key: roles.pop() for key, roles in keyed.items()} == {
            key: expected_role(key) for key in keys
        }
        assert {expected_role(key) for key in keys} == {"champion", "challenger"}

        grpc_roles = {}
        with grpc.insecure_channel(scorer.grpc_target) as channel:
            stub = GRPCInferenceServiceStub(channel)
            for key in keys[:12]:
                _, call_state = stub.ModelInfer.with_call(
                    grpc_infer_request(signature, records[:3]),
                    metadata=[("x-rollout-key", key)],
                    timeout=30,
                )
                trailing = dict(call_state.trailing_metadata())
                grpc_roles[key] = trailing["x-model-role"]
                answered[trailing["x-request-id"]] = (trailing["x-model-role"], 3)
        assert grpc_roles == {key: expected_role(key) for key in keys[:12]}

        for protocol in ("http", "grpc"):  # tritonclient's headers: HTTP headers, gRPC metadata
            calls = [
                {
                    "call": "infer",
                    "model": name,
                    "columns": columns_of(signature, records[:6]),
                    "names": ["label", "probabilities"],
                    "headers": {"x-rollout-key": key},
                    "request_id": f"{protocol}-{key}",
                    "whole": True,
                }
                for key in keys[:10]
            ]
            answers = triton(protocol, target_of(scorer, protocol), calls)
            for key, answer in zip(keys[:10], answers, strict=True):
                response = answer["response"]
                version = response.get("model_version") or response.get("modelVersion")
                assert version == versions[expected_role(key)], (protocol, key)
        requests = model_requests(scorer)
        scored = records_scored(scorer)

    lines = log_records(scorer)
    assert not any("shadow" in line for line in lines)
    for line in lines:
        assert line["model_version"] == versions[line["role"]]
    triton_lines = Counter(
        line["role"]
        for line in lines
        if line.get("client_request_id", "").startswith(("http-", "grpc-"))
    )
    expected_triton = Counter(expected_role(key) for key in keys[:10] for _ in range(2 * 6))
    assert triton_lines == expected_triton
    per_role_requests = Counter(role for role, _ in answered.values())
    per_role_records: Counter[str] = Counter()
    for role, size in answered.values():
        per_role_records[role] += size
    for role in ("champion", "challenger"):
        logged = [line for line in lines if line["role"] == role]
        triton_requests = sum(1 for key in keys[:10] if expected_role(key) == role) * 2
        assert len(logged) == per_role_records[role] + triton_lines[role]
        assert requests[role, versions[role], "ok"] == per_role_requests[role] + triton_requests
        assert scored[role, versions[role]] == per_role_records[role] + triton_lines[role]
    assert not any(outcome != "ok" for _, _, outcome in requests)


def test_canary_at_zero_percent_sends_nothing_to_the_challenger_unless_named(
    regressors: tuple[Path, Path], tmp_path: Path
) -> None:
    champion, challenger = regressors
    signature = signature_of(champion)
    records = table_records(champion)
    settings = {
        "SCORER_CHALLENGER_DIR": str(challenger),
        "SCORER_CHALLENGER_MODE": "canary",
        "SCORER_CANARY_PERCENT": "0",
    }
    with (
        running_scorer(champion, tmp_path / "scorer", **settings) as scorer,
        httpx.Client(base_url=scorer.url, timeout=30) as client,
    ):
        roles = {
            post_json(
                client, "/predict", {"records": records[:1]}, **{"x-rollout-key": key}
            ).headers["x-model-role"]
            for key in ["", "a", "b", "c", *map(str, range(40))]
        }
        path = f"/v2/models/{signature['model_name']}/versions/{version_of(challenger)}/infer"
        named = client.post(path, json=v2_request(signature, records[:2], outputs=("prediction",)))
        unknown = client.post(path.replace(version_of(challenger), "v0"), json={})
    assert roles == {"champion"}
    assert named.status_code == 200 and named.headers["x-model-role"] == "challenger"
    assert unknown.status_code == 404
    assert unknown.json()["error"] == (
        f"unknown version 'v0' of '{signature['model_name']}'; the served versions are "
        f"'{version_of(champion)}' and '{version_of(challenger)}'"
    )


# --- refusals --------------------------------------------------------------------------------


def challenger_without_a_feature(directory: Path) -> tuple[Path, str]:
    """A regressor of the champion's table with one feature column left out."""
    table = regression_table().rename(columns=REGRESSION_RENAMES)
    dropped = REGRESSION_RENAMES["Größe"]
    train, test = split(table.drop(columns=[dropped]), target=REGRESSION_TARGET)
    model = trained_on(train, REGRESSION_TARGET)
    return build_package(directory, model, train, test)["out"], dropped


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_challenger_of_another_signature_or_task_stops_the_start_naming_it(
    regressors: tuple[Path, Path],
    classifiers: tuple[Path, Path],
    tmp_path: Path,
    workers: str,
) -> None:
    champion, _ = regressors
    lacking, dropped = challenger_without_a_feature(tmp_path / "lacking")
    cases = [
        (lacking, f"it lacks the champion's feature(s) ['{dropped}']"),
        (classifiers[1], "its task is classification, the champion's regression"),
        (tmp_path / "nowhere", "no packaged model directory here"),
    ]
    for number, (challenger, difference) in enumerate(cases):
        scorer, exit_code = launch_to_refusal(
            champion,
            tmp_path / f"scorer-{number}",
            SCORER_CHALLENGER_DIR=str(challenger),
            SCORER_WORKERS=workers,
        )
        output = scorer.output()
        assert exit_code == 1, output
        refusal = [line for line in output.splitlines() if "refusing to serve" in line]
        assert len(refusal) == 1, output
        assert f"SCORER_CHALLENGER_DIR={challenger}" in refusal[0] and difference in refusal[0]
        assert "Traceback" not in output


# --- faults of a shadow challenger -----------------------------------------------------------


def test_a_failing_shadow_challenger_never_fails_an_answer_and_its_errors_are_counted(
    regressors: tuple[Path, Path], tmp_path: Path
) -> None:
    champion, _ = regressors
    failing = rewired(champion, tmp_path / "failing", "fails-from-5-records", fails_on_five_records)
    records = table_records(champion)
    with running_scorer(
        champion, tmp_path / "scorer", SCORER_CHALLENGER_DIR=str(failing)
    ) as scorer:
        with httpx.Client(base_url=scorer.url, timeout=30) as client:
            sizes = [1, 8, 2, 5, 3, 12, 1, 4, 6, 1] * 3
            for number, size in enumerate(sizes):
                batch = records[number : number + size]
                response = post_json(client, "/predict", {"records": batch})
                assert response.status_code == 200, response.text
                assert response.headers["x-model-role"] == "champion"
        small = sum(1 for size in sizes if size < 5)
        failing_key = ("challenger", "fails-from-5-records")

        def all_counted() -> bool:
            requests = model_requests(scorer)
            return requests.get((*failing_key, "ok"), 0) + requests.get(
                (*failing_key, "error"), 0
            ) == len(sizes)

        wait_for(all_counted, "every shadow copy counted")
        requests = model_requests(scorer)
        output = scorer.output()
    assert requests[(*failing_key, "ok")] == small
    assert requests[(*failing_key, "error")] == len(sizes) - small
    assert requests[("champion", version_of(champion), "ok")] == len(sizes)
    copies = [line for line in log_records(scorer) if line.get("shadow")]
    assert len(copies) == sum(size for size in sizes if size < 5)
    assert output.count("shadow challenger fails-from-5-records failed") == 1  # not per copy


def test_a_slow_shadow_challenger_never_delays_an_answer_and_drops_what_it_cannot_take(
    regressors: tuple[Path, Path], tmp_path: Path
) -> None:
    champion, _ = regressors
    slow = rewired(champion, tmp_path / "slow", "slow-1", takes_a_while)
    records = table_records(champion)
    settings = {"SCORER_CHALLENGER_DIR": str(slow), "SCORER_SHADOW_QUEUE": "2"}
    with running_scorer(champion, tmp_path / "scorer", **settings) as scorer:

        def send(number: int) -> None:
            with httpx.Client(base_url=scorer.url, timeout=30) as client:
                response = post_json(client, "/predict", {"records": records[number : number + 2]})
            assert response.status_code == 200, response.text
            assert response.headers["x-model-role"] == "champion"

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(send, range(24)))
        slow_key = ("challenger", "slow-1")

        def all_counted() -> bool:
            requests = model_requests(scorer)
            return sum(requests.get((*slow_key, o), 0) for o in ("ok", "dropped")) == 24

        wait_for(all_counted, "every shadow copy scored or dropped")
        requests = model_requests(scorer)
    lines = log_records(scorer)
    answers = [line for line in lines if not line.get("shadow")]
    copies = [line for line in lines if line.get("shadow")]
    assert len(answers) == 48 and requests[("champion", version_of(champion), "ok")] == 24
    assert requests[(*slow_key, "dropped")] >= 1
    assert len(copies) == 2 * requests[(*slow_key, "ok")]
    challenger_seconds = min(line["latency_seconds"] for line in copies)
    answer_seconds = sorted(line["latency_seconds"] for line in answers)
    # the challenger is slow indeed (how slow depends on the machine: a ratio, not seconds) ...
    assert challenger_seconds > 20 * answer_seconds[len(answer_seconds) // 2]
    # ... and no answer waited for it
    assert answer_seconds[-1] < challenger_seconds / 2


def test_the_champions_own_version_as_challenger_serves_the_champion_alone(
    regressors: tuple[Path, Path], tmp_path: Path
) -> None:
    """Compose's default challenger is the working tree's package, the image's own until a
    change is reproduced: the scorer starts, says so, and serves the champion alone."""
    champion, _ = regressors
    same = copy_package(champion, tmp_path / "same")
    with running_scorer(champion, tmp_path / "scorer", SCORER_CHALLENGER_DIR=str(same)) as scorer:
        records = table_records(champion, limit=3)
        with httpx.Client(base_url=scorer.url, timeout=30) as client:
            response = post_json(client, "/predict", {"records": records})
        assert response.status_code == 200, response.text
        assert response.headers["x-model-role"] == "champion"
        time.sleep(0.5)  # a shadow copy, were one made, would be logged by now
        lines = [json.loads(line) for line in scorer.log_lines()]
        assert [(line["role"], line.get("shadow")) for line in lines] == [("champion", None)] * 3
        warning = f"SCORER_CHALLENGER_DIR={same} holds the champion's own version"
        assert warning in scorer.output()
