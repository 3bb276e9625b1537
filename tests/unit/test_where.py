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
        # arithmetic is allowed since issue 25 (`amount > 3 * 100`); a list still is not
        ("[amount] == 2", "a list is only allowed after `in`"),
        ("amount // 2 > 2", "operator // is not allowed"),
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


@pytest.mark.parametrize(
    ("text", "row", "expected"),
    [
        ("is_international == false", {"is_international": False}, True),
        ("is_international == true", {"is_international": False}, False),
        ("is_international != true and amount > 1", {"is_international": False, "amount": 2}, True),
        ("category == null", {"category": None}, False),  # null compares false, as in SQL
        ("category != null", {"category": "a"}, False),
        ("category in ['a', null]", {"category": "a"}, True),
        ("true", {}, True),
        ("not false and channel == 'web'", {"channel": "web"}, True),
    ],
)
def test_yaml_spellings_true_false_null_are_literals(text: str, row: dict, expected: bool) -> None:
    expr = parse_where(text, COLUMNS)
    assert expr.evaluate_row(row) is expected
    assert expr.columns <= COLUMNS
    python = text.replace("false", "False").replace("true", "True").replace("null", "None")
    assert expr.evaluate_row(row) is parse_where(python, COLUMNS).evaluate_row(row)


def test_a_column_named_like_a_yaml_literal_is_refused_as_ambiguous() -> None:
    columns = COLUMNS | {"true"}
    with pytest.raises(WhereError, match=r"'true' is both a column of the source and"):
        parse_where("is_international == true", columns)
    # the Python spelling stays the literal, and other columns are unaffected
    assert parse_where("is_international == True", columns).columns == {"is_international"}


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("not " * 500 + "is_international", "nested"),
        ("not " * 1_000 + "is_international", "characters"),
        ("not " * 10_000 + "is_international", "characters"),
        ("(" * 1_000 + "is_international" + ")" * 1_000, "nested"),
        ("amount == " + "-" * 1_000 + "1", "nested"),
        (" or ".join(["amount == 1"] * 20_000), "characters"),
        (" or ".join(f"amount > {i}" for i in range(200)), "terms"),
        ("category in [" + ", ".join(["'x'"] * 600) + "]", "terms"),
    ],
)
def test_oversized_where_is_refused_naming_the_limit(text: str, limit: str) -> None:
    with pytest.raises(WhereError, match=r"longer than|more than") as caught:
        parse_where(text, COLUMNS)
    assert limit in str(caught.value)
    assert len(str(caught.value)) < 300  # one line, not the expression echoed back


def test_a_where_just_inside_the_limits_parses() -> None:
    nested = "not " * 20 + "is_international"
    assert parse_where(nested, COLUMNS).evaluate_row({"is_international": True}) is True
    terms = " or ".join(f"amount == {i}" for i in range(100))
    assert parse_where(terms, COLUMNS).evaluate_row({"amount": 99}) is True
