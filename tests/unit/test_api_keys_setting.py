"""`FS_API_KEYS` (keys and their scopes) and `FS_MAX_BODY_BYTES` as settings: the forms
accepted, the refusals at start, and the default cap against the largest lookup."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from feature_service.core.config import Settings, load_settings


def test_keys_with_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_API_KEYS", '{"k1": ["read"], "k2": ["read", "write"], "k3": ["admin"]}')
    assert Settings().api_keys == {
        "k1": frozenset({"read"}),
        "k2": frozenset({"read", "write"}),
        "k3": frozenset({"admin"}),
    }


def test_a_plain_list_of_keys_grants_read_and_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_API_KEYS", '["k1", "k2"]')
    both = frozenset({"read", "write"})
    assert Settings().api_keys == {"k1": both, "k2": both}
    assert Settings(api_keys=["k3"]).api_keys == {"k3": both}  # given in code, as tests do
    monkeypatch.delenv("FS_API_KEYS")
    assert Settings().api_keys == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            '{"secret-1": ["read"], "secret-2": ["read", "wrtie"]}',
            "FS_API_KEYS: the 2nd key has an unknown scope 'wrtie' (scopes: admin, read, write)",
        ),
        ('{"secret-1": []}', "FS_API_KEYS: the 1st key has no scope (scopes: admin, read, write)"),
        ('{"secret-1": "read"}', "FS_API_KEYS: the 1st key's scopes must be a list"),
        ('"secret-1"', "FS_API_KEYS: a JSON object of key -> scopes or a list of keys"),
        ('["secret-1", ""]', "FS_API_KEYS: the 2nd key is empty"),
        ("{secret-1", "FS_API_KEYS: not JSON"),
    ],
)
def test_bad_keys_are_refused_in_one_line_that_shows_no_key(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("FS_API_KEYS", value)
    with pytest.raises(ValueError) as refused:
        load_settings()
    assert str(refused.value) == message
    assert "secret" not in str(refused.value)


def test_serve_refuses_to_start_on_an_unknown_scope() -> None:
    env = {**os.environ, "FS_API_KEYS": json.dumps({"secret-1": ["reed"]})}
    done = subprocess.run(
        [sys.executable, "-m", "feature_service.cli.main", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        "error: FS_API_KEYS: the 1st key has an unknown scope 'reed' (scopes: admin, read, write)"
    )


def test_the_default_body_cap_holds_the_largest_requests_and_no_more() -> None:
    cap = Settings().max_body_bytes
    assert cap == 8 * 1024 * 1024
    rows, columns = Settings().max_entities_per_request, 100
    assert rows == 1000
    # a lookup of 1,000 entities (64-character ids) and 100 features (64-character names)
    lookup = {
        "features": [f"{'v' * 31}:{i:032d}" for i in range(columns)],
        "entities": {"customer_id": [f"{i:064d}" for i in range(rows)]},
    }
    # a push of 1,000 rows x 100 columns, each value 64 characters of JSON
    push = {
        "push_source_name": "transactions",
        "df": {f"column_{c:03d}": [f"{r:062d}" for r in range(rows)] for c in range(columns)},
    }
    assert len(json.dumps(lookup)) < cap // 50
    assert len(json.dumps(push)) < cap
