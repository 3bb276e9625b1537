from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_service.definitions.where import WhereError, parse_where

COLUMNS = {"category", "amount", "is_international", "channel"}


@pytest.mark.parametrize(
    ("text", "row", "expected"),
    [
        ("category == 'grocery'", {"category": "grocery"}, True),
        ("category == 'grocery'", {"category": "fuel"}, False),
        ("amount > 500", {"amount": 500.0}, False),
        ("amount >= 500", {"amount": 500.0}, True),
        ("10 < amount <= 20", {"amount": 20}, True),
        (
            "category in ['a', 'b'] and not is_international",
            {"category": "b", "is_international": False},
            True,
        ),
        ("category not in ('a',)", {"category": None}, False),
        ("amount != 3", {"amount": None}, False),
        ("is_international or amount > -1", {"is_international": False, "amount": 0}, True),
    ],
)
def test_where_evaluates_rows_like_sql(text: str, row: dict, expected: bool) -> None:
    assert parse_where(text, COLUMNS).evaluate_row(row) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("category ==", "does not parse"),
        ("merchant == 'x'", "unknown column(s) merchant"),
        ("__import__('os').system('x')", "not allowed"),
        ("amount + 1 > 2", "not a column or a literal"),
        ("category is None", "operator Is is not allowed"),
    ],
)
def test_where_refuses_bad_expressions_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(WhereError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_where(text, COLUMNS)


values = st.one_of(st.none(), st.floats(allow_nan=True, width=32), st.integers(-5, 5))
categories = st.one_of(st.none(), st.sampled_from(["a", "b", "c"]))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(values, categories, st.booleans()), min_size=1, max_size=20),
    st.sampled_from(
        [
            "amount > 1",
            "amount != 2",
            "category in ['a', 'c'] or amount <= 0",
            "not (category == 'b') and is_international",
            "category not in ['a']",
            "-3 < amount < 3",
        ]
    ),
)
def test_vectorised_where_equals_row_by_row(rows: list, text: str) -> None:
    expr = parse_where(text, COLUMNS)
    amounts = np.array([np.nan if a is None else float(a) for a, _, _ in rows])
    columns = {
        "amount": amounts,
        "category": np.array([c for _, c, _ in rows], dtype=object),
        "is_international": np.array([b for _, _, b in rows]),
    }
    mask = expr.evaluate_columns(columns, len(rows))
    expected = [
        expr.evaluate_row({"amount": a, "category": c, "is_international": b}) for a, c, b in rows
    ]
    assert mask.tolist() == expected
