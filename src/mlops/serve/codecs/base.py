"""The seam between a wire format and the data plane (after MLServer's ``RequestCodec``).

A codec knows one protocol's request and response shapes and nothing of the model's rules: it
turns a wire request into the typed batch every protocol shares (``Records`` or ``Columns``,
unchecked) plus what it needs to answer (its context), and a scored ``Result`` back into the
wire answer. The data plane (``mlops.serve.dataplane``) does the rest once for all of them: the
batch size limit, the checks against the signature, scoring, the prediction log, the metrics.

The wire request and answer are whatever the protocol's route reads and sends: parsed JSON in
and JSON bytes out for REST and V2 JSON. A protocol added later is one more codec with its own
types: V2 binary tensors would decode the raw body and the ``Inference-Header-Content-Length``
and answer the bytes with that header's value; gRPC would decode and answer its messages. The
data plane passes them through untouched, and no check is written again.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from mlops.serve.batches import Inputs, Result
from mlops.serve.errors import InputError

Context = TypeVar("Context")  # what a request leaves for its answer (V2: the id, the outputs)
Answer_co = TypeVar("Answer_co", covariant=True)  # the wire answer: bytes for the JSON protocols


class Codec(Protocol[Context, Answer_co]):
    """Decodes one protocol's requests and encodes its responses and input errors."""

    batch_name: str  # what the protocol calls a request's batch, in the size limit's errors

    def decode(self, body: object) -> tuple[Inputs, Context]:
        """The request's feature values, unchecked, and what ``encode`` needs of the request.
        InputError for a request the protocol does not allow (its shape, not its values)."""
        ...

    def encode(self, result: Result, context: Context) -> Answer_co:
        """The wire answer to the scored request."""
        ...

    def error_body(self, error: InputError) -> tuple[int, dict[str, Any]]:
        """The status and body the protocol answers for input the model cannot score."""
        ...
