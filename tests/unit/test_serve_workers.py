"""`feature-service serve`'s default number of processes: the CPU cores available to it;
the k8s API Deployment sets `--workers` to its CPU limit."""

from __future__ import annotations

import doctest
import math
import os
from pathlib import Path

import pytest

from feature_service.cli import main
from feature_service.cli.main import available_cpus
from tests.kustomize import build
from tests.unit.test_k8s_manifests import K8S, OVERLAYS, containers, one

API = "feature-service-api"


@pytest.mark.parametrize(
    ("cores", "cpu_max", "expected"),
    [
        (8, "max 100000", 8),  # cgroup v2 without a quota
        (8, "100000 100000", 1),  # a limit of 1 CPU
        (8, "50000 100000", 1),  # 500m: rounded up, at least 1
        (8, "150000 100000", 2),  # 1.5 CPUs
        (8, "200000 100000", 2),
        (8, "1000 100000", 1),  # 10m
        (2, "400000 100000", 2),  # a quota above the cores it may run on
        (3, "300000 50000", 3),  # another period: 6 CPUs' quota, 3 cores
        (8, "", 8),  # unreadable contents: the cores
        (8, "garbage 100000", 8),
    ],
)
def test_the_quota_caps_the_cores(tmp_path: Path, cores: int, cpu_max: str, expected: int) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max + "\n")
    assert available_cpus(path, cores=cores) == expected


def test_no_cgroup_file_leaves_the_cores(tmp_path: Path) -> None:
    assert available_cpus(tmp_path / "absent", cores=6) == 6
    assert available_cpus(tmp_path / "absent", cores=0) == 1


def test_by_default_the_cores_of_the_process_affinity(tmp_path: Path) -> None:
    assert available_cpus(tmp_path / "absent") == len(os.sched_getaffinity(0))
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


def test_the_docstring_example() -> None:
    (test,) = doctest.DocTestFinder().find(available_cpus, "available_cpus", globs=vars(main))
    result = doctest.DocTestRunner().run(test)
    assert result.failed == 0 and result.attempted == 1


def test_serve_runs_that_many_processes_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from feature_service.observability import logs

    monkeypatch.setattr(logs, "configure_logging", lambda level: None)  # keep pytest's
    runs: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append(options))
    monkeypatch.setattr(main, "available_cpus", lambda: 3)
    monkeypatch.setenv("FS_DEFINITIONS", str(Path(__file__).parents[2] / "definitions"))
    runner = CliRunner()
    for args, workers in (([], 3), (["--workers", "2"], 2)):
        result = runner.invoke(main.app, ["serve", "--port", "8123", *args])
        assert result.exit_code == 0, result.output
        assert runs.pop()["workers"] == workers
    result = runner.invoke(main.app, ["serve", "--workers", "0"])
    assert result.exit_code != 0 and not runs


def cpu_limit(value: str) -> float:
    """A Kubernetes CPU quantity ("1", "1.5", "500m") in CPUs."""
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_deployment_runs_as_many_processes_as_its_cpu_limit(overlay: str) -> None:
    """`--workers` explicit in the manifests, equal to what `serve` would find in the pod
    (its CPU limit, rounded up): one process per CPU the pod may use, none starved."""
    (container,) = containers(one(build(K8S / "overlays" / overlay), "Deployment", API))
    args = container["args"]
    assert args[0] == "serve" and "--workers" in args, f"{overlay}: --workers not explicit"
    workers = int(args[args.index("--workers") + 1])
    limit = cpu_limit(str(container["resources"]["limits"]["cpu"]))
    assert workers == max(1, math.ceil(limit)), f"{overlay}: {workers} processes, {limit} CPUs"
