"""The definitions watcher reports a change once, and only definitions that load."""

from __future__ import annotations

import shutil
from pathlib import Path

from feature_service.definitions.watch import DefinitionsWatcher, definitions_fingerprint

ROOT = Path(__file__).resolve().parents[2]
EXTRA = """feature_views:
  - name: extra_view
    source: transactions
    entity: customer
    features:
      - {name: n_1d, aggregation: count, window: 1d}
"""


def test_a_valid_change_is_reported_once_and_a_broken_one_never(tmp_path: Path) -> None:
    shutil.copy(ROOT / "definitions" / "transactions.yaml", tmp_path)
    watcher = DefinitionsWatcher(tmp_path)
    assert watcher.poll() is None  # nothing changed

    (tmp_path / "extra.yaml").write_text(EXTRA)
    registry = watcher.poll()
    assert registry is not None and "extra_view" in registry.feature_views
    assert watcher.poll() is None  # reported once

    (tmp_path / "extra.yaml").write_text(EXTRA.replace("source: transactions", "source: nope"))
    assert watcher.poll() is None  # does not load: the running definitions stay
    (tmp_path / "notes.txt").write_text("not a definitions file")
    assert watcher.poll() is None

    (tmp_path / "extra.yaml").unlink()
    registry = watcher.poll()
    assert registry is not None and "extra_view" not in registry.feature_views


def test_fingerprint_follows_names_and_contents(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("entities: []\n")
    first = definitions_fingerprint(tmp_path)
    assert definitions_fingerprint(tmp_path) == first
    (tmp_path / "a.yaml").rename(tmp_path / "b.yaml")
    assert definitions_fingerprint(tmp_path) != first
    assert definitions_fingerprint(tmp_path / "missing") != first


def test_refused_names_the_broken_file_until_the_files_load_again(tmp_path: Path) -> None:
    shutil.copy(ROOT / "definitions" / "transactions.yaml", tmp_path)
    watcher = DefinitionsWatcher(tmp_path)
    assert watcher.refused == ""

    (tmp_path / "extra.yaml").write_text(EXTRA.replace("source: transactions", "source: nope"))
    assert watcher.poll() is None
    lines = watcher.refused.splitlines()
    assert lines[0] == f"definitions under {tmp_path} do not load; running the previous ones"
    assert lines[1].startswith(f"{tmp_path / 'extra.yaml'}: feature_views[0].source: unknown")
    assert watcher.poll() is None and watcher.refused  # still refused while unchanged

    (tmp_path / "extra.yaml").write_text(EXTRA)
    assert watcher.poll() is not None
    assert watcher.refused == ""
