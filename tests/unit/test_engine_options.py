"""`training-set` and `parity` take the same --engine and --master, checked before any
work: an engine that does not exist, or a Spark master without the Spark engine, is one
red line and exit code 1."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from feature_service.cli.main import app
from feature_service.offline.engines import check_engine
from feature_service.requests import RequestError

COMMANDS = {
    "training-set": ["training-set", "-e", "rows.parquet", "-o", "out.parquet"],
    "parity": ["parity"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unknown_engine_is_named_with_the_known_ones(command: str) -> None:
    result = CliRunner().invoke(app, [*COMMANDS[command], "--engine", "duckdb"])
    assert result.exit_code == 1
    assert "unknown engine 'duckdb': use local or spark" in result.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_spark_master_needs_the_spark_engine(command: str) -> None:
    result = CliRunner().invoke(app, [*COMMANDS[command], "--master", "local[2]"])
    assert result.exit_code == 1
    assert "--master is for --engine spark" in result.output


def test_the_sdk_and_parity_name_engines_alike() -> None:
    assert check_engine("local") == "local"
    with pytest.raises(RequestError, match="use local or spark"):
        check_engine("Spark")
