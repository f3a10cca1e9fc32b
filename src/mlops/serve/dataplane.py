"""The data plane (after MLServer's ``handlers/dataplane.py``): every protocol's request is
scored here, the same way, once.

A route reads the wire request and hands it over with its protocol's codec
(``mlops.serve.codecs``); the data plane decodes it with the codec, holds the batch to the size
limit, checks it against the signature (``mlops.serve.checks.check``), scores it (small batches
merged on the event loop, large ones in a worker thread), encodes the answer with the codec,
builds the request's prediction log lines and counts it in the metrics. A new wire format adds a
codec, never a second copy of any of these steps.

With a challenger (``SCORER_CHALLENGER_DIR``) the data plane picks the model that answers
(``mlops.serve.rollout``) and, in shadow mode, hands a copy of each answered request to the
challenger (``mlops.serve.shadow``). Served alone, the champion's path is the same as without.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mlops.core.artifacts import CHAMPION, Role
from mlops.serve.batches import Inputs, ModelInput, Result
from mlops.serve.batching import MicroBatcher
from mlops.serve.checks import check, check_batch_size
from mlops.serve.codecs.base import Codec
from mlops.serve.codecs.v2 import model_metadata_body, model_parameters
from mlops.serve.errors import ClientError
from mlops.serve.metrics import ERROR, ModelLabels, ScorerMetrics
from mlops.serve.model import Prediction, Scorer
from mlops.serve.predlog import PredictionLogWriter, ScoredBatch, log_lines
from mlops.serve.rollout import RolloutMode, canary_takes
from mlops.serve.schema import InputSchema
from mlops.serve.shadow import ShadowCopy, ShadowScorer

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


@dataclass(slots=True)
class ServedModel:
    """A model the data plane serves, in its role: its scorer and the batcher merging its calls."""

    scorer: Scorer
    batcher: MicroBatcher
    role: Role
    labels: ModelLabels = ("", "")  # its metric labels: role and version

    def __post_init__(self) -> None:
        self.labels = (self.role, self.scorer.model_version)


@dataclass
class Rollout:
    """A challenger beside the champion: canary (answers ``canary_percent`` of the requests) or
    shadow (scores a copy of each answered request, ``shadow``)."""

    challenger: ServedModel
    mode: RolloutMode = "shadow"
    canary_percent: float = 0.0
    shadow: ShadowScorer | None = None


@dataclass
class DataPlane:
    scorer: Scorer  # the champion's
    schema: InputSchema
    max_records: int
    metrics: ScorerMetrics
    log: PredictionLogWriter
    batcher: MicroBatcher
    rollout: Rollout | None = None
    ready: bool = False  # set while the app is started (its lifespan)
    champion: ServedModel = field(init=False)

    def __post_init__(self) -> None:
        self.champion = ServedModel(self.scorer, self.batcher, CHAMPION)

    @property
    def challenger(self) -> ServedModel | None:
        return None if self.rollout is None else self.rollout.challenger

    def not_ready_reason(self) -> str | None:
        if not self.ready:
            return "starting or shutting down"
        if not self.log.healthy:
            return f"prediction log failing: {self.log.failed}"
        return None

    def check_model(self, name: str, version: str | None) -> ServedModel | None:
        """The model ``version`` names (None: no version named); 404 unless ``name`` is the
        served model's and ``version`` (if given) one of its served versions."""
        if name != self.scorer.model_name:
            raise ClientError(
                404, f"unknown model {name!r}; this server serves {self.scorer.model_name!r}"
            )
        if version is None:
            return None
        for model in (self.champion, self.challenger):
            if model is not None and version == model.scorer.model_version:
                return model
        served = [m.scorer.model_version for m in (self.champion, self.challenger) if m]
        raise ClientError(
            404,
            f"unknown version {version!r} of {name!r}; "
            f"the served version{'s are' if len(served) > 1 else ' is'} "
            + " and ".join(map(repr, served)),
        )

    def model_metadata(self, named: ServedModel | None) -> dict[str, Any]:
        """V2 model metadata of the named model, or of the champion listing every version
        served."""
        scorer = self.scorer if named is None else named.scorer
        body = model_metadata_body(
            scorer.model_name,
            scorer.model_version,
            self.schema,
            scorer.classes,
            model_parameters(scorer.signature),
        )
        challenger = self.challenger
        if named is None and challenger is not None:
            body["versions"].append(challenger.scorer.model_version)
        return body

    def answering(self, key: str | None, named: ServedModel | None) -> ServedModel:
        """Who answers: the model the request named, else in canary mode the challenger for its
        share of the requests (sticky per ``key``), else the champion."""
        if named is not None:
            return named
        rollout = self.rollout
        if rollout is None or rollout.mode != "canary":
            return self.champion
        return rollout.challenger if canary_takes(key, rollout.canary_percent) else self.champion

    async def infer(
        self,
        codec: Codec[Context, Answer],
        body: object,
        route: str,
        started: float,
        received: float,
        key: str | None = None,
        named: ServedModel | None = None,
    ) -> tuple[Answer, str, Role]:
        """Score one request: its wire answer, its request id and the role of the model that
        answered. ``started`` (a ``perf_counter``) and ``received`` (Unix time) are when the
        request arrived; ``route`` labels its records in the metrics; ``key`` is its rollout key
        (canary), ``named`` the model its request named. The one place a request's scored batch
        is built: the answer leaves only once its lines are written to the prediction log
        (ClientError 503 if they cannot be)."""
        batch, inputs, context = checked(codec, body, self.schema, self.max_records)
        rollout = self.rollout
        model = self.champion if rollout is None else self.answering(key, named)
        checked_seconds = 0.0 if rollout is None else time.perf_counter() - started
        reason = self.not_ready_reason()
        if reason is not None:
            raise ClientError(503, f"not ready: {reason}")
        try:
            prediction = await self.score(model, batch)
            answered = answer(model, codec, context, batch, inputs, prediction, started, received)
            if batch.size <= INLINE_MAX_RECORDS:
                await self.log.write(answered.scored)  # with the other lines of this loop turn
            else:
                self.log.append(log_lines(answered.scored))  # a group of its own: written now
        except ClientError:
            raise
        except Exception:
            self.metrics.observe_model(model.labels, ERROR)
            raise
        scored = answered.scored
        self.metrics.observe_answer(
            route,
            model.labels,
            batch.size,
            batch.out_of_range,
            batch.unknown_categories,
            scored.latency_seconds,
        )
        if rollout is not None and rollout.shadow is not None and model.role == CHAMPION:
            rollout.shadow.offer(
                ShadowCopy(
                    received,
                    scored.request_id,
                    batch.columns,
                    batch.size,
                    inputs,
                    checked_seconds,
                )
            )
        return answered.content, scored.request_id, model.role

    def score(self, model: ServedModel, batch: ModelInput) -> Awaitable[Prediction]:
        """Small batches join others in one ORT call on the event loop; large ones run in a worker
        thread (ORT releases the GIL), so the loop keeps serving meanwhile."""
        if batch.size <= INLINE_MAX_RECORDS:
            return model.batcher.predict(batch)
        return asyncio.to_thread(model.scorer.predict, batch.feed)


@dataclass(slots=True)
class Answered(Generic[Answer]):
    """A scored request: its wire answer and what the prediction log keeps of it."""

    content: Answer
    scored: ScoredBatch


def answer(
    model: ServedModel,
    codec: Codec[Context, Answer],
    context: Context,
    batch: ModelInput,
    inputs: Inputs,
    prediction: Prediction,
    started: float,
    received: float,
) -> Answered[Answer]:
    """The request's wire answer (its codec's) and its scored batch for the prediction log: the
    records as received, what the model said, the latency up to the encoded answer."""
    scorer = model.scorer
    classes = None if scorer.regression else scorer.classes
    result = Result(
        new_request_id(),
        scorer.model_name,
        scorer.model_version,
        prediction,
        classes,
        batch.warnings,
    )
    content = codec.encode(result, context)
    latency = time.perf_counter() - started  # up to the encoded answer
    scored = ScoredBatch(
        received,
        result.request_id,
        scorer.model_version,
        inputs,  # what the log keeps: the records as received
        prediction,
        classes,
        latency,
        model.role,
    )
    return Answered(content, scored)
