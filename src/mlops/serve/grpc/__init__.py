"""The Open Inference Protocol V2 over gRPC: the protocol's proto, its generated message classes
and service stubs (committed; ``make grpc-stubs``), and the service on the scorer's data plane."""
