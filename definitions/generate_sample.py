"""Generate seeded sample card transactions for `definitions/transactions.yaml`.

What it models
--------------
* **Time**: events over `--days` days from `--start`, with a diurnal rate in UTC (few
  events at night, peaks at lunch and in the early evening) and quieter weekends.
* **Who and where**: customers and merchants are Zipf-like skewed (a few busy cards and
  big merchants, a long tail of occasional ones). Every merchant has one category
  (grocery, restaurant, fuel, online, travel, entertainment, pharmacy, retail, cash);
  the mix of categories shifts with the hour (restaurants at lunch and dinner, online
  shopping late at night, no pharmacy at 3 am).
* **Channel** (pos / online / atm) follows the category: fuel is always pos, cash is
  always atm, travel is mostly online, restaurants are sometimes delivery apps.
* **Amounts** are heavy-tailed: lognormal per category times a per-customer spending
  level, rounded to cents; ATM withdrawals are round amounts.
* **International**: a few percent of transactions, mostly travel and online.
* **Fraud label** (`is_fraud`, what a chargeback later says about a transaction): drawn
  from the customer's own history *before* the transaction, as fraud shows in it: a
  burst of transactions in the hour before (velocity), card-not-present (online)
  transactions in that hour, and international transactions in the day before
  (`FRAUD_LOGIT`). About 5% of transactions (fraud is rarer in life; a sample of three
  days needs enough cases). It is drawn from its own random stream, so every other field
  is what it was without it; the shipped definitions do not read it (the worker ignores
  fields outside a source's schema); `feature-service generate --label is_fraud` ranks
  candidate features by it.
* **Stream defects**, as a consumer sees them:
  - ~1% out of order: delivered a few seconds to ~15 minutes after later events;
  - ~0.2% late: event time 20 days before its place in the stream, i.e. far behind the
    watermark (beyond the default allowed lateness of two longest windows, 14 days);
  - ~0.3% malformed: a line that is not JSON (a truncated write or a stray log line),
    an event without `customer_id`, or an `amount` that is a non-numeric string.

Rows are written in arrival order; apart from the defects that is timestamp order.
`ts` is epoch seconds as a float (millisecond precision). The same seed gives the same
file, byte for byte.

How to run
----------
    python definitions/generate_sample.py --events 5000 -o definitions/sample/transactions.jsonl

The output format follows the extension: `.jsonl`, `.csv` or `.parquet`. CSV keeps
every row (a non-JSON row is written as its raw line without quotes, so it has the wrong
number of fields but does not swallow the lines after it); Parquet has a typed schema, so
it leaves out the rows that cannot be typed (raw lines and non-numeric amounts) and says
so.

As a module::

    events = generate_events(n=1000, seed=1)
    write_events(events, Path("/tmp/tx.parquet"))
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

Event = dict[str, Any] | str
"""A generated row: an event mapping, or a raw line for a row that is not JSON."""

COLUMNS = (
    "transaction_id",
    "customer_id",
    "merchant_id",
    "amount",
    "category",
    "channel",
    "is_international",
    "ts",
    "is_fraud",
)
DEFAULT_START = "2026-11-01T00:00:00Z"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "sample" / "transactions.jsonl"

OUT_OF_ORDER_RATE = 0.01
LATE_RATE = 0.002
MALFORMED_RATE = 0.003
LATE_BY_S = 20 * 86400
DELAY_RANGE_S = (5.0, 900.0)

# category: (share of transactions, median amount, lognormal sigma, p(international))
CATEGORIES: dict[str, tuple[float, float, float, float]] = {
    "grocery": (0.24, 38.0, 0.70, 0.010),
    "restaurant": (0.22, 27.0, 0.60, 0.020),
    "fuel": (0.08, 48.0, 0.35, 0.010),
    "online": (0.16, 32.0, 0.90, 0.080),
    "travel": (0.04, 210.0, 0.90, 0.250),
    "entertainment": (0.07, 22.0, 0.70, 0.030),
    "pharmacy": (0.06, 18.0, 0.70, 0.005),
    "retail": (0.09, 55.0, 0.85, 0.020),
    "cash": (0.04, 0.0, 0.00, 0.030),
}
CATEGORY_NAMES = tuple(CATEGORIES)

CHANNELS: dict[str, dict[str, float]] = {
    "grocery": {"pos": 0.92, "online": 0.08},
    "restaurant": {"pos": 0.85, "online": 0.15},
    "fuel": {"pos": 1.0},
    "online": {"online": 1.0},
    "travel": {"online": 0.7, "pos": 0.3},
    "entertainment": {"online": 0.55, "pos": 0.45},
    "pharmacy": {"pos": 0.9, "online": 0.1},
    "retail": {"pos": 0.7, "online": 0.3},
    "cash": {"atm": 1.0},
}
ATM_AMOUNTS = (20, 40, 50, 60, 100, 150, 200, 300, 500)
ATM_WEIGHTS = (0.14, 0.16, 0.16, 0.1, 0.22, 0.06, 0.1, 0.04, 0.02)

# Relative event rate by hour of day (UTC), and by day of week (Monday first).
HOURLY_RATE = (
    0.25, 0.15, 0.10, 0.08, 0.08, 0.12, 0.30, 0.60, 0.90, 1.00, 1.10, 1.30,
    1.50, 1.30, 1.10, 1.10, 1.20, 1.40, 1.60, 1.50, 1.20, 0.90, 0.60, 0.40,
)  # fmt: skip
WEEKDAY_RATE = (1.0, 1.0, 1.0, 1.0, 1.1, 0.9, 0.8)

# How each category's share shifts with the hour: (first hour, last hour, multiplier).
HOUR_AFFINITY: dict[str, tuple[tuple[int, int, float], ...]] = {
    "grocery": ((0, 6, 0.2), (16, 19, 1.4), (22, 23, 0.4)),
    "restaurant": ((0, 6, 0.15), (7, 10, 0.7), (11, 13, 2.0), (14, 17, 0.7), (18, 21, 2.0)),
    "fuel": ((0, 5, 0.5), (6, 8, 1.5), (16, 18, 1.4)),
    "online": ((0, 5, 2.5), (20, 23, 1.8)),
    "entertainment": ((0, 2, 1.5), (6, 11, 0.4), (19, 23, 2.0)),
    "pharmacy": ((0, 7, 0.2), (22, 23, 0.3)),
    "retail": ((0, 8, 0.1), (10, 18, 1.3), (21, 23, 0.3)),
    "cash": ((0, 4, 1.5),),
}

NON_NUMERIC_AMOUNTS = ("N/A", "1.234,56", "USD 12.00", "twelve", "")

# The fraud label's log-odds: intercept, then per event of the customer's history before
# the transaction (each count capped): in the hour before, online ones in the hour
# before, international ones in the day before.
FRAUD_LOGIT = {"intercept": -4.6, "events_1h": 0.6, "online_1h": 0.9, "international_1d": 1.8}
FRAUD_CAPS = {"events_1h": 4, "online_1h": 3, "international_1d": 2}
FRAUD_STREAM = 24  # the label's own random stream (with the seed)


def parse_start(text: str | datetime) -> datetime:
    """The start time in UTC from an ISO-8601 string or datetime (naive means UTC)."""
    start = text if isinstance(text, datetime) else datetime.fromisoformat(text)
    if start.tzinfo is None:
        return start.replace(tzinfo=UTC)
    return start.astimezone(UTC)


def _zipf_weights(size: int, exponent: float, offset: float) -> np.ndarray:
    """Zipf-Mandelbrot probabilities 1 / (rank + offset) ** exponent over `size` ranks."""
    ranks = np.arange(1, size + 1, dtype=float)
    weights = 1.0 / (ranks + offset) ** exponent
    return weights / weights.sum()


def _category_by_hour() -> np.ndarray:
    """A 24 x categories matrix of cumulative category probabilities for each hour."""
    shares = np.array([CATEGORIES[c][0] for c in CATEGORY_NAMES])
    matrix = np.tile(shares, (24, 1))
    for j, name in enumerate(CATEGORY_NAMES):
        for first, last, factor in HOUR_AFFINITY.get(name, ()):
            matrix[first : last + 1, j] *= factor
    matrix /= matrix.sum(axis=1, keepdims=True)
    return np.cumsum(matrix, axis=1)


def _sample_times(rng: np.random.Generator, n: int, start: datetime, days: int) -> np.ndarray:
    """`n` sorted epoch seconds following the diurnal and weekly rate profile."""
    hours = days * 24
    weights = np.array(
        [
            HOURLY_RATE[t.hour] * WEEKDAY_RATE[t.weekday()]
            for t in (start + timedelta(hours=h) for h in range(hours))
        ]
    )
    bucket = rng.choice(hours, size=n, p=weights / weights.sum())
    seconds = bucket * 3600.0 + rng.uniform(0.0, 3600.0, size=n)
    return np.round(np.sort(start.timestamp() + seconds), 3)


def _assign_merchants(
    rng: np.random.Generator, merchants: int
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Each category's merchant ids (in popularity order) and Zipf weights over them."""
    if merchants < len(CATEGORY_NAMES):
        raise ValueError(f"need at least {len(CATEGORY_NAMES)} merchants, one per category")
    width = len(str(merchants))
    ids = [f"m{i:0{width}d}" for i in rng.permutation(merchants) + 1]
    shares = np.array([CATEGORIES[c][0] for c in CATEGORY_NAMES])
    # One merchant per category first, the rest in proportion to the category share.
    owner = list(range(len(CATEGORY_NAMES)))
    owner += list(rng.choice(len(CATEGORY_NAMES), size=merchants - len(owner), p=shares))
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    for j, name in enumerate(CATEGORY_NAMES):
        members = [mid for mid, k in zip(ids, owner, strict=True) if k == j]
        out[name] = (members, _zipf_weights(len(members), 1.1, 2.0))
    return out


def _transaction_ids(rng: np.random.Generator, n: int) -> list[str]:
    """`n` unique random-looking ids such as `tx5f3a9c01d2e4`."""
    seen: set[str] = set()
    ids: list[str] = []
    while len(ids) < n:
        for value in rng.integers(0, 2**48, size=n - len(ids), dtype=np.int64):
            tid = f"tx{int(value):012x}"
            if tid not in seen:
                seen.add(tid)
                ids.append(tid)
    return ids


def fraud_labels(
    seed: int,
    ts: np.ndarray,
    customer: np.ndarray,
    online: np.ndarray,
    international: np.ndarray,
) -> np.ndarray:
    """Whether each transaction is fraud, drawn from its customer's history before it.

    Counts of the customer's earlier transactions (strictly before `ts`) in the hour
    before, online ones in that hour and international ones in the day before set the
    log-odds (`FRAUD_LOGIT`); vectorised by sorting on (customer, time).
    """
    n = ts.size
    rng = np.random.default_rng([seed, FRAUD_STREAM])
    order = np.lexsort((ts, customer))
    # one sortable key per event: the customer, then the time within the sample
    key = customer[order] * 1e8 + (ts[order] - ts.min())
    first_at_t = np.searchsorted(key, key, side="left")

    def before(window_s: float, flags: np.ndarray | None) -> np.ndarray:
        start = np.searchsorted(key, key - window_s, side="left")
        if flags is None:
            return first_at_t - start
        total = np.concatenate(([0], np.cumsum(flags[order])))
        return total[first_at_t] - total[start]

    counts = {
        "events_1h": before(3600.0, None),
        "online_1h": before(3600.0, online),
        "international_1d": before(86400.0, international),
    }
    logit = np.full(n, FRAUD_LOGIT["intercept"])
    for name, count in counts.items():
        logit += FRAUD_LOGIT[name] * np.minimum(count, FRAUD_CAPS[name])
    fraud_sorted = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    out = np.empty(n, dtype=bool)
    out[order] = fraud_sorted
    return out


def _malformed(rng: np.random.Generator, event: dict[str, Any], kind: int) -> Event:
    """Spoil one event: not JSON (kind 0), no customer_id (1) or a non-numeric amount (2)."""
    if kind == 0:
        if rng.random() < 0.7:  # a write cut short
            line = json.dumps(event, separators=(",", ":"))
            return line[: int(rng.integers(10, len(line) - 10))]
        return (
            f"WARN producer retry transaction_id={event['transaction_id']} "
            f"customer_id={event['customer_id']} amount={event['amount']}"
        )
    spoiled = dict(event)
    if kind == 1:
        del spoiled["customer_id"]
    else:
        spoiled["amount"] = str(rng.choice(NON_NUMERIC_AMOUNTS))
    return spoiled


def generate_events(
    n: int = 5000,
    seed: int = 7,
    start: str | datetime = DEFAULT_START,
    days: int = 3,
    customers: int = 500,
    merchants: int = 150,
) -> list[Event]:
    """`n` sample transactions in arrival order, deterministic for a given seed.

    Well-formed and late rows are dicts with the columns of COLUMNS; malformed rows are
    dicts missing `customer_id` or with a string `amount`, or raw strings (not JSON).
    """
    if n < 0 or days < 1 or customers < 1:
        raise ValueError("need events >= 0, days >= 1 and customers >= 1")
    rng = np.random.default_rng(seed)
    start_dt = parse_start(start)

    ts = _sample_times(rng, n, start_dt, days)
    hour = (ts // 3600).astype(int) % 24  # UTC hour of day
    cum = _category_by_hour()[hour]
    cat_idx = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), len(CATEGORY_NAMES) - 1)

    width = len(str(customers))
    customer_ids = [f"c{i:0{width}d}" for i in rng.permutation(customers) + 1]
    customer_rank = rng.choice(customers, size=n, p=_zipf_weights(customers, 1.0, 20.0))
    spend_level = rng.lognormal(0.0, 0.35, size=customers)

    by_category = _assign_merchants(rng, merchants)
    merchant = np.empty(n, dtype=object)
    channel = np.empty(n, dtype=object)
    amount = np.empty(n, dtype=float)
    international = np.zeros(n, dtype=bool)
    for j, name in enumerate(CATEGORY_NAMES):
        idx = np.flatnonzero(cat_idx == j)
        if idx.size == 0:
            continue
        members, weights = by_category[name]
        merchant[idx] = np.array(members, dtype=object)[
            rng.choice(len(members), size=idx.size, p=weights)
        ]
        options = CHANNELS[name]
        channel[idx] = rng.choice(list(options), size=idx.size, p=list(options.values()))
        _, median, sigma, p_international = CATEGORIES[name]
        if name == "cash":
            amount[idx] = rng.choice(ATM_AMOUNTS, size=idx.size, p=ATM_WEIGHTS)
        else:
            level = spend_level[customer_rank[idx]]
            raw = rng.lognormal(math.log(median), sigma, size=idx.size) * level
            amount[idx] = np.maximum(np.round(raw, 2), 0.5)
        international[idx] = rng.random(idx.size) < p_international

    tx_ids = _transaction_ids(rng, n)
    events: list[dict[str, Any]] = [
        {
            "transaction_id": tx_ids[i],
            "customer_id": customer_ids[int(customer_rank[i])],
            "merchant_id": str(merchant[i]),
            "amount": float(amount[i]),
            "category": CATEGORY_NAMES[int(cat_idx[i])],
            "channel": str(channel[i]),
            "is_international": bool(international[i]),
            "ts": float(ts[i]),
        }
        for i in range(n)
    ]

    # Stream defects, on disjoint sets of events.
    order = rng.permutation(n)
    n_late = round(n * LATE_RATE)
    n_bad = round(n * MALFORMED_RATE)
    n_delayed = round(n * OUT_OF_ORDER_RATE)
    late = order[:n_late]
    bad = order[n_late : n_late + n_bad]
    delayed = order[n_late + n_bad : n_late + n_bad + n_delayed]

    # A delayed event arrives after at least the next clean event (so it is really out of
    # order), and otherwise a few seconds to minutes after its event time.
    arrival = ts.copy()
    low, high = DELAY_RANGE_S
    delay = np.exp(rng.uniform(math.log(low), math.log(high), size=delayed.size))
    clean = np.ones(n, dtype=bool)
    clean[order[: n_late + n_bad + n_delayed]] = False
    clean_ts = ts[clean]
    next_clean = np.searchsorted(clean_ts, ts[delayed], side="right")
    floor = np.where(
        next_clean < clean_ts.size, clean_ts[np.minimum(next_clean, clean_ts.size - 1)], 0
    )
    arrival[delayed] = np.maximum(ts[delayed] + delay, floor + 0.5)
    for i in late:
        events[i]["ts"] = round(events[i]["ts"] - LATE_BY_S, 3)
    rows: list[Event] = list(events)
    kinds = rng.permutation(np.arange(n_bad) % 3)
    for i, kind in zip(bad, kinds, strict=True):
        rows[i] = _malformed(rng, events[i], int(kind))
    # the label last (raw lines cut from a JSON event keep their old cut, without it)
    fraud = fraud_labels(seed, ts, customer_rank, channel == "online", international)
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            row["is_fraud"] = bool(fraud[i])

    return [rows[i] for i in np.argsort(arrival, kind="stable")]


def is_well_formed(row: Event) -> bool:
    """Whether a row is a complete event with a numeric amount and timestamp."""
    if not isinstance(row, dict) or any(column not in row for column in COLUMNS):
        return False
    return all(
        isinstance(row[c], (int, float)) and not isinstance(row[c], bool) for c in ("amount", "ts")
    )


def summarize(events: Sequence[Event], start: str | datetime = DEFAULT_START) -> dict[str, int]:
    """Counts of the stream defects in `events`, as a consumer reading them in order sees them.

    `late`: well-formed events whose ts is before `start`. `out_of_order`: other
    well-formed events whose ts is below the largest ts seen before them. `malformed`:
    everything else.
    """
    start_s = parse_start(start).timestamp()
    counts = {"rows": len(events), "well_formed": 0, "late": 0, "out_of_order": 0}
    counts["malformed"] = 0
    high = -math.inf
    for row in events:
        if not is_well_formed(row):
            counts["malformed"] += 1
            continue
        assert isinstance(row, dict)
        counts["well_formed"] += 1
        ts = float(row["ts"])
        if ts < start_s:
            counts["late"] += 1
        elif ts < high:
            counts["out_of_order"] += 1
        high = max(high, ts)
    return counts


def write_events(events: Sequence[Event], path: Path | str) -> None:
    """Write rows to `path` as JSON lines, CSV or Parquet, chosen by the extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open("w", encoding="utf-8", newline="\n") as out:
            for row in events:
                line = row if isinstance(row, str) else json.dumps(row, separators=(",", ":"))
                out.write(line + "\n")
    elif suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in events:
                if isinstance(row, str):
                    # Unquoted, so the broken row stays one bad line instead of opening
                    # a quoted field that swallows the rest of the file.
                    out.write(row.replace('"', "") + "\n")
                    continue
                writer.writerow([_csv_value(row.get(column)) for column in COLUMNS])
    elif suffix == ".parquet":
        _write_parquet(events, path)
    else:
        raise ValueError(f"unsupported extension {path.suffix!r}; use .jsonl, .csv or .parquet")


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def _write_parquet(events: Sequence[Event], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    kept = [
        row
        for row in events
        if isinstance(row, dict)
        and isinstance(row.get("amount"), (int, float))
        and not isinstance(row.get("amount"), bool)
    ]
    if len(kept) < len(events):
        print(
            f"parquet: left out {len(events) - len(kept)} rows that have no typed form "
            "(not JSON, or a non-numeric amount)",
            file=sys.stderr,
        )
    schema = pa.schema(
        [
            ("transaction_id", pa.string()),
            ("customer_id", pa.string()),
            ("merchant_id", pa.string()),
            ("amount", pa.float64()),
            ("category", pa.string()),
            ("channel", pa.string()),
            ("is_international", pa.bool_()),
            ("ts", pa.float64()),
            ("is_fraud", pa.bool_()),
        ]
    )
    table = pa.Table.from_pylist([{c: row.get(c) for c in COLUMNS} for row in kept], schema)
    pq.write_table(table, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate seeded sample card transactions (see the module docstring)."
    )
    parser.add_argument("--events", type=int, default=5000, help="rows to write (default 5000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--start", default=DEFAULT_START, help=f"first day, ISO-8601 (default {DEFAULT_START})"
    )
    parser.add_argument("--days", type=int, default=3, help="days covered (default 3)")
    parser.add_argument("--customers", type=int, default=500, help="customers (default 500)")
    parser.add_argument("--merchants", type=int, default=150, help="merchants (default 150)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="a .jsonl, .csv or .parquet file (default: definitions/sample/transactions.jsonl)",
    )
    args = parser.parse_args(argv)
    try:
        events = generate_events(
            args.events, args.seed, args.start, args.days, args.customers, args.merchants
        )
        write_events(events, args.output)
    except ValueError as exc:
        parser.error(str(exc))
    counts = summarize(events, args.start)
    print(
        f"wrote {counts['rows']} rows to {args.output}: {counts['late']} late, "
        f"{counts['out_of_order']} out of order, {counts['malformed']} malformed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
