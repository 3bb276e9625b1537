"""The SDK's clients are closed: as a context manager, by `close()`, and at exit for a
store nobody closed; never an "Unclosed" warning (issue 21, item 20)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from feature_service.definitions import load_definitions
from feature_service.embedded import EmbeddedStack
from feature_service.stream.topics import ensure_topics
from tests.integration.running_up import ROOT, clean_env

pytestmark = pytest.mark.integration

SCRIPT = """
import gc, warnings
warnings.simplefilter("always")
from feature_service import FeatureStore
rows = {{"transaction_id": ["t1"], "customer_id": ["c1"], "merchant_id": ["m1"],
        "amount": [1.0], "category": ["food"], "channel": ["web"],
        "is_international": [False], "ts": [1793491317.2]}}
{body}
gc.collect()
print("done")
"""

BODIES = {
    "with": """
with FeatureStore() as store:
    assert store.push("transactions", rows) == 1
    store.get_online_features(["customer_txn:txn_count_1d"], [{"customer_id": "c1"}])
""",
    "close": """
store = FeatureStore()
store.push("transactions", rows)
store.get_online_features(["customer_txn:txn_count_1d"], [{"customer_id": "c1"}])
store.close()
store.close()  # twice is harmless
""",
    "forgotten": """
store = FeatureStore()
store.push("transactions", rows)
store.get_online_features(["customer_txn:txn_count_1d"], [{"customer_id": "c1"}])
""",
}


@pytest.mark.parametrize("how", sorted(BODIES))
def test_the_sdk_leaves_nothing_unclosed(how: str, stack: EmbeddedStack, tmp_path: Path) -> None:
    import asyncio

    asyncio.run(ensure_topics(stack.broker.bootstrap, load_definitions(ROOT / "definitions")))
    env = clean_env(
        FS_BROKER_URL=stack.broker.bootstrap,
        FS_REDIS_URL=stack.redis.url,
        FS_DEFINITIONS=str(ROOT / "definitions"),
        FS_STORES_DIR=str(tmp_path),
        PYTHONDEVMODE="1",  # ResourceWarning and asyncio's debug warnings on
    )
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(body=BODIES[how])],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert run.returncode == 0 and "done" in run.stdout, run.stderr
    assert "Unclosed" not in run.stderr and "ResourceWarning" not in run.stderr, run.stderr
    assert "Task was destroyed" not in run.stderr, run.stderr
