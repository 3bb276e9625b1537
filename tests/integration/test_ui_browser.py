"""The web UI in a real browser (Debian's chromium, headless, driven by playwright) on a
real stack: the numbers it shows are the API's numbers.

`make test` installs chromium where it can (apt-get as root). Without it this test is
skipped on a developer machine, and fails under CI=true: CI must run it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from playwright.sync_api import sync_playwright

from feature_service.embedded import EmbeddedStack
from feature_service.embedded.processes import port_open
from tests.conditions import wait_for
from tests.integration.streaming import make_events, produce, start_worker, stats, write_definitions

pytestmark = pytest.mark.integration
N_EVENTS = 900
API_KEY = "ui-test-key"
KEYED = {"X-API-Key": API_KEY}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Debian's chromium (FS_CHROMIUM overrides); skip without it, fail in CI."""
    path = os.environ.get("FS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        message = f"no chromium at {path}: `apt-get install chromium` (make test does, as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_ui_shows_the_apis_values_for_an_entity_and_the_pipeline_counters(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    browser_path = chromium_path()
    definitions, registry = write_definitions(tmp_path)
    view = next(iter(registry.feature_views.values()))
    events = make_events(N_EVENTS, seed=13, customers=30, bad_every=150)
    client = redis.Redis.from_url(stack.redis.url)
    offline = tmp_path / "offline"
    worker = start_worker(stack, definitions, offline)
    api_process = stack.api_process(None, definitions)
    assert api_process.env is not None
    api_process.env["FS_OFFLINE_URI"] = str(offline)  # the worker's log, for history plots
    api_process.env["FS_API_KEYS"] = json.dumps([API_KEY])
    url = stack.api_url
    assert url is not None
    api_process.start()
    try:
        produce(stack, registry, events)
        wait_for(
            lambda: sum(stats(client, registry).get(k, 0) for k in ("events", "dlq")) >= N_EVENTS,
            120,
            "events",
            worker,
        )
        counters = stats(client, registry)
        host, port = url.removeprefix("http://").split(":")
        wait_for(lambda: port_open(host, int(port)), 60, "the API", api_process)

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 900})
                page.set_default_timeout(60_000)
                page.goto(url)
                # The API wants a key: the page says so, and works once it is typed in.
                page.wait_for_selector("#banner:has-text('needs a key')")
                page.fill("#api-key", API_KEY)
                page.press("#api-key", "Enter")
                page.wait_for_selector("body[data-ready=true]")
                assert page.is_hidden("#banner")

                # Pipeline counters: what the worker wrote to Redis.
                row = f'#pipeline tr[data-view="{view.name}"]'
                page.wait_for_selector(f'{row} td[data-field="workers"][data-value="1"]')
                shown = {
                    field: json.loads(
                        page.get_attribute(f'{row} td[data-field="{field}"]', "data-value")
                        or "null"
                    )
                    for field in ("events", "dlq", "late", "lag")
                }
                assert shown == {
                    "events": counters["events"],
                    "dlq": counters["dlq"],
                    "late": counters.get(f"late:{view.name}", 0),
                    "lag": 0,
                }

                # Entity lookup, as of the newest event: every feature equals the API's.
                page.click("#as-of-newest")
                as_of = page.input_value("#as-of")
                assert as_of
                entity = "c1"
                page.select_option("#lookup-key", "customer_id")
                page.fill("#lookup-id", entity)
                page.click("#lookup-form button")
                page.wait_for_selector("#lookup-result td.value")
                cells = page.query_selector_all("#lookup-result td.value")
                ui_values = {
                    c.get_attribute("data-feature"): (
                        json.loads(c.get_attribute("data-value") or ""),
                        c.inner_text(),
                    )
                    for c in cells
                }
                api_values = online(url, view, [entity], as_of)
                assert set(ui_values) == set(api_values)
                for ref, (value, text) in ui_values.items():
                    assert value == api_values[ref][0], ref
                    if isinstance(value, int):
                        assert text == str(value), ref
                assert any(v for v, _ in ui_values.values())  # not an empty entity

                # History of a feature from the offline log: the plotted points are the
                # API's point-in-time values (POST /get-historical-features) at those times.
                feature = f"{view.name}:amount_sum_1d"
                page.select_option("#history-feature", feature)
                page.click("#history-form button")
                page.wait_for_selector(
                    f'#history-chart[data-feature="{feature}"] circle.point', state="attached"
                )
                assert_history_is_the_apis(page, url, entity, feature)

                # Distribution across entities: the bars count the API's non-null values.
                feature = f"{view.name}:amount_sum_1d"
                page.select_option("#distribution-feature", feature)
                page.click("#distribution-form button")
                page.wait_for_selector(f'#distribution-chart[data-feature="{feature}"] rect.bar')
                bars = page.query_selector_all("#distribution-chart rect.bar")
                counted = sum(int(b.get_attribute("data-count") or 0) for b in bars)
                sample = httpx.get(
                    f"{url}/feature-views/{view.name}/entities?limit=500", headers=KEYED
                ).json()
                values = online(url, view, sample["entities"], as_of, [feature])
                assert counted == sum(v is not None for v in values[feature])
                assert page.get_attribute("#distribution-chart", "data-entities") == str(
                    len(sample["entities"])
                )

                page.screenshot(path=str(tmp_path / "ui.png"), full_page=True)
            finally:
                browser.close()
        assert (tmp_path / "ui.png").stat().st_size > 10_000
    finally:
        api_process.stop()
        worker.stop()
        client.close()


def online(
    url: str, view: Any, entities: list[str], as_of: str, features: list[str] | None = None
) -> dict[str, list[Any]]:
    """`{view:feature: values}` from POST /get-online-features."""
    refs = features or [f"{view.name}:{f.name}" for f in view.features]
    response = httpx.post(
        f"{url}/get-online-features",
        json={
            "features": refs,
            "entities": {"customer_id": entities},
            "as_of": as_of,
            "full_feature_names": True,
        },
        headers=KEYED,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    names = body["metadata"]["feature_names"][1:]
    return {
        ref: column["values"]
        for ref, name, column in zip(refs, names, body["results"][1:], strict=True)
        if name == ref.replace(":", "__")
    }


def assert_history_is_the_apis(page: Any, url: str, entity: str, feature: str) -> None:
    points = [
        (
            float(c.get_attribute("data-ts") or "nan"),
            json.loads(c.get_attribute("data-value") or ""),
        )
        for c in page.query_selector_all("#history-chart circle.point")
    ]
    assert len(points) == 48
    history = httpx.post(
        f"{url}/get-historical-features",
        json={
            "features": [feature],
            "entities": {
                "customer_id": [entity] * len(points),
                "event_timestamp": [t for t, _ in points],
            },
        },
        headers=KEYED,
        timeout=30,
    )
    assert history.status_code == 200, history.text
    assert history.json()["columns"][feature.split(":")[1]] == [v for _, v in points]
    assert any(v is not None for _, v in points)
