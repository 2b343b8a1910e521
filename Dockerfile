# One image for the connector and for each stage service: the same `api-connector` program,
# started with different arguments (`run`, or `serve crd-puller|binder|object-syncer`).
#
#   docker build -t api-connector:0.1.0 .
#
# Build stage: turn the source into a wheel and install it with its dependencies into a
# virtualenv, so the runtime stage gets neither pip caches nor build tools.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY functions/ functions/
COPY connector/ connector/
# The wheel carries the Helm chart and the walkthrough (for `install` and `demo`).
COPY package/helm/api-connector/ package/helm/api-connector/
COPY examples/walkthrough/ examples/walkthrough/
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/api-connector \
 && /opt/api-connector/bin/pip install /wheels/*.whl

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="api-connector" \
      org.opencontainers.image.description="An API connector for Crossplane: the connector and its three stage services" \
      org.opencontainers.image.licenses="Apache-2.0"
# Same base image as the build stage, so the virtualenv's interpreter links stay valid.
COPY --from=build /opt/api-connector /opt/api-connector
# Bytecode was compiled at install time; the root filesystem is read-only in the cluster.
ENV PATH=/opt/api-connector/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Non-root (the "nonroot" uid of distroless images); the Helm chart runs it with the same uid.
USER 65532:65532
ENTRYPOINT ["api-connector"]
CMD ["--help"]
