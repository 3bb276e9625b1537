# syntax=docker/dockerfile:1
# One image for the stream worker, the lookup API and the backfill job:
#   docker build -t feature-service:0.1.0 .
#   docker run --rm feature-service:0.1.0 --help
# Stage 1 builds wheels (compilers live only here); stage 2 is python:slim with the
# wheels installed into a venv, run as an unprivileged user on a read-only root fs.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY feature_service ./feature_service
# The `s3` extra brings s3fs for FS_OFFLINE_URI=s3://...
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip wheel --wheel-dir /wheels '.[s3]' \
    && /opt/venv/bin/pip install --no-index --find-links /wheels 'feature-service[s3]'

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="feature-service" \
      org.opencontainers.image.description="Streaming feature store: worker, lookup API, backfill" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FS_DEFINITIONS=/etc/feature-service/definitions \
    FS_STORES_DIR=/var/lib/feature-service \
    HOME=/tmp
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /etc/feature-service/definitions /var/lib/feature-service \
    && chown app:app /var/lib/feature-service
COPY --from=build /opt/venv /opt/venv
COPY --chown=app:app definitions/*.yaml /etc/feature-service/definitions/
USER 10001:10001
WORKDIR /var/lib/feature-service
EXPOSE 8000 9000
# The API answers /health/live while its process serves HTTP (the worker: port 9000).
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('FS_HEALTH_PORT', '8000') + '/health/live', timeout=2)"]
ENTRYPOINT ["feature-service"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
