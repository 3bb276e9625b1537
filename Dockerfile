# One image for the stream worker, the lookup API and the backfill job:
#   make image                       # podman or docker; see README "Deploying"
#   docker build -t feature-service:0.1.0 .
#   docker run --rm feature-service:0.1.0 --help
# Stage 1 installs the project into a venv; stage 2 is the same base with only that venv,
# run as an unprivileged user on a read-only root fs. BASE_IMAGE is any Debian bookworm
# with Python 3.11 and `python3 -m venv`: python:3.11-slim-bookworm where a registry is
# reachable, else the local debootstrap base of image/local-base.sh (`make image` picks).

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, in their own layer: a code change does not reinstall them (a stub
# package outside /src, so its build folder cannot shadow the real code). Every
# dependency ships a manylinux wheel for CPython 3.11, so no compiler is needed and
# --only-binary makes a missing wheel fail here instead of building from source. The
# optional `pip-ca` secret is a CA bundle for pip behind a TLS-inspecting proxy (never
# stored in a layer). The `s3` extra brings s3fs for FS_OFFLINE_URI=s3://...
COPY pyproject.toml /tmp/deps/
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && python3 -m venv /opt/venv \
    && mkdir /tmp/deps/feature_service \
    && touch /tmp/deps/README.md /tmp/deps/feature_service/__init__.py \
    && /opt/venv/bin/pip install --quiet --only-binary=:all: '/tmp/deps[s3]' \
    && /opt/venv/bin/pip uninstall --quiet --yes feature-service \
    && rm -rf /tmp/deps
COPY pyproject.toml README.md ./
COPY feature_service ./feature_service
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && /opt/venv/bin/pip install --quiet --no-deps .
# The runtime needs neither pip nor setuptools, nor the packages' own test suites, C
# headers, Cython sources or type stubs (about 150 MB together).
RUN /opt/venv/bin/pip uninstall --quiet --yes pip setuptools \
    && cd /opt/venv/lib/python3.11/site-packages \
    && find . -depth -type d \( -name tests -o -name include \) -exec rm -rf {} + \
    && find . -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.pxd' -o -name '*.pyx' \
       -o -name '*.pxi' -o -name '*.c' -o -name '*.cc' -o -name '*.cpp' -o -name '*.pyi' \) \
       -delete \
    && /opt/venv/bin/python -c "import feature_service.api.app, feature_service.stream.worker"

FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="feature-service" \
      org.opencontainers.image.description="Streaming feature store: worker, lookup API, backfill" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FS_DEFINITIONS=/etc/feature-service/definitions \
    FS_STORES_DIR=/var/lib/feature-service \
    FS_OFFLINE_URI=/var/lib/feature-service/offline \
    HOME=/tmp
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app \
    && mkdir -p /etc/feature-service/definitions /var/lib/feature-service \
    && chown app:app /var/lib/feature-service
COPY --from=build /opt/venv /opt/venv
COPY definitions/*.yaml /etc/feature-service/definitions/
USER 10001:10001
WORKDIR /var/lib/feature-service
VOLUME ["/tmp", "/var/lib/feature-service"]
EXPOSE 8000 9000
# The API answers /health/live while its process serves HTTP (the worker: port 9000).
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('FS_HEALTH_PORT', '8000') + '/health/live', timeout=2)"]
ENTRYPOINT ["feature-service"]
# The API as k8s/base/api.yaml runs it, one process (without --workers: one per core).
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "1"]
