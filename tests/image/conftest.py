"""Fixtures of the image tests (`make test-image`; plain `pytest` does not collect them,
see `norecursedirs` in pyproject.toml): the container engine, the built image, the
rendered manifests, and the figures the README quotes, printed at the end of the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.image.engine import ContainerEngine, NoEngine
from tests.kustomize import Doc, build

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("FS_IMAGE", "feature-service:0.1.0")
FIGURES: dict[str, str] = {}


@pytest.fixture(scope="session")
def engine() -> ContainerEngine:
    """podman or docker; a skip with the reason where none exists (a failure under CI)."""
    try:
        return ContainerEngine.find()
    except NoEngine as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def image(engine: ContainerEngine) -> str:
    """The tag `make image` built; the tests do not build it themselves."""
    if engine.run(["image", "inspect", IMAGE], check=False).returncode != 0:
        pytest.fail(f"image {IMAGE} not found: run `make image` first")
    return IMAGE


@pytest.fixture(scope="session")
def manifests() -> list[Doc]:
    """The dev overlay rendered (the prod overlay runs the same containers)."""
    return build(ROOT / "k8s" / "overlays" / "dev")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("image figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
