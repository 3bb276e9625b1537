"""feature-service generate on data it has never seen: types, DFS candidates, pruning, files.

Samples: the bundled card transactions, a clickstream made up here, and featuretools'
own mock customer data. What is checked: the columns are read as what they are, the
file validates (alone or with the deployed definitions), pruning says why it dropped
what it dropped, and bad input is one clear error line.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import featuretools as ft
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from feature_service.autofe.dfs import Candidate
from feature_service.autofe.plan import GenerateOptions, generate
from feature_service.autofe.pruning import prune
from feature_service.autofe.ranking import point_in_time_values
from feature_service.autofe.render import render_definitions
from feature_service.autofe.sampling import read_sample
from feature_service.autofe.types import accepted_events, profile_columns
from feature_service.cli.apply import existing_files, registry_with
from feature_service.cli.main import app
from feature_service.definitions import load_definitions

ROOT = Path(__file__).resolve().parents[2]
TRANSACTIONS = ROOT / "definitions" / "sample" / "transactions.jsonl"
PAGES = ["home", "search", "product", "cart", "checkout", "help"]
WORDS = ["red", "running", "shoes", "size", "blue", "jacket", "cheap", "gift", "for", "kids"]


def clickstream(path: Path, n: int = 2000, seed: int = 5) -> None:
    """Page views: users in sessions, pages, devices, dwell times, searches, referrers."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-03-02T08:00:00Z")
    seconds = np.sort(rng.uniform(0, 2 * 86400, n))
    with path.open("w") as out:
        for i, s in enumerate(seconds):
            user = int(rng.zipf(1.6)) % 60
            event = {
                "event_id": f"e{i:06d}-{rng.integers(1 << 30):x}",
                "user_id": f"u{user:03d}",
                "session_id": f"s{user:03d}-{int(s // 1800)}",
                "page": PAGES[int(rng.integers(len(PAGES)))],
                "device": ["mobile", "desktop", "tablet"][user % 3],
                "dwell_s": None if rng.random() < 0.05 else round(float(rng.exponential(30)), 2),
                "logged_in": bool(rng.random() < 0.6),
                "search_query": " ".join(rng.choice(WORDS, int(rng.integers(3, 7)))) + f" {i}",
                "ts": (start + pd.Timedelta(seconds=float(s))).isoformat().replace("+00:00", "Z"),
            }
            if event["page"] == "checkout":
                event["coupon"] = ["SPRING", "WELCOME", "VIP"][int(rng.integers(3))]
            if i % 250 == 7:
                del event["logged_in"]  # an old client without the field: refused
            out.write(json.dumps(event) + "\n")


def test_clickstream_columns_are_read_as_what_they_are(tmp_path: Path) -> None:
    clickstream(tmp_path / "clicks.jsonl")
    sample = read_sample(tmp_path / "clicks.jsonl")
    profile = profile_columns(sample.frame, ["user_id"], None, absent=sample.absent)
    kinds = {c.name: (c.kind, c.wire_type) for c in profile.columns}
    assert profile.timestamp == "ts"
    assert kinds == {
        "event_id": ("skip", "string"),
        "user_id": ("entity", "string"),
        "session_id": ("id", "string"),
        "page": ("categorical", "string"),
        "device": ("categorical", "string"),
        "dwell_s": ("numeric", "float"),
        "logged_in": ("boolean", "bool"),
        "search_query": ("skip", "string"),
        "ts": ("timestamp", "timestamp"),
        "coupon": ("skip", None),
    }
    assert profile.column("search_query").reason == "free text"
    assert profile.column("coupon").reason.startswith("missing from 8")
    assert set(profile.column("page").interesting_values) <= set(PAGES)
    assert len(profile.column("page").interesting_values) == 5
    assert "search_query" not in profile.schema and "event_id" not in profile.schema


def test_clickstream_definitions_validate_alone_and_describe_every_feature(
    tmp_path: Path,
) -> None:
    clickstream(tmp_path / "clicks.jsonl")
    options = GenerateOptions(entities=["user_id"], timestamp=None, windows=[3600, 86400])
    generated = generate(read_sample(tmp_path / "clicks.jsonl"), options)
    assert len(generated.events) == 2000 - 8  # without logged_in: the worker refuses them
    assert generated.profile.timestamp == "ts"
    text = render_definitions(generated, "feature-service generate ...")
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "clicks.yaml").write_text(text)
    registry = load_definitions(tmp_path / "defs")
    assert list(registry.entities) == ["user"]
    source = registry.sources["clicks"]
    assert (source.topic, source.key, source.timestamp_field) == ("clicks", "user_id", "ts")
    view = registry.feature_views["user_clicks"]
    names = view.feature_names  # the aggregations, then the derived features (shares)
    assert len(names) == len(set(names)) == len(generated.kept)
    assert all(f.description.endswith(".") for f in (*view.features, *view.derived))
    by_name = {f.name: f for f in view.features}
    assert by_name["secs_since_last_event"].aggregation == "time_since_last"
    assert by_name["count_1h"].window_s == 3600
    assert by_name["dwell_s_sum_1h"].column == "dwell_s"
    assert by_name["session_id_count_distinct_1d"].aggregation == "count_distinct"
    per_value = [f for f in view.features if f.where is not None and "page ==" in f.where.text]
    assert per_value and all(f.aggregation == "count" for f in per_value)
    assert by_name["logged_in_true_count_1h"].where is not None
    # recency beyond the last event: the first event, and the gaps between events
    assert by_name["secs_since_first_event"].aggregation == "time_since_first"
    assert by_name["secs_since_first_event"].window_s is None
    assert by_name["mean_gap_1h"].aggregation == "mean_gap"
    assert by_name["std_gap_1d"].aggregation == "std_gap"
    # a quantity's percentiles, a category's most frequent values, with their parameters
    p90 = by_name["dwell_s_p90_1h"]
    assert (p90.aggregation, p90.column, dict(p90.params)) == (
        "approx_percentile", "dwell_s", {"percentile": 0.9}
    )  # fmt: skip
    top = by_name["page_top3_1d"]
    assert (top.aggregation, top.column, dict(top.params)) == ("frequent_k", "page", {"k": 3})
    assert "most frequent page values" in top.description
    # shares of the per-value counts: derived features over counts written with them
    shares = {d.name: d for d in view.derived}
    share = shares["page_home_share_1h"]
    assert set(share.expression.inputs) == {"page_home_count_1h", "count_1h"}
    assert share.description == "Share of the user's events with page = 'home' in the last hour."
    assert all(set(d.expression.inputs) <= set(by_name) for d in view.derived)
    assert "# Distribution: the most frequent values" in text
    assert '        expression: "page_home_count_1h / count_1h"' in text
    assert "        k: 3\n" in text and "        percentile: 0.9\n" in text
    # a user always uses one device here: distinct devices is constant, and said so
    reasons = {d.candidate.name: d.reason for d in generated.decisions}
    assert reasons["device_count_distinct_1d"] == "constant (1) on the sample"
    assert "# Columns as read from the sample:" in text
    assert "#   search_query: not used: free text" in text


def test_transactions_fit_in_with_the_deployed_definitions(tmp_path: Path) -> None:
    deployed = existing_files(ROOT / "definitions")
    existing = load_definitions(ROOT / "definitions")
    options = GenerateOptions(
        entities=["customer_id", "merchant_id"], timestamp="ts", windows=[3600, 86400]
    )
    generated = generate(read_sample(TRANSACTIONS), options, existing)
    assert generated.sample.skipped == 5  # the lines that are not JSON
    # the 5 amounts 'N/A' and 5 events without customer_id are refused, as by the worker
    assert len(generated.events) == 4985
    naming = generated.naming
    assert (naming.source, naming.new_source, naming.new_entities) == ("transactions", False, ())
    assert naming.entity_names == {"customer_id": "customer", "merchant_id": "merchant"}
    text = render_definitions(generated, "feature-service generate ...")
    assert "\nsources:" not in text and "\nentities:" not in text
    registry = registry_with(text, str(tmp_path / "generated.yaml"), deployed)
    assert {"customer_txn", "customer_transactions", "merchant_transactions"} <= set(
        registry.feature_views
    )
    view = registry.feature_views["customer_transactions"]
    wheres = {f.where.text for f in view.features if f.where is not None}
    assert "is_international == True" in wheres
    assert any(w.startswith("category == ") for w in wheres)


def card_sample(path: Path, n: int = 6000, seed: int = 11) -> None:
    """Card payments with a device and an IP address on each: most customers pay from a
    device of their own; a ring of 60 shares 4 devices; IPs are many (thousands)."""
    rng = np.random.default_rng(seed)
    start = 1_790_000_000.0
    seconds = np.sort(rng.uniform(0, 3 * 86400, n))
    with path.open("w") as out:
        for i, s in enumerate(seconds):
            customer = int(rng.integers(300))
            ring = customer < 60
            device = f"ring{customer % 4}" if ring else f"d{customer:03d}"
            event = {
                "payment_id": f"p{i:06d}",
                "customer_id": f"c{customer:03d}",
                "device_id": device,
                "ip_address": f"10.{rng.integers(16)}.{rng.integers(16)}.{rng.integers(20)}",
                "amount": round(float(rng.lognormal(3, 1)), 2),
                "category": ["grocery", "fuel", "travel", "online"][int(rng.integers(4))],
                "ts": start + float(s),
            }
            out.write(json.dumps(event) + "\n")


def test_a_device_column_gets_a_view_of_the_distinct_customers_per_device(
    tmp_path: Path,
) -> None:
    card_sample(tmp_path / "cards.jsonl")
    options = GenerateOptions(entities=["customer_id"], timestamp="ts", windows=[3600, 86400])
    generated = generate(read_sample(tmp_path / "cards.jsonl"), options)
    profile = generated.profile
    assert profile.links == ("device_id", "ip_address")
    assert profile.column("device_id").reason.endswith("a view of its own")
    assert (profile.column("device_id").role, profile.column("ip_address").role) == (
        "identifier", "many_values"
    )  # fmt: skip
    assert not profile.column("category").link  # four values: not a device
    naming = generated.naming
    assert naming.entity_names == {
        "customer_id": "customer", "device_id": "device", "ip_address": "ip_address"
    }  # fmt: skip
    assert naming.view_names["device_id"] == "device_cards"
    candidates = [d.candidate for d in generated.decisions]
    # the link views count the customers; the customer's view counts the devices, and
    # the IPs (thousands in the sample) approximately
    links = {(c.entity_column, c.aggregation, c.column) for c in candidates}
    assert ("device_id", "count_distinct", "customer_id") in links
    assert ("ip_address", "count_distinct", "customer_id") in links
    assert ("customer_id", "count_distinct", "device_id") in links
    assert ("customer_id", "approx_count_distinct", "ip_address") in links
    assert ("customer_id", "count_distinct", "ip_address") not in links
    assert {c.aggregation for c in candidates if c.entity_column != "customer_id"} == {
        "count_distinct"
    }
    kept = generated.kept_of("device_id")
    assert [c.name for c in kept] == [
        "customer_id_count_distinct_1h",
        "customer_id_count_distinct_1d",
    ]
    assert kept[1].description == (
        "Different customer_id values among the device's events in the last day."
    )

    # the file loads alone; the ring's devices are seen with many customers, everyone
    # else's with one
    text = render_definitions(generated, "feature-service generate ...")
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "cards.yaml").write_text(text)
    registry = load_definitions(tmp_path / "defs")
    view = registry.feature_views["device_cards"]
    assert view.entity.join_keys == ("device_id",)
    assert view.feature_names == [c.name for c in kept]
    assert "distinct customer_id values seen with each device" in view.description
    # beside the shipped definitions: their customer entity, a new device one
    every = replace(options, cutoff_rows=0)  # every candidate: the longest file
    beside = generate(
        read_sample(tmp_path / "cards.jsonl"), every, load_definitions(ROOT / "definitions")
    )
    assert beside.naming.new_entities == ("device_id", "ip_address")
    text_beside = render_definitions(beside, "feature-service generate ...")
    deployed = existing_files(ROOT / "definitions")
    together = registry_with(text_beside, str(tmp_path / "cards.yaml"), deployed)
    assert {"device_cards", "ip_address_cards", "customer_cards", "customer_txn"} <= set(
        together.feature_views
    )
    devices = ["ring0", "ring3", "d100", "d299"]
    rows = pd.DataFrame({"device_id": devices, "event_timestamp": 1_790_000_000.0 + 3 * 86400})
    values = point_in_time_values(kept, generated.sample.frame, profile, rows)
    distinct = dict(zip(devices, values["customer_id_count_distinct_1d"], strict=True))
    assert distinct["ring0"] > 10 and distinct["ring3"] > 10
    assert distinct["d100"] == distinct["d299"] == 1


def test_new_families_are_proposed_only_where_the_sample_has_their_columns() -> None:
    sample = read_sample(TRANSACTIONS)
    options = GenerateOptions(
        entities=["customer_id"], timestamp="ts", windows=[3600, 86400], cutoff_rows=0
    )
    candidates = [d.candidate for d in generate(sample, options).decisions]
    by_kind: dict[str | None, set[str | None]] = {}
    for c in candidates:
        by_kind.setdefault(c.aggregation, set()).add(c.column)
    assert by_kind["time_since_first"] == by_kind["mean_gap"] == by_kind["std_gap"] == {None}
    assert by_kind["approx_percentile"] == {"amount"}  # the one quantity, not an id
    assert by_kind["frequent_k"] == {"category", "channel"}  # categoricals, not merchant_id
    assert "approx_count_distinct" not in by_kind  # no column of over a thousand values
    assert {c.entity_column for c in candidates} == {"customer_id"}  # no device column
    # every per-value count has its share, reading it and the window's count
    counted = {c.name: c for c in candidates if c.group == "per-value"}
    shares = [c for c in candidates if c.expression is not None]
    assert len(shares) == len(counted) > 0
    for share in shares:
        per_value, total = share.inputs
        assert per_value.name in counted and total.name == f"count_{share.name[-2:]}"
        assert share.expression == f"{per_value.name} / {total.name}"

    # events with a flag and nothing else: recency and counts, no amounts, no categories
    frame = sample.frame[["customer_id", "ts", "is_international"]]
    bare = generate(replace(sample, frame=frame, absent={}), options)
    kinds = {d.candidate.aggregation for d in bare.decisions}
    assert {"time_since_first", "mean_gap", "std_gap", "count"} <= kinds
    assert not kinds & {"approx_percentile", "frequent_k", "sum"}
    assert not any(d.candidate.expression for d in bare.decisions)


def test_every_proposal_is_listed_under_a_group_and_named_apart() -> None:
    from feature_service.aggregation.registry import proposed
    from feature_service.autofe.dfs import GROUP_TITLES, GROUPS

    assert set(GROUPS) == set(GROUP_TITLES)
    seen = set()
    for agg, proposal in proposed():
        assert proposal.group in GROUPS, (agg.name, proposal.group)
        key = (proposal.name or agg.name, frozenset(proposal.roles))
        assert key not in seen, key
        seen.add(key)
        text = proposal.describe("amount", "customer", "day")
        assert text.endswith(".") and "{" not in text, text


def test_featuretools_mock_customers_with_max_features(tmp_path: Path) -> None:
    ft.demo.load_mock_customer(return_single_table=True).to_parquet(tmp_path / "mock.parquet")
    options = GenerateOptions(
        entities=["customer_id"], timestamp="transaction_time", windows=[3600], max_features=8
    )
    generated = generate(read_sample(tmp_path / "mock.parquet"), options)
    kinds = {c.name: c.kind for c in generated.profile.columns}
    assert kinds["session_start"] == kinds["join_date"] == "skip"  # other datetimes
    assert kinds["product_id"] == "categorical" and kinds["session_id"] == "id"
    assert generated.profile.schema["customer_id"] == "int"
    assert generated.profile.schema["product_id"] == "int"
    assert len(generated.kept) == 8
    reasons = {d.candidate.name: d.reason for d in generated.decisions}
    assert reasons["zip_code_count_distinct_1h"] == "constant (1) on the sample"
    assert "over --max-features 8" in reasons.values()
    assert [c.name for c in generated.kept][:2] == ["secs_since_last_event", "count_1h"]
    text = render_definitions(generated, "feature-service generate ...")
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "mock.yaml").write_text(text)
    view = load_definitions(tmp_path / "defs").feature_views["customer_mock"]
    assert len(view.features) == 8


def test_pruning_keeps_the_first_of_duplicates_and_cuts_round_robin() -> None:
    def cand(name: str, entity: str) -> Candidate:
        return Candidate(name, entity, "count", None, 3600, None, "frequency", "", None)

    candidates = [cand(n, "a") for n in ("a1", "a2", "a3", "a4")] + [
        cand(n, "b") for n in ("b1", "b2")
    ]
    rows = np.arange(10.0)
    matrices = {
        "a": pd.DataFrame({"a1": rows, "a2": -3 * rows + 1, "a3": [np.nan] * 10, "a4": rows**2}),
        "b": pd.DataFrame({"b1": rows % 3, "b2": np.sin(rows)}),
    }
    decisions = {d.candidate.name: (d.kept, d.reason) for d in prune(candidates, matrices, 3)}
    assert decisions == {
        "a1": (True, "kept"),
        "a2": (False, "near-duplicate of a1 (|corr| 1.000)"),
        "a3": (False, "always null on the sample"),
        "a4": (True, "kept"),
        "b1": (True, "kept"),
        "b2": (False, "over --max-features 3"),
    }


def run(*args: str, tmp_path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, list(args), env={"FS_STORES_DIR": str(tmp_path / "stores"), "COLUMNS": "200"}
    )
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("name", "content", "args", "message"),
    [
        (
            "no_time.csv",
            "user_id,amount\nu1,2.5\nu2,3\n",
            ["--entity", "user_id"],
            "error: no timestamp column found in the sample; name it with --timestamp COL",
        ),
        (
            "broken.parquet",
            "this is not parquet",
            ["--entity", "user_id", "--timestamp", "ts"],
            "error: {path}: not a readable Parquet file (",
        ),
        (
            "events.jsonl",
            '{"user": "u1", "ts": 1.5}\n',
            ["--entity", "user_id", "--timestamp", "ts"],
            "error: entity column 'user_id' is not in the sample (columns: user, ts)",
        ),
        (
            "empty.jsonl",
            "",
            ["--entity", "user_id", "--timestamp", "ts"],
            "error: {path}: the sample is empty (no events)",
        ),
        (
            "times.jsonl",
            '{"user_id": "u1", "ts": "yesterday"}\n',
            ["--entity", "user_id", "--timestamp", "ts"],
            "error: timestamp column 'ts' is not epoch seconds or ISO-8601 (e.g. 'yesterday')",
        ),
        (
            "windows.jsonl",
            '{"user_id": "u1", "ts": 1.5}\n',
            ["--entity", "user_id", "--windows", "1h,90s"],
            "error: --windows: 90s is not a multiple of its hop 1m; use a window that is",
        ),
    ],
)
def test_bad_input_is_one_clear_error_line(
    tmp_path: Path, name: str, content: str, args: list[str], message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    code, output = run(
        "generate", "--events", str(path), *args, "-o", str(tmp_path / "out.yaml"),
        "-d", str(tmp_path / "none"), tmp_path=tmp_path,
    )  # fmt: skip
    assert code == 1
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith(message.format(path=path)), output
    assert not (tmp_path / "out.yaml").exists()


def test_generate_apply_installs_the_file_in_the_definitions_folder(tmp_path: Path) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    shutil.copy(ROOT / "definitions" / "transactions.yaml", folder)
    output = tmp_path / "out" / "generated.yaml"
    code, text = run(
        "generate", "--events", str(TRANSACTIONS), "--entity", "customer_id",
        "--timestamp", "ts", "--windows", "1h", "--max-features", "6",
        "-o", str(output), "-d", str(folder), "--apply", tmp_path=tmp_path,
    )  # fmt: skip
    assert code == 0, text
    assert "kept 6 of" in text
    assert f"applied {folder / 'generated.yaml'}: customer_transactions" in text
    assert "feature-service backfill --view customer_transactions" in text
    assert (folder / "generated.yaml").read_text() == output.read_text()
    registry = load_definitions(folder)
    assert len(registry.feature_views["customer_transactions"].features) == 6
    assert "customer_txn" in registry.feature_views
    # generating again to the deployed file replaces it rather than clashing with it
    code, text = run(
        "generate", "--events", str(TRANSACTIONS), "--entity", "customer_id",
        "--timestamp", "ts", "--windows", "1h", "--max-features", "4",
        "-o", str(folder / "generated.yaml"), "-d", str(folder), tmp_path=tmp_path,
    )  # fmt: skip
    assert code == 0, text
    assert len(load_definitions(folder).feature_views["customer_transactions"].features) == 4


def test_a_few_events_without_a_usable_time_are_refused_like_the_worker_does() -> None:
    times: list[object] = [1_790_000_000.0 + i for i in range(18)]
    times += [None, "2026-11-01T00:00:00+01:00", "soon", 1_790_000_100]
    frame = pd.DataFrame({"user_id": [f"u{i % 3}" for i in range(22)], "ts": times})
    profile = profile_columns(frame, ["user_id"], "ts")
    assert profile.event_ts[19] == 1_793_487_600.0  # the offset is honoured
    assert accepted_events(frame, profile).tolist() == [True] * 18 + [False, True, False, True]
    with pytest.raises(ValueError, match=r"'ts' is not epoch seconds or ISO-8601 \(e.g. 'soon'\)"):
        profile_columns(frame.assign(ts=["soon"] * 11 + times[:11]), ["user_id"], "ts")


def test_apply_refuses_a_file_that_clashes_with_the_deployed_definitions(tmp_path: Path) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    shutil.copy(ROOT / "definitions" / "transactions.yaml", folder)
    clash = tmp_path / "clash.yaml"
    clash.write_text(
        "feature_views:\n  - name: customer_txn\n    source: transactions\n"
        "    entity: customer\n    features:\n      - {name: n, aggregation: count}\n"
    )
    code, output = run("apply", str(clash), "-d", str(folder), tmp_path=tmp_path)
    assert code == 1
    assert output.strip() == (
        f"error: {folder / 'clash.yaml'}: feature_views[0].name: duplicate feature view "
        f"'customer_txn' (first defined in {folder / 'transactions.yaml'})"
    )
    assert not (folder / "clash.yaml").exists()
