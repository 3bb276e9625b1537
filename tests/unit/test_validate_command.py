"""`feature-service validate FILE` checks a file as `apply` would install it: together
with the deployed definitions (`--definitions`, by default those of a running `up`)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feature_service.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
NEW_VIEW = """feature_views:
  - name: international_txn
    source: transactions
    entity: customer
    features:
      - {name: intl_count_1d, aggregation: count, window: 1d, where: "is_international == true"}
"""


@pytest.fixture()
def beside_a_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory whose stores/stack.json describes a running `up` (this test
    process stands for it) with its definitions in `deployed/`; no FS_ settings."""
    for name in list(os.environ):
        if name.startswith("FS_"):
            monkeypatch.delenv(name)
    deployed = tmp_path / "deployed"
    deployed.mkdir()
    shutil.copy(ROOT / "definitions" / "transactions.yaml", deployed)
    (tmp_path / "stores").mkdir()
    stack = {"pid": os.getpid(), "definitions": str(deployed)}
    (tmp_path / "stores" / "stack.json").write_text(json.dumps(stack))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "new.yaml").write_text(NEW_VIEW)
    return deployed


def validate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", *args])
    return result.exit_code, result.output


def test_a_file_adding_a_view_over_a_deployed_source_validates_beside_a_stack(
    beside_a_stack: Path,
) -> None:
    code, output = validate("new.yaml")
    assert code == 0, output
    assert output.startswith("ok: 3 entities, 1 sources, 4 feature views")
    assert str(beside_a_stack) in output  # says what it was checked with


def test_definitions_option_names_the_deployed_folder(beside_a_stack: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(beside_a_stack, elsewhere)
    code, output = validate("new.yaml", "--definitions", str(elsewhere))
    assert code == 0, output
    assert str(elsewhere) in output


def test_a_file_clashing_with_the_deployed_definitions_is_refused(beside_a_stack: Path) -> None:
    clash = NEW_VIEW.replace("international_txn", "customer_txn")
    Path("clash.yaml").write_text(clash)
    code, output = validate("clash.yaml")
    assert code == 1
    assert "clash.yaml: feature_views[0].name: duplicate feature view 'customer_txn'" in output
    assert "Traceback" not in output


def test_a_file_replacing_a_deployed_one_of_its_name_is_checked_in_its_place(
    beside_a_stack: Path,
) -> None:
    edited = (beside_a_stack / "transactions.yaml").read_text().replace("ttl: 30d", "ttl: 60d")
    Path("transactions.yaml").write_text(edited)
    code, output = validate("transactions.yaml")
    assert code == 0, output
    assert output.startswith("ok: 3 entities, 1 sources, 3 feature views")


def test_alone_checks_the_file_on_its_own(beside_a_stack: Path) -> None:
    code, output = validate("new.yaml", "--alone")
    assert code == 1
    assert "unknown source 'transactions'" in output


def test_a_folder_is_checked_on_its_own(beside_a_stack: Path) -> None:
    code, output = validate(str(ROOT / "definitions"))
    assert code == 0, output
    assert output.startswith("ok: 3 entities, 1 sources, 3 feature views")
