"""`where` filters: an expression of the one expression language (`feature_service.
expressions`) over a source's columns, read as true or false for each event.

Comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`, chained), `and`, `or`,
`not`, parentheses, column names (a source's computed columns too), string / number /
boolean / null literals or lists of them, and since computed columns arrived arithmetic
and functions (`amount > 3 * 100`, `amount_usd > fee`). Nothing is ever `eval`ed. A
comparison involving a null value is false, as in SQL, and an event passes when the
expression is true (a null is false).

>>> w = parse_where("category == 'grocery' and amount > 10", {"category", "amount"})
>>> w.evaluate_row({"category": "grocery", "amount": 12.5})
True
>>> sorted(w.columns)
['amount', 'category']
>>> parse_where("amount > 3 * 100", {"amount": "float"}).evaluate_row({"amount": 301})
True

YAML's spellings of the literals are accepted beside Python's: `true`, `false` and
`null` (also `TRUE`, `FALSE`, `Null`, `NULL`) mean `True`, `False` and `None`, so
`ok == false` works as a YAML user writes it. A source column with one of those names
would make the word ambiguous: a filter using it is refused (not silently read one way),
and such a column cannot be used in a filter.

>>> parse_where("ok == false", {"ok"}).evaluate_row({"ok": False})
True

Limits (`expressions.MAX_CHARS`, `MAX_DEPTH`, `MAX_TERMS`), so that a filter can neither
crash the parser (a thousand nested `not` used to raise RecursionError) nor slow every
flush (20,000 `or` terms made a flush take 1.7 s).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

import numpy as np

from feature_service.expressions import (
    ANY,
    MAX_CHARS,
    MAX_DEPTH,
    MAX_TERMS,
    YAML_LITERALS,
    Expression,
    ExpressionError,
    estimated_depth,
    parse_expression,
)

__all__ = [
    "MAX_WHERE_CHARS",
    "MAX_WHERE_DEPTH",
    "MAX_WHERE_TERMS",
    "YAML_LITERALS",
    "WhereError",
    "WhereExpr",
    "estimated_depth",
    "parse_where",
]

MAX_WHERE_CHARS = MAX_CHARS
MAX_WHERE_DEPTH = MAX_DEPTH
MAX_WHERE_TERMS = MAX_TERMS

WhereError = ExpressionError
"""A `where` expression that does not parse, names an unknown column, or mixes types."""


@dataclass(frozen=True)
class WhereExpr:
    """A parsed, checked `where` filter."""

    text: str
    expression: Expression

    @property
    def columns(self) -> frozenset[str]:
        """The columns it reads."""
        return self.expression.names

    def evaluate_row(self, row: Mapping[str, Any]) -> bool:
        """Whether one event passes the filter."""
        return self.expression.truth_row(row)

    def evaluate_columns(self, columns: Mapping[str, np.ndarray], size: int) -> np.ndarray:
        """A boolean mask over a batch of `size` events given as column arrays."""
        return self.expression.truth_columns(columns, size)


def parse_where(text: str, known_columns: Set[str] | Mapping[str, str]) -> WhereExpr:
    """Parse and check `text` over the columns `known_columns` (names, or name -> schema
    kind to check types); raise WhereError saying what is wrong."""
    types = (
        dict(known_columns)
        if isinstance(known_columns, Mapping)
        else dict.fromkeys(known_columns, ANY)
    )
    try:
        expression = parse_expression(text, types, noun="column")
    except ExpressionError as exc:
        message = str(exc)
        if message.startswith("names unknown column(s)"):
            message = message.replace("; known:", "; the source has", 1)
        raise WhereError(message) from None
    return WhereExpr(text, expression)
