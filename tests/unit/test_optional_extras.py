"""The worker, the API, the CLI and the SDK import without the optional extras
(`formats`, `spark`): the container image installs only `s3`, and a user of JSON sources
installs none. A package only an extra brings is blocked while they import."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = ["formats", "spark"]
# distribution name -> the module it provides, where they differ
MODULES = {"protobuf": "google.protobuf", "grpcio-tools": "grpc_tools", "setuptools": None}
SERVICES = [
    "feature_service.stream.worker",
    "feature_service.stream.backfill",
    "feature_service.api.app",
    "feature_service.cli.main",
    "feature_service.sdk",
]


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower()


def extras_only_modules() -> list[str]:
    """Modules of the packages that the extras bring and the base dependencies do not."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_name(r) for r in project["dependencies"]}
    optional = {_name(r) for extra in EXTRAS for r in project["optional-dependencies"][extra]}
    modules = [MODULES.get(name, name.replace("-", "_")) for name in sorted(optional - base)]
    return [module for module in modules if module is not None]


def test_the_services_import_without_the_optional_extras() -> None:
    blocked = extras_only_modules()
    assert "fastavro" in blocked and "pyspark" in blocked
    block = "; ".join(f"sys.modules[{name!r}] = None" for name in blocked)
    imports = "; ".join(f"import {module}" for module in SERVICES)
    ran = subprocess.run(
        [sys.executable, "-c", f"import sys; {block}; {imports}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, f"blocked {blocked}:\n{ran.stderr}"
