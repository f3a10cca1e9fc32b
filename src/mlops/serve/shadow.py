"""Shadow scoring: the challenger scores a copy of each request the champion answered, off the
response path.

The champion's answer never waits for the challenger: the data plane hands over the copy once the
answer's own log lines are written (``ShadowScorer.offer``, a few attribute assignments on the
event loop) and returns. At most ``SCORER_SHADOW_QUEUE`` copies wait; a copy beyond is dropped
and counted. One thread of its own scores them, the copies waiting merged into one ONNX Runtime
call (ORT releases the GIL while it computes), formats their log lines and writes them; the loop
then counts the outcome. A slow challenger fills the queue
(copies dropped), a failing one counts errors: neither delays nor fails an answer. A merged call
that fails is retried copy by copy, so that each copy's outcome is its own.

Shadow lines are written once scored, not before the answer leaves: a hard kill loses the copies
still waiting or being scored (at most ``SCORER_SHADOW_QUEUE`` and the one call in flight); a
graceful stop scores what waits first (for a few seconds: ``app.SHADOW_DRAIN_SECONDS``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mlops.core.artifacts import CHALLENGER
from mlops.serve.batches import ColumnValues, Inputs, model_feed
from mlops.serve.errors import ClientError
from mlops.serve.metrics import DROPPED, ERROR, OK, ScorerMetrics
from mlops.serve.model import Prediction, Scorer
from mlops.serve.predlog import PredictionLogWriter, ScoredBatch, log_lines
from mlops.serve.schema import InputSchema

logger = logging.getLogger("mlops.serve")

MAX_MERGED_ROWS = 1024  # copies merged into one challenger call, at most this many rows
DRAIN_POLL_SECONDS = 0.01
WARNING_SECONDS = 60.0  # a failing challenger is reported at most this often


@dataclass(slots=True)
class ShadowCopy:
    """What the challenger needs of an answered request: its checked values, and what its log
    lines share with the answered ones."""

    received: float
    request_id: str
    columns: dict[str, ColumnValues]  # the checked model input (the champion's checks)
    size: int
    inputs: Inputs  # the records as received, as the answered lines log them
    checked_seconds: float  # from the request's arrival to its checked batch


@dataclass(slots=True)
class Scored:
    """A merged call's outcome: the copies' log lines, and the challenger's seconds per copy."""

    lines: bytearray
    seconds: list[float]


class ShadowScorer:
    def __init__(
        self,
        scorer: Scorer,
        schema: InputSchema,
        limit: int,
        log: PredictionLogWriter,
        metrics: ScorerMetrics,
    ) -> None:
        self.scorer = scorer
        self.schema = schema
        self.limit = limit
        self.log = log
        self.metrics = metrics
        self.labels = (CHALLENGER, scorer.model_version)
        self.waiting: deque[ShadowCopy] = deque()
        self.busy = False
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="shadow")
        self.failures = 0  # since the last warning
        self.warned_at = -WARNING_SECONDS

    def offer(self, copy: ShadowCopy) -> None:
        """Queue the copy for the challenger, or drop it (counted) when the queue is full."""
        if len(self.waiting) >= self.limit:
            self.metrics.observe_model(self.labels, DROPPED)
            return
        self.waiting.append(copy)
        if not self.busy:
            self.start()

    def start(self) -> None:
        """Hand the copies waiting (up to ``MAX_MERGED_ROWS`` rows, at least one) to the thread."""
        waiting = self.waiting
        copies = [waiting.popleft()]
        rows = copies[0].size
        while waiting and rows + waiting[0].size <= MAX_MERGED_ROWS:
            rows += waiting[0].size
            copies.append(waiting.popleft())
        self.busy = True
        future = asyncio.get_running_loop().run_in_executor(self.executor, self.score, copies)
        future.add_done_callback(lambda done: self.scored(copies, done))

    def score(self, copies: list[ShadowCopy]) -> list[Scored | BaseException]:
        """In the shadow thread: the copies scored and their lines written."""
        outcomes = self.score_copies(copies)
        lines = [outcome.lines for outcome in outcomes if isinstance(outcome, Scored)]
        if lines:
            try:
                self.log.append(lines[0] if len(lines) == 1 else b"".join(lines))
            except ClientError as error:  # said, not raised: no request waits for these lines
                logger.error("shadow lines not written: %s", error.message)
        return outcomes

    def score_copies(self, copies: list[ShadowCopy]) -> list[Scored | BaseException]:
        """The copies scored together, or each alone if that fails."""
        try:
            return [self.score_together(copies)]
        except Exception as error:
            if len(copies) == 1:
                return [error]
        outcomes: list[Scored | BaseException] = []
        for copy in copies:
            try:
                outcomes.append(self.score_together([copy]))
            except Exception as error:
                outcomes.append(error)
        return outcomes

    def score_together(self, copies: list[ShadowCopy]) -> Scored:
        """One challenger call for the copies, and their log lines."""
        started = time.perf_counter()
        prediction = self.scorer.predict(model_feed(self.schema, [c.columns for c in copies]))
        seconds = time.perf_counter() - started
        lines, start, latencies = bytearray(), 0, []
        for copy in copies:
            rows = prediction.rows(start, start + copy.size)
            start += copy.size
            latency = copy.checked_seconds + seconds
            lines += log_lines(self.scored_batch(copy, rows, latency))
            latencies.append(latency)
        return Scored(lines, latencies)

    def scored_batch(self, copy: ShadowCopy, rows: Prediction, latency: float) -> ScoredBatch:
        return ScoredBatch(
            copy.received,
            copy.request_id,
            self.scorer.model_version,
            copy.inputs,
            rows,
            None if self.scorer.regression else self.scorer.classes,
            latency,
            CHALLENGER,
            shadow=True,
        )

    def scored(self, copies: list[ShadowCopy], done: asyncio.Future[list[Any]]) -> None:
        """On the loop: count the outcomes, start on what waits meanwhile."""
        self.busy = False
        if done.cancelled():
            return
        error = done.exception()
        outcomes = [error] if error is not None else done.result()
        for outcome in outcomes:
            if isinstance(outcome, Scored):
                for seconds in outcome.seconds:
                    self.metrics.observe_model(self.labels, OK, seconds)
                continue
            self.report_failure(outcome)
        failed = len(copies) - sum(len(o.seconds) for o in outcomes if isinstance(o, Scored))
        for _ in range(failed):
            self.metrics.observe_model(self.labels, ERROR)
        if self.waiting:
            self.start()

    def report_failure(self, error: BaseException) -> None:
        """A failed copy in the scorer's log: the first, then at most one a minute."""
        self.failures += 1
        now = time.monotonic()
        if now - self.warned_at < WARNING_SECONDS:
            return
        logger.warning(
            "shadow challenger %s failed on %d copies since the last warning (counted in "
            "scorer_model_requests_total); the last: %s",
            self.labels[1],
            self.failures,
            error,
        )
        self.failures, self.warned_at = 0, now

    async def drain(self, timeout: float) -> None:
        """Score what waits (at most ``timeout`` seconds); what is left then is dropped."""
        deadline = time.monotonic() + timeout
        while (self.busy or self.waiting) and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        if self.waiting or self.busy:
            left = len(self.waiting)
            logger.warning("shutting down: %d shadow copies left unscored", left)
            for _ in range(left):
                self.metrics.observe_model(self.labels, DROPPED)
            self.waiting.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)
