"""generate --label / --labels: candidates ranked by their point-in-time association
with a label (`autofe.ranking`), on the shipped card transactions and their fraud label
(`definitions/generate_sample.py`).

The held-out check is a plain logistic regression trained on the kept features, on the
earlier 70% of the labelled transactions, scored on the later 30%: on the shipped
sample, and on a fresh sample from the same generator (another seed) that the ranking
never saw.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from feature_service.autofe.dfs import Candidate
from feature_service.autofe.plan import GenerateOptions, generate
from feature_service.autofe.ranking import label_rows_from_column, point_in_time_values
from feature_service.autofe.sampling import Sample, read_sample
from feature_service.autofe.types import profile_columns
from feature_service.cli.main import app
from tests.unit.test_autofe import card_sample

ROOT = Path(__file__).resolve().parents[2]
TRANSACTIONS = ROOT / "definitions" / "sample" / "transactions.jsonl"
sys.path.insert(0, str(ROOT / "definitions"))
from generate_sample import generate_events, write_events  # noqa: E402

WINDOWS = [3600, 86400]


def held_out_auc(kept: list[Candidate], sample: Sample) -> float:
    """AUC on the later 30% of a logistic regression fitted on the earlier 70%."""
    profile = profile_columns(
        sample.frame, ["customer_id"], "ts", absent=sample.absent, label="is_fraud"
    )
    rows = label_rows_from_column(sample.frame, profile, "is_fraud")
    rows = rows.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
    y = rows["label"].astype(int).to_numpy()
    x = point_in_time_values(kept, sample.frame, profile, rows).astype(float).fillna(0.0)
    x = np.sign(x) * np.log1p(np.abs(x))  # counts and amounts are heavy-tailed
    split = int(len(rows) * 0.7)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x[:split], y[:split])
    return float(roc_auc_score(y[split:], model.predict_proba(x[split:])[:, 1]))


def test_label_ranking_beats_the_unranked_selection_of_the_same_size(tmp_path: Path) -> None:
    sample = read_sample(TRANSACTIONS)
    ranked = generate(
        sample,
        GenerateOptions(
            entities=["customer_id"], timestamp="ts", windows=WINDOWS, max_features=6,
            label="is_fraud",
        ),
    )  # fmt: skip
    plain = generate(
        sample,
        GenerateOptions(entities=["customer_id"], timestamp="ts", windows=WINDOWS, max_features=6),
    )
    assert len(ranked.kept) == len(plain.kept) == 6
    assert ranked.ranking is not None
    assert (ranked.ranking.rows, ranked.ranking.positives) == (4985, 249)
    names = {c.name for c in ranked.kept}
    assert "is_international_true_count_1d" in names  # the label's strongest cause
    assert not any("is_fraud" in (c.column or "") + (c.where or "") for c in ranked.kept)
    write_events(generate_events(5000, seed=8), tmp_path / "fresh.jsonl")
    fresh = read_sample(tmp_path / "fresh.jsonl")
    for data in (sample, fresh):
        with_label, without = held_out_auc(ranked.kept, data), held_out_auc(plain.kept, data)
        print(f"{data.origin}: held-out AUC ranked {with_label:.3f}, unranked {without:.3f}")
        assert with_label > without + 0.02


def test_a_numeric_label_is_ranked_by_rank_correlation_and_is_never_a_feature() -> None:
    options = GenerateOptions(
        entities=["customer_id"], timestamp="ts", windows=[86400], max_features=3,
        label="amount", cutoff_rows=0,
    )  # fmt: skip
    generated = generate(read_sample(TRANSACTIONS), options)
    assert generated.ranking is not None and generated.ranking.metric == "|Spearman|"
    assert generated.profile.column("amount").kind == "label"
    assert all(c.column != "amount" for c in (d.candidate for d in generated.decisions))
    scores = [d.score for d in generated.decisions if d.kept]
    assert len(scores) == 3 and all(s is not None and 0 <= s <= 1 for s in scores)


def test_a_map_of_the_most_frequent_values_is_scored_by_the_label_rate_of_its_keys() -> None:
    """Customers who mostly buy travel are the fraudulent ones: their most frequent
    categories (`frequent_k`, a map) rank the later labels, scored by the earlier rows'
    label rate of the same keys."""
    rng = np.random.default_rng(2)
    n, categories = 4000, ["grocery", "fuel", "travel", "online"]
    favourite = rng.integers(4, size=200)
    customers = rng.integers(200, size=n)
    usual = rng.random(n) < 0.8
    chosen = np.where(usual, favourite[customers], rng.integers(4, size=n))
    risky = favourite[customers] == 2
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{c:03d}" for c in customers],
            "ts": 1_790_000_000.0 + np.sort(rng.uniform(0, 3 * 86400, n)),
            "category": [categories[c] for c in chosen],
            "is_fraud": rng.random(n) < np.where(risky, 0.5, 0.02),
        }
    )
    options = GenerateOptions(
        entities=["customer_id"], timestamp="ts", windows=[86400], label="is_fraud",
        cutoff_rows=0,
    )  # fmt: skip
    generated = generate(Sample(frame, "made up"), options)
    scores = {d.candidate.name: d.score for d in generated.decisions}
    assert scores["category_top3_1d"] is not None and scores["category_top3_1d"] > 0.7
    assert scores["category_top3_1d"] > scores["count_1d"]  # what, not how many


def test_the_customers_per_device_rank_first_when_shared_devices_are_the_fraud(
    tmp_path: Path,
) -> None:
    card_sample(tmp_path / "cards.jsonl")
    sample = read_sample(tmp_path / "cards.jsonl")
    rng = np.random.default_rng(0)
    ring = sample.frame["device_id"].str.startswith("ring").to_numpy()
    frame = sample.frame.assign(is_fraud=ring & (rng.random(len(ring)) < 0.5))
    options = GenerateOptions(
        entities=["customer_id"], timestamp="ts", windows=WINDOWS, max_features=6,
        label="is_fraud",
    )  # fmt: skip
    generated = generate(Sample(frame, "cards"), options)
    best = max(generated.decisions, key=lambda d: d.score or 0.0)
    assert (best.candidate.entity_column, best.candidate.column) == ("device_id", "customer_id")
    assert best.kept and best.score is not None and best.score > 0.9
    # label rows of customers alone (a --labels file) cannot rank the device's view
    rows = label_rows_from_column(frame, generated.profile, "is_fraud")[
        ["customer_id", "event_timestamp", "label"]
    ]
    plain = replace(options, label=None)
    by_customer = generate(Sample(frame, "cards"), plain, labels=rows)
    reasons = {d.reason for d in by_customer.decisions if d.candidate.entity_column == "device_id"}
    assert "not ranked: the label rows have no device_id" in reasons
    assert all(d.candidate.entity_column == "customer_id" for d in by_customer.decisions if d.kept)


def test_a_label_row_sees_only_the_events_before_it() -> None:
    sample = read_sample(TRANSACTIONS)
    profile = profile_columns(
        sample.frame, ["customer_id"], "ts", absent=sample.absent, label="is_fraud"
    )
    rows = label_rows_from_column(sample.frame, profile, "is_fraud")
    count = Candidate("count_1d", "customer_id", "count", None, 86400, None, "frequency", "", None)
    values = point_in_time_values([count], sample.frame, profile, rows)["count_1d"]
    first = ~rows.duplicated("customer_id").to_numpy()  # each customer's first event
    # (in time order up to the few out-of-order ones: those see their later neighbours)
    assert (values.to_numpy()[first] == 0).mean() > 0.95
    assert values.max() < sample.frame["customer_id"].value_counts().max()


def run(*args: str, tmp_path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, list(args), env={"FS_STORES_DIR": str(tmp_path / "stores"), "COLUMNS": "200"}
    )
    return result.exit_code, result.output


def test_labels_file_ranks_the_views_of_several_entities_together(tmp_path: Path) -> None:
    frame = read_sample(TRANSACTIONS).frame.dropna(subset=["customer_id", "is_fraud"])
    labels = frame[["customer_id", "merchant_id", "ts", "is_fraud"]].rename(
        columns={"ts": "event_timestamp", "is_fraud": "label"}
    )
    labels.to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "ranked.yaml"
    code, text = run(
        "generate", "--events", str(TRANSACTIONS), "--entity", "customer_id",
        "--entity", "merchant_id", "--timestamp", "ts", "--windows", "1h,1d",
        "--labels", str(tmp_path / "labels.csv"),
        "--max-features", "5", "-o", str(out), "-d", str(tmp_path / "none"), tmp_path=tmp_path,
    )  # fmt: skip
    assert code == 0, text
    assert "kept 5 of" in text
    assert "ranked by AUC against 'label'" in text
    written = out.read_text()
    assert "# Ranked by their association with the label 'label'" in written
    assert "#   is_fraud: not used:" not in written  # a column of the events, never read
    assert written.count("      - name: ") == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "chargeback"], "error: label column 'chargeback' is not in the sample"),
        (
            ["--label", "is_fraud", "--labels", "x.csv"],
            "error: give the label as one of --label COLUMN or --labels FILE",
        ),
        (["--label", "category"], "error: label 'category' must be binary (two values)"),
    ],
)
def test_bad_labels_are_one_clear_error_line(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = run(
        "generate", "--events", str(TRANSACTIONS), "--entity", "customer_id",
        "--timestamp", "ts", "--windows", "1h", *args, "-o", str(tmp_path / "out.yaml"),
        "-d", str(tmp_path / "none"), tmp_path=tmp_path,
    )  # fmt: skip
    assert code == 1
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith(message), output
