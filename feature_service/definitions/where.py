"""`where` filters: a small, safe expression language over a source's columns.

The grammar is a subset of Python expressions: comparisons (`==`, `!=`, `<`, `<=`, `>`,
`>=`, `in`, `not in`, chained), `and`, `or`, `not`, parentheses, column names, and
string / number / boolean / `None` literals or lists of them. Nothing is ever `eval`ed:
the expression is parsed with `ast`, checked node by node, and evaluated either on one
event (a mapping) or vectorised on columns (numpy arrays). A comparison involving a
null value is false, as in SQL.

>>> w = parse_where("category == 'grocery' and amount > 10", {"category", "amount"})
>>> w.evaluate_row({"category": "grocery", "amount": 12.5})
True
>>> sorted(w.columns)
['amount', 'category']

YAML's spellings of the literals are accepted beside Python's: `true`, `false` and
`null` (also `TRUE`, `FALSE`, `Null`, `NULL`) mean `True`, `False` and `None`, so
`ok == false` works as a YAML user writes it. A source column with one of those names
would make the word ambiguous: a filter using it is refused (not silently read one way),
and such a column cannot be used in a filter.

>>> parse_where("ok == false", {"ok"}).evaluate_row({"ok": False})
True

Limits, so that a filter can neither crash the parser (a thousand nested `not` used
to raise RecursionError) nor slow every flush (20,000 `or` terms made a flush take
1.7 s): at most `MAX_WHERE_CHARS` characters, nested at most `MAX_WHERE_DEPTH` deep
(parentheses, `not` and signs in a row), at most `MAX_WHERE_TERMS` terms (columns,
literals and operations). Length and an estimate of the nesting are checked on the text
before it is parsed; the exact depth and size on the parsed tree.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


MAX_WHERE_CHARS = 4_000
MAX_WHERE_DEPTH = 32
MAX_WHERE_TERMS = 500

# YAML's spellings of the literals (its core schema's), read as Python's.
YAML_LITERALS: dict[str, bool | None] = {
    "true": True,
    "TRUE": True,
    "false": False,
    "FALSE": False,
    "null": None,
    "Null": None,
    "NULL": None,
}

# Tokens that matter to the nesting estimate; string literals are matched whole so that
# brackets or words inside them do not count.
_TOKENS = re.compile(
    r"""'(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|[(\[{]|[)\]}]|,|[A-Za-z_][A-Za-z_0-9]*"""
    r"""|\*\*|//|<<|>>|[=!<>]=|[-+~*/%@&|^<>]"""
)
_ARITHMETIC = frozenset({"-", "+", "~", "*", "/", "//", "%", "**", "@", "&", "|", "^", "<<", ">>"})
_SEPARATORS = frozenset({",", "and", "or", "in", "is", "==", "!=", "<", "<=", ">", ">="})


class WhereError(ValueError):
    """A `where` expression that does not parse, or names an unknown column."""


@dataclass(frozen=True)
class WhereExpr:
    """A parsed, checked `where` filter."""

    text: str
    tree: ast.expr
    columns: frozenset[str]

    def evaluate_row(self, row: Mapping[str, Any]) -> bool:
        """Whether one event passes the filter."""
        return bool(_eval_row(self.tree, row))

    def evaluate_columns(self, columns: Mapping[str, np.ndarray], size: int) -> np.ndarray:
        """A boolean mask over a batch of `size` events given as column arrays."""
        result = _eval_vector(self.tree, columns, size)
        return np.asarray(result, dtype=bool) & np.ones(size, dtype=bool)


def parse_where(text: str, known_columns: Set[str]) -> WhereExpr:
    """Parse and check `text`; raise WhereError saying what is wrong."""
    if len(text) > MAX_WHERE_CHARS:
        raise WhereError(
            f"is {len(text)} characters, longer than {MAX_WHERE_CHARS} characters allowed"
        )
    if estimated_depth(text) > MAX_WHERE_DEPTH:
        raise WhereError(_too_deep())
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise WhereError(f"does not parse: {_shown(text)} ({exc.msg})") from None
    except (RecursionError, MemoryError):  # the estimate missed a nesting the parser hit
        raise WhereError(_too_deep()) from None
    depth, terms = _size(tree)
    if depth > MAX_WHERE_DEPTH:
        raise WhereError(_too_deep())
    if terms > MAX_WHERE_TERMS:
        raise WhereError(
            f"has {terms} terms, more than {MAX_WHERE_TERMS} terms allowed (columns, "
            "literals and operations); a long list of values belongs in one `in [...]`"
        )
    tree = _yaml_literals(tree, known_columns)
    names: set[str] = set()
    _check(tree, names)
    unknown = sorted(names - set(known_columns))
    if unknown:
        raise WhereError(
            f"names unknown column(s) {', '.join(unknown)}; "
            f"the source has {', '.join(sorted(known_columns))}"
        )
    return WhereExpr(text=text, tree=tree, columns=frozenset(names))


def estimated_depth(text: str) -> int:
    """How deep `text` would nest once parsed, from its tokens, without parsing it.

    Brackets open a level; within a level, `not` and arithmetic signs in a row (up to
    the next `,`, `and`, `or` or comparison) nest one more each, as `not not x` or
    `1+1+1` do in Python's tree. An upper estimate for the filters this grammar allows.

    >>> estimated_depth("not (not (a == -1))")
    5
    >>> estimated_depth("a in [-1, -2, -3] and not b")
    2
    """
    chains = [0]  # per open bracket level: nesting operators since the last separator
    deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "([{":
            chains.append(0)
        elif token in ")]}":
            if len(chains) > 1:
                chains.pop()
        elif token in _SEPARATORS:
            chains[-1] = 0
        elif token == "not" or token in _ARITHMETIC:
            chains[-1] += 1
        deepest = max(deepest, len(chains) - 1 + sum(chains))
    return deepest


def _size(tree: ast.expr) -> tuple[int, int]:
    """(depth, number of expression nodes) of `tree`, walked without recursion."""
    depth, terms = 0, 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, ast.expr):
            terms += 1
            depth = max(depth, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return depth, terms


def _too_deep() -> str:
    return (
        f"is nested more than {MAX_WHERE_DEPTH} deep, the most allowed (parentheses, `not` "
        "or signs in a row)"
    )


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:77]) + "..."


def _yaml_literals(tree: ast.expr, known_columns: Set[str]) -> ast.expr:
    """`tree` with YAML's `true`, `false`, `null` (...) as literals; WhereError if the
    source has a column of that name, which would make the word mean two things."""

    class Literals(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            if node.id not in YAML_LITERALS:
                return node
            value = YAML_LITERALS[node.id]
            if node.id in known_columns:
                raise WhereError(
                    f"{node.id!r} is both a column of the source and YAML's spelling of "
                    f"{value}; write {value} for the literal (a column named {node.id!r} "
                    "cannot be used in a filter: rename it)"
                )
            return ast.copy_location(ast.Constant(value), node)

    result = Literals().visit(tree)
    assert isinstance(result, ast.expr)
    return result


def _check(node: ast.expr, names: set[str]) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand, names)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if not isinstance(op, (ast.In, ast.NotIn, *_COMPARE)):
                raise WhereError(f"operator {type(op).__name__} is not allowed")
        for operand in (node.left, *node.comparators):
            _check_operand(operand, names)
    elif isinstance(node, ast.Name):
        names.add(node.id)  # a bare boolean column
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        pass
    else:
        raise WhereError(
            f"{ast.unparse(node)!r} is not allowed; use comparisons of columns with "
            "literals joined by and/or/not"
        )


def _check_operand(node: ast.expr, names: set[str]) -> None:
    if isinstance(node, ast.Name):
        names.add(node.id)
    elif isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, type(None))):
        pass
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        if not (isinstance(node.operand, ast.Constant) and _is_number(node.operand.value)):
            raise WhereError(f"{ast.unparse(node)!r} is not allowed")
    elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        for element in node.elts:
            if isinstance(element, (ast.Name, ast.List, ast.Tuple)):
                raise WhereError(f"a list in a filter holds literals only: {ast.unparse(node)!r}")
            _check_operand(element, names)
    else:
        raise WhereError(f"{ast.unparse(node)!r} is not a column or a literal")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _literal(node: ast.expr) -> Any:
    return ast.literal_eval(node)


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _eval_row(node: ast.expr, row: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        values = (bool(_eval_row(v, row)) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _eval_row(node.operand, row)
    if isinstance(node, ast.Compare):
        left = _operand_row(node.left, row)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _operand_row(right_node, row)
            if isinstance(op, (ast.In, ast.NotIn)):
                if _is_null(left):
                    return False
                found = left in right
                ok = found if isinstance(op, ast.In) else not found
            else:
                if _is_null(left) or _is_null(right):
                    return False
                try:
                    ok = bool(_COMPARE[type(op)](left, right))
                except TypeError:
                    return False
            if not ok:
                return False
            left = right
        return True
    if isinstance(node, ast.Name):
        return bool(row.get(node.id)) and not _is_null(row.get(node.id))
    return _literal(node)


def _operand_row(node: ast.expr, row: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        return row.get(node.id)
    return _literal(node)


def _eval_vector(node: ast.expr, columns: Mapping[str, np.ndarray], size: int) -> np.ndarray:
    if isinstance(node, ast.BoolOp):
        masks = [_eval_vector(v, columns, size) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        result = masks[0]
        for mask in masks[1:]:
            result = combine(result, mask)
        return result
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ~_eval_vector(node.operand, columns, size)
    if isinstance(node, ast.Compare):
        result = np.ones(size, dtype=bool)
        left = _operand_vector(node.left, columns, size)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _operand_vector(right_node, columns, size)
            result &= _compare_vector(op, left, right, size)
            left = right
        return result
    if isinstance(node, ast.Name):
        values = columns[node.id]
        return np.fromiter((bool(v) and not _is_null(v) for v in values), dtype=bool, count=size)
    return np.full(size, bool(_literal(node)))


def _operand_vector(node: ast.expr, columns: Mapping[str, np.ndarray], size: int) -> Any:
    if isinstance(node, ast.Name):
        return columns[node.id]
    return _literal(node)


def _compare_vector(op: ast.cmpop, left: Any, right: Any, size: int) -> np.ndarray:
    # Element-wise through the row semantics keeps nulls and mixed types exactly as
    # evaluate_row treats them; the numeric fast path covers the common case.
    if (
        isinstance(op, (ast.In, ast.NotIn))
        and isinstance(left, np.ndarray)
        and not isinstance(right, np.ndarray)
    ):
        members = [m for m in right if not _is_null(m)]
        nulls = np.asarray(pd.isna(left), dtype=bool)
        found = np.asarray(pd.Series(left, dtype=object).isin(members), dtype=bool) & ~nulls
        return found if isinstance(op, ast.In) else ~found & ~nulls
    if (
        isinstance(op, (ast.Eq, ast.NotEq))
        and isinstance(left, np.ndarray)
        and left.dtype.kind == "O"
        and not isinstance(right, np.ndarray)
        and not _is_null(right)
    ):
        # Element-wise ==/!= on objects in C; a null on the left is false either way.
        nulls = np.asarray(pd.isna(left), dtype=bool)
        equal = np.asarray(left == right, dtype=bool)
        return (equal if isinstance(op, ast.Eq) else ~equal) & ~nulls
    fn = _COMPARE.get(type(op))
    if (
        fn is not None
        and isinstance(left, np.ndarray)
        and left.dtype.kind in "fiu"
        and (_is_number(right) or (isinstance(right, np.ndarray) and right.dtype.kind in "fiu"))
    ):
        with np.errstate(invalid="ignore"):
            result = np.asarray(fn(left, right), dtype=bool)
        for side in (left, right):  # a null (NaN) on either side is false, even for !=
            if isinstance(side, np.ndarray) and side.dtype.kind == "f":
                result &= ~np.isnan(side)
        return result
    lefts = left if isinstance(left, np.ndarray) else [left] * size
    rights = right if isinstance(right, np.ndarray) else [right] * size
    out = np.empty(size, dtype=bool)
    for i, (a, b) in enumerate(zip(lefts, rights, strict=True)):
        tree = ast.Compare(left=ast.Constant(a), ops=[op], comparators=[ast.Constant(b)])
        out[i] = _eval_row(tree, {})
    return out
