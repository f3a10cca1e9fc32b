"""The committed gRPC code (``src/mlops/serve/grpc/*_pb2*``) is what grpcio-tools makes of the
committed proto today (``make grpc-stubs``), and the proto is the Open Inference Protocol's service:
its package, service, calls and field numbers are the wire contract the clients rely on."""

import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT
from mlops.serve.grpc import open_inference_pb2 as pb

PROTO = Path("mlops/serve/grpc/open_inference.proto")
GENERATED = ("open_inference_pb2.py", "open_inference_pb2.pyi", "open_inference_pb2_grpc.py")


def test_the_committed_stubs_are_generated_from_the_committed_proto(tmp_path: Path) -> None:
    source = PROJECT_ROOT / "src"
    command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{source}"]
    command += [f"--{kind}_out={tmp_path}" for kind in ("python", "pyi", "grpc_python")]
    subprocess.run([*command, str(source / PROTO)], check=True, capture_output=True)
    for name in GENERATED:
        fresh = (tmp_path / PROTO.parent / name).read_text()
        committed = (source / PROTO.parent / name).read_text()
        assert fresh == committed, f"{name} is stale: run `make grpc-stubs`"


def test_the_service_is_the_protocols() -> None:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert [method.name for method in service.methods] == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]
    request = pb.ModelInferRequest.DESCRIPTOR.fields_by_name
    numbers = {name: field.number for name, field in request.items()}
    assert numbers == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "inputs": 5,
        "outputs": 6,
        "raw_input_contents": 7,
    }
    response = pb.ModelInferResponse.DESCRIPTOR.fields_by_name
    assert response["raw_output_contents"].number == 6 and response["outputs"].number == 5
    contents = pb.InferTensorContents.DESCRIPTOR.fields_by_name
    assert (contents["fp32_contents"].number, contents["bytes_contents"].number) == (6, 8)
