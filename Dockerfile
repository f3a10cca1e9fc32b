# The production image: the scorer (default command) and the monitoring sidecar
# (`python -m mlops.monitor`), with only the `serve` and `monitor` extras, pinned by uv.lock, and the
# packaged model (/app/model: an init container copies it out when the image serves as a
# challenger beside another champion, deploy/k8s-challenger). Build it with `make image`
# (docs/deploy.md); it runs as a non-root user on a read-only root file system, writing only to the
# volume /var/log/mlops.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.8
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# An optional CA bundle for TLS-intercepting proxies comes in as a build secret: used for the
# downloads, never stored in a layer.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && pip install --no-cache-dir "uv==${UV_VERSION}"
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=secret,id=ca_bundle --mount=type=cache,target=/root/.cache/uv \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi \
    && uv sync --frozen --no-dev --no-editable --no-install-project --extra serve --extra monitor
COPY src ./src
RUN --mount=type=secret,id=ca_bundle --mount=type=cache,target=/root/.cache/uv \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi \
    && uv sync --frozen --no-dev --no-editable --extra serve --extra monitor

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 mlops \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin mlops \
    && mkdir -p /var/log/mlops \
    && chown 10001:10001 /var/log/mlops
COPY --from=builder /opt/venv /opt/venv
COPY models/package /app/model
# The sidecar's verdict thresholds for a champion and a challenger (docs/monitoring.md)
COPY deploy/rollout.yaml /app/deploy/rollout.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODEL_DIR=/app/model \
    PREDICTION_LOG=/var/log/mlops/predictions.jsonl \
    SCORER_HOST=0.0.0.0 \
    SCORER_PORT=8080 \
    SCORER_GRPC_PORT=8081 \
    MONITOR_HOST=0.0.0.0 \
    MONITOR_PORT=8090 \
    MONITOR_STATE_FILE=/var/log/mlops/monitor_state.json \
    MONITOR_FEEDBACK_LOG=/var/log/mlops/feedback.jsonl \
    MONITOR_LABEL_LOG=/var/log/mlops/labels.jsonl \
    MONITOR_SHIP_STATE_FILE=/var/log/mlops/ship_state.json \
    MONITOR_ROLLOUT_SETTINGS=/app/deploy/rollout.yaml \
    HEALTHCHECK_URL=http://127.0.0.1:8080/health/ready
VOLUME ["/var/log/mlops"]
WORKDIR /app
USER 10001:10001
# 8080: the scorer's HTTP (REST, V2, metrics); 8081: its gRPC (V2, grpc.health.v1); 8090: sidecar
EXPOSE 8080 8081 8090
# Python, not curl: the image has no HTTP client. The sidecar's container sets its own HEALTHCHECK_URL.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=2)"]
CMD ["python", "-m", "mlops.serve"]

# Labels last: a new commit changes only this metadata layer.
ARG PYTHON_IMAGE
ARG SOURCE=""
ARG REVISION=unknown
ARG VERSION=0.0.0
ARG CREATED=1970-01-01T00:00:00Z
ARG MODEL_NAME=unknown
ARG MODEL_VERSION=unknown
ARG MODEL_SHA256=unknown
LABEL org.opencontainers.image.title="mlops" \
      org.opencontainers.image.description="ONNX scoring service and monitoring sidecar" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}" \
      mlops.model.name="${MODEL_NAME}" \
      mlops.model.version="${MODEL_VERSION}" \
      mlops.model.sha256="${MODEL_SHA256}"
