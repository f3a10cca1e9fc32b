"""The data plane (after MLServer's ``handlers/dataplane.py``): every protocol's request is
scored here, the same way, once.

A route reads the wire request and hands it over with its protocol's codec
(``mlops.serve.codecs``); the data plane decodes it with the codec, holds the batch to the size
limit, checks it against the signature (``mlops.serve.checks.check``), scores it (small batches
merged on the event loop, large ones in a worker thread), encodes the answer with the codec,
builds the request's prediction log lines and counts it in the metrics. A new wire format adds a
codec, never a second copy of any of these steps.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from mlops.serve.batches import Inputs, ModelInput, Result
from mlops.serve.batching import MicroBatcher
from mlops.serve.checks import check, check_batch_size
from mlops.serve.codecs.base import Codec
from mlops.serve.errors import ClientError
from mlops.serve.metrics import ScorerMetrics
from mlops.serve.model import Prediction, Scorer
from mlops.serve.predlog import PredictionLogWriter, ScoredBatch
from mlops.serve.schema import InputSchema

INLINE_MAX_RECORDS = 64  # larger batches are scored in a worker thread
Context = TypeVar("Context")
Answer = TypeVar("Answer")


class RequestIds:
    """Request ids of 32 hex digits: 64 random bits drawn once per process, then a counter.
    Unique across workers and restarts, and cheaper than 128 random bits per request (a system
    call each). A forked child draws its own prefix."""

    def __init__(self) -> None:
        self.restart()
        os.register_at_fork(after_in_child=self.restart)

    def restart(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.numbers = itertools.count()

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.numbers):016x}"


new_request_id = RequestIds()


def checked(
    codec: Codec[Context, Any], body: object, schema: InputSchema, max_records: int
) -> tuple[ModelInput, Inputs, Context]:
    """Decode the request with its codec, hold it to ``max_records`` and check its values: the
    model's input, the inputs as decoded (what the log keeps) and the codec's context. Raises
    InputError naming what is wrong: the protocol's envelope, then the size, then the values."""
    inputs, context = codec.decode(body)
    check_batch_size(inputs.size, max_records, codec.batch_name)
    return check(inputs, schema), inputs, context


@dataclass
class DataPlane:
    scorer: Scorer
    schema: InputSchema
    max_records: int
    metrics: ScorerMetrics
    log: PredictionLogWriter
    batcher: MicroBatcher
    ready: bool = False  # set while the app is started (its lifespan)

    def not_ready_reason(self) -> str | None:
        if not self.ready:
            return "starting or shutting down"
        if not self.log.healthy:
            return f"prediction log failing: {self.log.failed}"
        return None

    def check_model(self, name: str, version: str | None) -> None:
        """404 unless ``name`` (and ``version``, if given) is the served model's."""
        if name != self.scorer.model_name:
            raise ClientError(
                404, f"unknown model {name!r}; this server serves {self.scorer.model_name!r}"
            )
        if version is not None and version != self.scorer.model_version:
            raise ClientError(
                404,
                f"unknown version {version!r} of {name!r}; "
                f"the served version is {self.scorer.model_version!r}",
            )

    async def infer(
        self,
        codec: Codec[Context, Answer],
        body: object,
        route: str,
        started: float,
        received: float,
    ) -> tuple[Answer, str]:
        """Score one request: its wire answer and its request id. ``started`` (a
        ``perf_counter``) and ``received`` (Unix time) are when the request arrived; ``route``
        labels its records in the metrics. The one place a request's scored batch is built: the
        answer leaves only once its lines are written to the prediction log (ClientError 503 if
        they cannot be)."""
        batch, inputs, context = checked(codec, body, self.schema, self.max_records)
        prediction = await self.score(batch)
        scorer = self.scorer
        maps = None if scorer.regression else prediction.probability_maps(scorer.classes)
        result = Result(
            new_request_id(),
            scorer.model_name,
            scorer.model_version,
            prediction,
            maps,
            batch.warnings,
        )
        content = codec.encode(result, context)
        scored = ScoredBatch(  # what the prediction log keeps: the records as received
            received,
            result.request_id,
            scorer.model_version,
            inputs.records(),
            prediction.values if scorer.regression else prediction.labels,
            maps,  # shared with the answer
            time.perf_counter() - started,  # the latency up to the encoded answer
            inputs.extras,
            inputs.client_id,
        )
        await self.log.write(scored)
        self.metrics.observe_batch(route, batch.size, batch.out_of_range, batch.unknown_categories)
        return content, result.request_id

    def score(self, batch: ModelInput) -> Awaitable[Prediction]:
        """Small batches join others in one ORT call on the event loop; large ones run in a worker
        thread (ORT releases the GIL), so the loop keeps serving meanwhile."""
        reason = self.not_ready_reason()
        if reason is not None:
            raise ClientError(503, f"not ready: {reason}")
        if batch.size <= INLINE_MAX_RECORDS:
            return self.batcher.predict(batch)
        return asyncio.to_thread(self.scorer.predict, batch.feed)
