"""Small requests that arrive together are scored with one ONNX Runtime call.

Every ORT call has a fixed cost (converting inputs, dispatching a dozen graph nodes) that is far
larger than the work for one record. Under concurrency, the requests whose handlers run in the
same turn of the event loop are merged and scored on its next turn; a lone request waits only for
that turn (microseconds), no timer is involved. Each request still gets its own rows back, in its
own order.
"""

from __future__ import annotations

import asyncio

from mlops.serve.batches import ModelInput, model_feed
from mlops.serve.model import Prediction, Scorer
from mlops.serve.schema import InputSchema

MAX_MERGED_ROWS = 256  # a merged call blocks the event loop; keep it well under a millisecond


class MicroBatcher:
    def __init__(
        self, scorer: Scorer, schema: InputSchema, max_rows: int = MAX_MERGED_ROWS
    ) -> None:
        self.scorer = scorer
        self.schema = schema
        self.max_rows = max_rows
        self._waiting: list[tuple[ModelInput, asyncio.Future[Prediction]]] = []
        self._rows = 0
        self._scheduled = False

    def predict(self, batch: ModelInput) -> asyncio.Future[Prediction]:
        """The batch's prediction, scored with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        self._waiting.append((batch, future))
        self._rows += batch.size
        if self._rows >= self.max_rows:
            self.score_waiting()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.score_waiting)
        return future

    def score_waiting(self) -> None:
        self._scheduled = False
        waiting, self._waiting, self._rows = self._waiting, [], 0
        if not waiting:
            return
        try:
            feed = model_feed(self.schema, [batch.columns for batch, _ in waiting])
            prediction = self.scorer.predict(feed)
        except Exception as error:  # a fault of the model, not of a request: every request gets it
            for _, future in waiting:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for batch, future in waiting:
            if not future.done():  # a request whose client went away was cancelled
                future.set_result(prediction.rows(start, start + batch.size))
            start += batch.size
