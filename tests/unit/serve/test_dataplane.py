"""The data plane (``mlops.serve.dataplane``): a request of either protocol is checked, scored,
logged and counted in one place, so the same records give the same log lines and metrics
whichever codec brought them; a request that fails a check is neither scored nor logged."""

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.serve.batching import MicroBatcher
from mlops.serve.codecs.base import Codec
from mlops.serve.codecs.rest import RestCodec
from mlops.serve.codecs.v2 import V2Codec
from mlops.serve.dataplane import DataPlane
from mlops.serve.errors import ClientError, InputError
from mlops.serve.metrics import ScorerMetrics
from mlops.serve.model import load_scorer
from mlops.serve.predlog import PredictionLogWriter
from mlops.serve.schema import input_schema
from package_fixtures import regression_package
from serve_fixtures import signature_of, table_records, v2_request


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return regression_package(tmp_path_factory.mktemp("regression"))


@pytest.fixture
def plane(package: Path, tmp_path: Path) -> Iterator[DataPlane]:
    scorer = load_scorer(package, threads=1)
    schema = input_schema(scorer.signature)
    log = PredictionLogWriter(tmp_path / "predictions.jsonl", 1 << 20, 1)
    metrics = ScorerMetrics(scorer.model_name, scorer.model_version, "commit")
    batcher = MicroBatcher(scorer, schema)
    service = DataPlane(scorer, schema, 100, metrics, log, batcher, ready=True)
    try:
        yield service
    finally:
        log.close()


def infer(plane: DataPlane, codec: Codec[Any, Any], body: Any, route: str) -> tuple[Any, str]:
    started, received = time.perf_counter(), time.time()
    answer, request_id, role = asyncio.run(plane.infer(codec, body, route, started, received))
    assert role == "champion"
    return json.loads(answer if isinstance(answer, bytes) else answer.content), request_id


def logged(plane: DataPlane) -> list[dict[str, Any]]:
    plane.log.close()
    return [json.loads(line) for line in plane.log.file.path.read_text().splitlines()]


def test_both_protocols_log_and_count_the_same_records_the_same_way(
    plane: DataPlane, package: Path
) -> None:
    signature = signature_of(package)
    number = next(f["name"] for f in signature["features"] if f["type"] == "number")
    records = table_records(package, limit=70)  # over the inline limit: scored in a thread
    records[1] = {**records[1], number: 1e6}  # out of the training range: a warning
    v2 = V2Codec(plane.schema, plane.scorer.outputs)
    request = v2_request(signature, records, outputs=("prediction",))
    rest_answer, rest_id = infer(plane, RestCodec(), {"records": records}, "/predict")
    v2_answer, v2_id = infer(plane, v2, request, "/v2/models/{model_name}/infer")

    values = [prediction["prediction"] for prediction in rest_answer["predictions"]]
    assert v2_answer["outputs"][0]["data"] == values and v2_answer["id"] == "42"
    assert rest_answer["request_id"] == rest_id and "warnings" in rest_answer["predictions"][1]
    lines = logged(plane)
    assert [line["request_id"] for line in lines] == [rest_id] * 70 + [v2_id] * 70

    def content(line: dict[str, Any]) -> tuple[Any, ...]:
        return (line["index"], line["features"], line["prediction"], line["probabilities"])

    assert [content(line) for line in lines[:70]] == [content(line) for line in lines[70:]]
    assert [line["features"] for line in lines[:70]] == records
    counts = plane.metrics.counts()
    model = ("champion", plane.scorer.model_version)
    routes = ["/predict", "/v2/models/{model_name}/infer"]
    assert counts.records == {(route, *model): 70 for route in routes}
    assert counts.model_requests == {(*model, "ok"): 2}
    assert {line["role"] for line in lines} == {"champion"}
    flagged = Counter(
        warning["field"]
        for prediction in rest_answer["predictions"]
        for warning in prediction.get("warnings", [])
    )
    by_feature = Counter({(name, *model): count for name, count in flagged.items()})
    assert flagged[number] >= 1 and counts.out_of_range == by_feature + by_feature


def test_a_request_that_fails_a_check_is_neither_scored_nor_logged(
    plane: DataPlane, package: Path
) -> None:
    records = table_records(package, limit=3)
    bad = [*records, {**records[0], "plan/type": 3}]
    with pytest.raises(InputError, match=r"1 invalid value\(s\) in 1 record\(s\)"):
        infer(plane, RestCodec(), {"records": bad}, "/predict")
    with pytest.raises(InputError, match=r"holds 102 records; the limit is 100"):
        infer(plane, RestCodec(), {"records": records * 34}, "/predict")
    plane.ready = False
    with pytest.raises(ClientError, match="not ready: starting or shutting down") as caught:
        infer(plane, RestCodec(), {"records": records}, "/predict")
    assert caught.value.status == 503
    assert logged(plane) == [] and plane.metrics.counts().records == {}
