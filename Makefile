# The two commands: `make run` and `make test`. Both work from a fresh clone with only
# Python 3.11 and make: they create .venv and install the project into it first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

IMAGE ?= feature-service:0.1.0

.PHONY: install run test test-kafka lint typecheck unit integration clean chromium feast registry engine image test-image

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,formats,spark]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/feature-service up

lint: install
	$(BIN)/ruff check feature_service tests definitions benchmarks docs

typecheck: install
	$(BIN)/mypy feature_service

# The UI test drives Debian's chromium (tests/integration/test_ui_browser.py): installed
# here when missing, as root with apt-get; elsewhere that test skips (and fails if CI=true).
chromium:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  [ "$$(id -u)" != 0 ] || { echo "installing Debian's chromium for the browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  >/dev/null) || echo "warning: could not install chromium"; }

# Feast 0.67 in its own venv, outside the checkout (benchmarks/feast_env.py), for the
# Feast-client test (tests/integration/test_feast_client.py) and the benchmarks: created
# here on first use (a few minutes, once per machine) rather than inside the test.
feast: install
	@$(BIN)/python benchmarks/feast_env.py >/dev/null || echo "warning: could not create" \
	  "Feast's venv; tests/integration/test_feast_client.py will try again"

# Apicurio Registry (the embedded schema registry of the event-format tests), resolved
# with Maven into ~/.cache/feature-service on first use (~170 MB, once per machine) here
# rather than inside a test's time limit.
registry: install
	@$(BIN)/python -c "from feature_service.embedded.schema_registry import registry_jar; \
	  registry_jar()" || echo "warning: could not fetch Apicurio Registry;" \
	  "tests/integration/test_event_formats.py will try again"

test: lint typecheck chromium feast registry
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q

# The broker-facing tests (marker `broker`: every test using the session's `stack`) on a
# real Apache Kafka 4 broker (KRaft, one node per test process), its jars resolved with
# Maven on first use into ~/.cache/feature-service/. Needs Java 17+ and Maven.
test-kafka: install feast registry
	FS_TEST_BROKER=kafka $(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q -m broker \
	  --timeout 600 tests/integration

# The container image (README "Deploying"): podman, or docker where its daemon runs.
# Debian's podman, runc and debootstrap are installed here when missing, as root with
# apt-get; the local base image and the root file system it comes from are cached under
# ~/.cache/feature-service and in the engine's storage, outside the checkout.
engine:
	@docker info >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  [ "$$(id -u)" != 0 ] || { missing=""; for p in podman runc debootstrap; do \
	  command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; [ -z "$$missing" ] || { \
	  echo "installing Debian's$$missing for the image"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }; }

image: engine
	IMAGE=$(IMAGE) image/build.sh

# Runs the image's worker, API and backfill as k8s/ runs them (tests/image; not part of
# `make test`, which does not collect that folder).
test-image: install image
	FS_IMAGE=$(IMAGE) $(BIN)/python -m pytest -q tests/image

unit: install
	$(BIN)/python -m pytest -q tests/unit

integration: install
	$(BIN)/python -m pytest -q tests/integration

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
