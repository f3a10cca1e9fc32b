import asyncio
from typing import Any

import numpy as np

from mlops.serve.batches import Records
from mlops.serve.batching import MicroBatcher
from mlops.serve.checks import check
from mlops.serve.model import Prediction
from mlops.serve.schema import input_schema
from signatures import number, regression_signature, signature, string

SIGNATURE = signature(number("size"), string("colour", ["red"]), classes=("small", "big"))
SCHEMA = input_schema(SIGNATURE)


class CountingScorer:
    """Scores ``size`` > 5 as big; remembers the size of every call."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def predict(self, feed: dict[str, Any]) -> Prediction:
        if self.fail:
            raise RuntimeError("model failure")
        sizes = feed["size"][:, 0]
        assert feed["colour"].dtype == object
        self.calls.append(len(sizes))
        return Prediction(
            ["big" if size > 5 else "small" for size in sizes],
            [[0.0, 1.0] if size > 5 else [1.0, 0.0] for size in sizes],
        )


def batch_of(*sizes: float | None) -> Any:
    return check(Records([{"size": size, "colour": "red"} for size in sizes]), SCHEMA)


def test_requests_of_the_same_loop_turn_share_one_call_and_get_their_own_rows() -> None:
    scorer = CountingScorer()

    async def concurrent() -> list[Prediction]:
        batcher = MicroBatcher(scorer, SCHEMA)  # type: ignore[arg-type]
        futures = [
            batcher.predict(batch_of(1)),
            batcher.predict(batch_of(9, 2)),
            batcher.predict(batch_of(7)),
        ]
        return list(await asyncio.gather(*futures))

    first, second, third = asyncio.run(concurrent())
    assert scorer.calls == [4]
    assert (first.labels, second.labels, third.labels) == (["small"], ["big", "small"], ["big"])
    assert second.probabilities == [[0.0, 1.0], [1.0, 0.0]]


def test_a_lone_request_is_scored_on_the_next_turn_and_large_merges_are_split() -> None:
    scorer = CountingScorer()

    async def sequential() -> None:
        batcher = MicroBatcher(scorer, SCHEMA, max_rows=3)  # type: ignore[arg-type]
        assert (await batcher.predict(batch_of(1))).labels == ["small"]
        merged = [
            batcher.predict(batch_of(1, 2)),
            batcher.predict(batch_of(3, 4)),
            batcher.predict(batch_of(6)),
        ]
        results = await asyncio.gather(*merged)
        assert [r.labels for r in results] == [["small", "small"], ["small", "small"], ["big"]]

    asyncio.run(sequential())
    assert scorer.calls == [1, 4, 1]


def test_missing_values_reach_the_model_as_nan() -> None:
    scorer = CountingScorer()
    seen: list[Any] = []
    original = scorer.predict

    def spy(feed: dict[str, Any]) -> Prediction:
        seen.append(feed["size"][:, 0].tolist())
        return original(feed)

    scorer.predict = spy  # type: ignore[method-assign]

    async def run() -> None:
        batcher = MicroBatcher(scorer, SCHEMA)  # type: ignore[arg-type]
        await asyncio.gather(batcher.predict(batch_of(None)), batcher.predict(batch_of(2)))

    asyncio.run(run())
    assert np.isnan(seen[0][0]) and seen[0][1] == 2.0


def test_a_model_failure_reaches_every_waiting_request_and_cancelled_ones_are_skipped() -> None:
    async def run() -> list[Any]:
        batcher = MicroBatcher(CountingScorer(fail=True), SCHEMA)  # type: ignore[arg-type]
        cancelled = batcher.predict(batch_of(1))
        cancelled.cancel()
        waiting = [batcher.predict(batch_of(1)), batcher.predict(batch_of(2))]
        return await asyncio.gather(*waiting, return_exceptions=True)

    results = asyncio.run(run())
    assert all(isinstance(result, RuntimeError) for result in results)


def test_nothing_waiting_is_nothing_to_do() -> None:
    scorer = CountingScorer()
    MicroBatcher(scorer, SCHEMA).score_waiting()  # type: ignore[arg-type]
    assert scorer.calls == []


def test_a_regressors_merged_values_go_back_to_their_own_requests() -> None:
    """User-named features reach the model under their ONNX input names; each request gets its
    own predicted values back."""
    signature = regression_signature(number("Distance (km)"), string("plan/type", ["basic"]))
    schema = input_schema(signature)
    calls: list[list[float]] = []

    class Regressor:
        def predict(self, feed: dict[str, Any]) -> Prediction:
            distances = feed["Distance__km_"][:, 0].tolist()
            assert feed["plan_type"].dtype == object
            calls.append(distances)
            return Prediction([], [], [2.0 * distance for distance in distances])

    def batch(*distances: float) -> Any:
        records = [{"Distance (km)": d, "plan/type": "basic"} for d in distances]
        return check(Records(records), schema)

    async def concurrent() -> list[Prediction]:
        batcher = MicroBatcher(Regressor(), schema)  # type: ignore[arg-type]
        futures = [batcher.predict(batch(1.5)), batcher.predict(batch(2.0, 3.0))]
        return list(await asyncio.gather(*futures))

    first, second = asyncio.run(concurrent())
    assert calls == [[1.5, 2.0, 3.0]]
    assert (first.values, second.values) == ([3.0], [4.0, 6.0])
    assert first.labels == second.labels == []
