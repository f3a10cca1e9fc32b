"""A GitOps MLOps template: a DVC pipeline, an ONNX scoring service and a monitoring sidecar.

Nothing is imported here on purpose: the scorer and the sidecar import only their own
sub-packages and ``mlops.core``, never the training stack (docs/architecture.md).
"""
