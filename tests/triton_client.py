"""Calls the scorer with NVIDIA's Triton Python client, as its users write them: default settings,
numpy arrays in, ``as_numpy`` out. Run as a child process by the client tests
(``tests/integration/test_serve_clients.py``):

    python tests/triton_client.py <http|grpc> < job.json  > answers.json

A child process because ``tritonclient.grpc`` registers the protocol's messages
(``inference.*``) in protobuf's default pool, as the scorer's own gRPC module does: the two cannot
be imported into one process (the test process imports the scorer's). The job names a target
(``host:port``), a model and a list of calls; each answer is the call's result or its error
(``{"error": {"status", "message"}}``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np


def client_module(protocol: str) -> Any:
    if protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    return module


def tensor(module: Any, name: str, values: list[Any]) -> Any:
    """A feature's column as users build it: strings as an object array (BYTES), numbers as
    float32 with NaN for a missing value (FP32), one row per record."""
    if any(isinstance(value, str) for value in values):
        array = np.array(values, dtype=object).reshape(-1, 1)
        datatype = "BYTES"
    else:
        array = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
        array = array.reshape(-1, 1)
        datatype = "FP32"
    infer_input = module.InferInput(name, list(array.shape), datatype)
    infer_input.set_data_from_numpy(array)
    return infer_input


def plain(value: Any) -> Any:
    """An output array as JSON: BYTES elements (bytes) decoded."""
    listed = value.tolist()
    if value.dtype == object:
        return [item.decode() if isinstance(item, bytes) else item for item in value.ravel()]
    return listed


def infer(client: Any, module: Any, call: dict[str, Any]) -> dict[str, Any]:
    inputs = [tensor(module, name, values) for name, values in call["columns"].items()]
    options = {key: call[key] for key in ("headers", "request_id", "model_version") if key in call}
    if "compression" in call:  # tritonclient.http's request_compression_algorithm
        options["request_compression_algorithm"] = call["compression"]
    outputs = None
    if "outputs" in call:  # [name, binary_data] pairs: the HTTP client's InferRequestedOutput
        outputs = [module.InferRequestedOutput(name, binary) for name, binary in call["outputs"]]
    result = client.infer(call["model"], inputs, outputs=outputs, **options)
    answer = result.get_response() if call.get("whole") else None
    if answer is not None and not isinstance(answer, dict):
        from google.protobuf.json_format import MessageToDict

        answer = MessageToDict(answer)
    return {
        "outputs": {name: plain(result.as_numpy(name)) for name in call["names"]},
        "response": answer,
    }


def run(client: Any, module: Any, call: dict[str, Any]) -> Any:
    kind, headers = call["call"], call.get("headers")
    if kind == "infer":
        return infer(client, module, call)
    if kind == "health":
        return {
            "live": client.is_server_live(headers=headers),
            "ready": client.is_server_ready(headers=headers),
            "model_ready": client.is_model_ready(call["model"], headers=headers),
        }
    if kind == "server_metadata":
        metadata = client.get_server_metadata(headers=headers)
        return metadata if isinstance(metadata, dict) else {"extensions": list(metadata.extensions)}
    if kind == "model_metadata":
        if module.__name__.endswith("grpc"):
            return client.get_model_metadata(call["model"], headers=headers, as_json=True)
        return client.get_model_metadata(call["model"], headers=headers)
    raise ValueError(f"unknown call {kind!r}")


def main() -> None:
    protocol = sys.argv[1]
    job = json.load(sys.stdin)
    module = client_module(protocol)
    client = module.InferenceServerClient(job["target"])
    answers = []
    for call in job["calls"]:
        try:
            answers.append(run(client, module, call))
        except module.InferenceServerException as error:
            answers.append({"error": {"status": error.status(), "message": error.message()}})
    client.close()
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
