"""The one expression language: `where` filters, computed source columns and derived
features all parse, check and evaluate here.

The grammar is a subset of Python expressions, parsed with `ast` and checked node by
node (nothing is ever `eval`ed): numbers, strings, `true`/`false`/`null` (YAML's
spellings and Python's), names, `request.<field>`, `+ - * / ** %`, unary `-`,
comparisons (`== != < <= > >=`, chained, `in`/`not in` a list of literals), `and`,
`or`, `not`, and the functions `if(c, a, b)`, `coalesce(a, b, ...)`, `abs`, `log`,
`exp`, `sqrt`, `min`, `max`. Names, types and a bounded size are checked when the
expression is parsed, i.e. when definitions load.

Semantics, the same on one row and on columns:

- Numbers are IEEE doubles (an int column is read as float64); a boolean used as a
  number is 0 or 1. A numeric result that is NaN is null.
- Nulls propagate through arithmetic and functions: `null + 1` is null, `min(null, 1)`
  is null; `coalesce` and `if` are the exceptions.
- `x / 0`, `x % 0` and `0 ** -1` are null (division by zero); `log(x)` for `x <= 0` and
  `sqrt(x)` for `x < 0` are null; overflow gives an infinity, and infinities follow
  IEEE (`inf - inf` is NaN, so null).
- A comparison with a null is false, and `and`/`or`/`not` read a null as false (as a
  `where` filter always has): a boolean is never null unless it is a column's value
  passed through (`coalesce(flag, false)`).

>>> e = parse_expression("(request.amount - mean) / std", {"mean": NUMBER, "std": NUMBER},
...                      {"amount": NUMBER})
>>> e.evaluate_row({"mean": 10.0, "std": 2.0, "request.amount": 15})
2.5
>>> e.evaluate_row({"mean": 10.0, "std": 0.0, "request.amount": 15}) is None
True
>>> e.evaluate_columns({"mean": np.array([10.0]), "std": np.array([2.0]),
...                     "request.amount": np.array([15.0])}, 1).tolist()
[2.5]
>>> parse_expression("if(n > 0, total / n, 0)", {"n": NUMBER, "total": NUMBER}).type
'number'

One row (`evaluate_row`: compiled once to closures, a lookup's path) and columns
(`evaluate_columns`: numpy, training sets and event batches) give the same values bit
for bit (tests/unit/test_expressions.py holds them equal); the transcendental functions
and `**` go through numpy on both paths so that no two math libraries can disagree.
"""

from __future__ import annotations

import ast
import io
import itertools
import math
import re
import tokenize
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

NUMBER = "number"
STRING = "string"
BOOL = "bool"
NULL = "null"  # the type of the literal `null` only
ANY = "any"  # a column of unknown type (a filter parsed without a schema)
OTHER = "other"  # lists, maps: not usable in expressions

MAX_CHARS = 4_000
MAX_DEPTH = 32
MAX_TERMS = 500

REQUEST = "request"
"""`request.<field>`: a field passed at lookup time, beside the join keys."""

FUNCTIONS = ("if", "coalesce", "abs", "log", "exp", "sqrt", "min", "max")

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

_IF = "__if__"  # `if` is a Python keyword: `if(` is renamed before parsing

Value = float | str | None
Row = Mapping[str, Any]
Columns = Mapping[str, npt.NDArray[Any]]
RowFn = Callable[[Row], Value]
VecFn = Callable[[Columns, int], npt.NDArray[Any]]


class ExpressionError(ValueError):
    """An expression that does not parse, names something unknown, or mixes types."""


def type_of_kind(kind: str | None) -> str:
    """The expression type of a schema or value kind (`int`, `float`, `string`, ...).

    >>> type_of_kind("int"), type_of_kind("string"), type_of_kind("list")
    ('number', 'string', 'other')
    """
    if kind in ("int", "float", "timestamp"):
        return NUMBER
    if kind in (BOOL, STRING, NUMBER, ANY, NULL):
        return kind
    return OTHER


def kind_of_type(type_: str) -> str:
    """The schema kind an expression's values have (computed columns, derived features)."""
    return {BOOL: "bool", STRING: "string"}.get(type_, "float")


@dataclass(frozen=True, eq=False)
class Expression:
    """A parsed, checked expression. `names`: the names it reads (columns or features);
    `request_fields`: the `request.<field>` it reads (passed under the key
    ``request.<field>``); `type`: NUMBER, STRING, BOOL or NULL."""

    text: str
    tree: ast.expr
    names: frozenset[str]
    request_fields: frozenset[str]
    type: str
    _row: RowFn = field(repr=False)
    _vec: VecFn = field(repr=False)
    _source: tuple[Any, ...] = field(repr=False, default=())
    """What `parse_expression` was given besides the text: an expression pickles as
    that and is compiled again where it is unpickled (its closures do not pickle;
    training sets send views to worker processes)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_compiled_again, (self.text, *self._source))

    def __eq__(self, other: object) -> bool:  # the same text over the same inputs
        if not isinstance(other, Expression):
            return NotImplemented
        return (self.text, self.names, self.request_fields, self.type) == (
            other.text, other.names, other.request_fields, other.type
        )  # fmt: skip

    def __hash__(self) -> int:
        return hash((self.text, self.names, self.request_fields, self.type))

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every key it reads from a row or columns: names, then ``request.<field>``."""
        return (*sorted(self.names), *(f"{REQUEST}.{f}" for f in sorted(self.request_fields)))

    def evaluate_row(self, row: Row) -> Any:
        """Its value for one row (a mapping of its `inputs`; None or NaN is null): a
        float, str or bool, or None."""
        return _finish_row(self._row(row), self.type)

    def evaluate_columns(self, columns: Columns, n: int) -> npt.NDArray[Any]:
        """Its values for `n` rows given as arrays: float64 (NaN null) for a number,
        objects (None null) for a string or a boolean."""
        return _finish_vec(self._vec(columns, n), self.type, n)

    def truth_row(self, row: Row) -> bool:
        """Whether it holds for one row (a null is false): a filter's reading."""
        return _truthy(self._row(row))

    def truth_columns(self, columns: Columns, n: int) -> npt.NDArray[np.bool_]:
        """Whether it holds for each of `n` rows (a null is false)."""
        return _truthy_vec(self._vec(columns, n), n)


def parse_expression(
    text: str,
    names: Mapping[str, str],
    request: Mapping[str, str] | None = None,
    *,
    noun: str = "name",
) -> Expression:
    """Parse and check `text` over `names` (name -> type: NUMBER, STRING, BOOL, ANY, or
    a schema kind) and `request` fields (None: `request.` is not allowed); raise
    ExpressionError saying what is wrong (`noun`: what a name is, for messages)."""
    types = {name: type_of_kind(t) for name, t in names.items()}
    tree = _parse(text)
    tree = _yaml_literals(tree, types)
    used: set[str] = set()
    fields: set[str] = set()
    compiler = _Compiler(types, {k: type_of_kind(v) for k, v in (request or {}).items()}, noun)
    compiler.used, compiler.fields = used, fields
    compiler.request_allowed = request is not None
    node = compiler.compile(tree)
    unknown = sorted(compiler.unknown)
    if unknown:
        known = ", ".join(sorted(types)) or "none"
        raise ExpressionError(f"names unknown {noun}(s) {', '.join(unknown)}; known: {known}")
    if compiler.unknown_fields:
        known = ", ".join(sorted(request or {})) or "none declared (add `request:`)"
        raise ExpressionError(
            f"names unknown request field(s) {', '.join(sorted(compiler.unknown_fields))}; "
            f"request fields: {known}"
        )
    source = (dict(names), None if request is None else dict(request), noun)
    return Expression(
        text, tree, frozenset(used), frozenset(fields), node.type, node.row, node.vec, source
    )


def _compiled_again(
    text: str, names: Mapping[str, str], request: Mapping[str, str] | None, noun: str
) -> Expression:
    return parse_expression(text, names, request, noun=noun)


def evaluation_order(
    expressions: Mapping[str, Expression | None],
) -> list[str]:
    """The names of `expressions` (None: a plain input) in an order where each comes
    after the expressions it reads; ExpressionError naming a cycle.

    >>> exprs = {"a": None, "b": parse_expression("c + 1", {"c": NUMBER}),
    ...          "c": parse_expression("a * 2", {"a": NUMBER})}
    >>> evaluation_order(exprs)
    ['c', 'b']
    """
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            raise ExpressionError(f"cycle: {' -> '.join(cycle)}")
        state[name] = 1
        expr = expressions[name]
        if expr is not None:
            for used in sorted(expr.names):
                if used in expressions:
                    visit(used, [*path, name])
        state[name] = 2
        if expr is not None:
            order.append(name)

    for name in expressions:
        visit(name, [])
    return order


def estimated_depth(text: str) -> int:
    """How deep `text` would nest once parsed, from its tokens, without parsing it.

    Brackets open a level; within a level, `not` and arithmetic signs in a row (up to
    the next `,`, `and`, `or` or comparison) nest one more each, as `not not x` or
    `1+1+1` do in Python's tree. An upper estimate for the expressions this grammar allows.

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


# Tokens that matter to the nesting estimate; string literals are matched whole so that
# brackets or words inside them do not count.
_TOKENS = re.compile(
    r"""'(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|[(\[{]|[)\]}]|,|[A-Za-z_][A-Za-z_0-9]*"""
    r"""|\*\*|//|<<|>>|[=!<>]=|[-+~*/%@&|^<>]"""
)
_ARITHMETIC = frozenset({"-", "+", "~", "*", "/", "//", "%", "**", "@", "&", "|", "^", "<<", ">>"})
_SEPARATORS = frozenset({",", "and", "or", "in", "is", "==", "!=", "<", "<=", ">", ">="})


# ------------------------------------------------------------------------ parsing


def _parse(text: str) -> ast.expr:
    if len(text) > MAX_CHARS:
        raise ExpressionError(
            f"is {len(text)} characters, longer than {MAX_CHARS} characters allowed"
        )
    if estimated_depth(text) > MAX_DEPTH:
        raise ExpressionError(_too_deep())
    try:
        tree = ast.parse(_rename_if(text).strip(), mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"does not parse: {_shown(text)} ({exc.msg})") from None
    except (RecursionError, MemoryError):  # the estimate missed a nesting the parser hit
        raise ExpressionError(_too_deep()) from None
    depth, terms = _size(tree)
    if depth > MAX_DEPTH:
        raise ExpressionError(_too_deep())
    if terms > MAX_TERMS:
        raise ExpressionError(
            f"has {terms} terms, more than {MAX_TERMS} terms allowed (names, "
            "literals and operations); a long list of values belongs in one `in [...]`"
        )
    return tree


def _rename_if(text: str) -> str:
    """`text` with the function `if(` spelled `__if__(`, which Python can parse."""
    if "if" not in text:
        return text
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return text  # the parser says what is wrong
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spots = []
    for tok, following in itertools.pairwise(tokens):
        if tok.type == tokenize.NAME and tok.string == "if" and following.string == "(":
            spots.append(starts[tok.start[0] - 1] + tok.start[1])
    for at in reversed(spots):
        text = text[:at] + _IF + text[at + 2 :]
    return text


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
        f"is nested more than {MAX_DEPTH} deep, the most allowed (parentheses, `not` "
        "or signs in a row)"
    )


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:77]) + "..."


def _yaml_literals(tree: ast.expr, names: Mapping[str, str]) -> ast.expr:
    """`tree` with YAML's `true`, `false`, `null` (...) as literals; ExpressionError if
    a name of that spelling is known, which would make the word mean two things."""

    class Literals(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            if node.id not in YAML_LITERALS:
                return node
            value = YAML_LITERALS[node.id]
            if node.id in names:
                raise ExpressionError(
                    f"{node.id!r} is both a column of the source and YAML's spelling of "
                    f"{value}; write {value} for the literal (a column named {node.id!r} "
                    "cannot be used in an expression: rename it)"
                )
            return ast.copy_location(ast.Constant(value), node)

    result = Literals().visit(tree)
    assert isinstance(result, ast.expr)
    return result


# ------------------------------------------------------------------ row semantics


def _null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _norm(v: Any) -> Value:
    """A value as the evaluator holds it: None, float (numbers and booleans) or str."""
    if v is None:
        return None
    if type(v) is float:
        return None if v != v else v
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)):
        f = float(v)
        return None if f != f else f
    return None


def _num(v: Any) -> float | None:
    v = _norm(v)
    return v if type(v) is float else None


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _truthy(v: Value) -> bool:
    if v is None:
        return False
    if type(v) is float:
        return v != 0.0
    return bool(v)


def _nan_null(r: float) -> float | None:
    return None if r != r else r


def _add(a: Value, b: Value) -> Value:
    if type(a) is float and type(b) is float:
        return _nan_null(a + b)
    return None


def _sub(a: Value, b: Value) -> Value:
    if type(a) is float and type(b) is float:
        return _nan_null(a - b)
    return None


def _mul(a: Value, b: Value) -> Value:
    if type(a) is float and type(b) is float:
        return _nan_null(a * b)
    return None


def _div(a: Value, b: Value) -> Value:
    if type(a) is float and type(b) is float and b != 0.0:
        return _nan_null(a / b)
    return None


def _mod(a: Value, b: Value) -> Value:
    if type(a) is float and type(b) is float and b != 0.0:
        return _nan_null(a % b)
    return None


def _one(fn: Callable[..., npt.NDArray[np.float64]], *args: float) -> float | None:
    """`fn` (a numpy ufunc) of one row, through a one-element array: the same code, so the
    same bits, as on a column."""
    with np.errstate(all="ignore"):
        r = float(fn(*(np.array([a], dtype=np.float64) for a in args))[0])
    return _nan_null(r)


def _pow(a: Value, b: Value) -> Value:
    if type(a) is float and type(b) is float:
        if a == 0.0 and b < 0.0:
            return None
        return _one(np.power, a, b)  # a null never reaches it: pow(nan, 0) would be 1
    return None


def _neg(a: Value) -> Value:
    return -a if type(a) is float else None


def _abs(a: Value) -> Value:
    return abs(a) if type(a) is float else None


def _sqrt(a: Value) -> Value:
    return _one(np.sqrt, a) if type(a) is float and a >= 0.0 else None


def _log(a: Value) -> Value:
    return _one(np.log, a) if type(a) is float and a > 0.0 else None


def _exp(a: Value) -> Value:
    return _one(np.exp, a) if type(a) is float else None


def _min(*args: Value) -> Value:
    if not all(type(a) is float for a in args):
        return None
    m = args[0]
    for a in args[1:]:
        if a < m:  # type: ignore[operator]
            m = a
    return m


def _max(*args: Value) -> Value:
    if not all(type(a) is float for a in args):
        return None
    m = args[0]
    for a in args[1:]:
        if a > m:  # type: ignore[operator]
            m = a
    return m


_ROW_ARITH: dict[type[ast.operator], Callable[[Value, Value], Value]] = {
    ast.Add: _add,
    ast.Sub: _sub,
    ast.Mult: _mul,
    ast.Div: _div,
    ast.Mod: _mod,
    ast.Pow: _pow,
}

_ORDER: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


def _compare_row(op: type[ast.cmpop]) -> Callable[[Value, Value], Value]:
    fn = _ORDER[op]

    def compare(a: Value, b: Value) -> Value:
        if a is None or b is None:
            return 0.0
        try:
            return 1.0 if fn(a, b) else 0.0
        except TypeError:  # a string against a number: only from columns of no type
            return 0.0

    return compare


_EQ = _compare_row(ast.Eq)
_NE = _compare_row(ast.NotEq)


def _finish_row(v: Value, type_: str) -> Any:
    if v is None:
        return None
    if type_ == BOOL:
        return bool(v != 0.0) if type(v) is float else bool(v)
    return v


# --------------------------------------------------------------- column semantics


Vec = npt.NDArray[Any]  # float64 (NaN null) or object (None, float or str)


def _floats(values: Any, n: int) -> npt.NDArray[np.float64]:
    arr = np.asarray(values)
    if arr.dtype == np.float64:
        return arr
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64)
    return np.fromiter(
        (np.nan if (x := _norm(v)) is None or isinstance(x, str) else x for v in arr),
        dtype=np.float64,
        count=n,
    )


def _objects(values: Any, n: int) -> npt.NDArray[np.object_]:
    arr = np.asarray(values)
    out = np.empty(n, dtype=object)
    if arr.dtype.kind == "f":
        out[:] = [None if x != x else x for x in arr.tolist()]
    elif arr.dtype.kind in "iub":
        out[:] = [float(x) for x in arr.tolist()]
    else:
        out[:] = [_norm(v) for v in arr]
    return out


def _auto(values: Any, n: int) -> Vec:
    """A column of no declared type: floats if every value is a number, else objects."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return _floats(arr, n)
    normed = _objects(arr, n)
    if all(v is None or type(v) is float for v in normed):
        return _floats(normed, n)
    return normed


def _is_float(v: Vec) -> bool:
    return bool(v.dtype == np.float64)


def _as_objects(v: Vec, n: int) -> npt.NDArray[np.object_]:
    return v if v.dtype == object else _objects(v, n)


def _elementwise(fn: Callable[..., Value], args: Sequence[Vec], n: int) -> Vec:
    """`fn` of each row: the row semantics exactly, for columns that are not all floats."""
    cols = [a.tolist() if _is_float(a) else list(a) for a in args]
    out = np.empty(n, dtype=object)
    out[:] = [fn(*(_norm(c[i]) for c in cols)) for i in range(n)]
    if all(v is None or type(v) is float for v in out):
        return _floats(out, n)
    return out


def _truthy_vec(v: Vec, n: int) -> npt.NDArray[np.bool_]:
    if _is_float(v):
        return np.asarray((v != 0.0) & ~np.isnan(v), dtype=np.bool_)
    return np.fromiter((_truthy(x) for x in v), dtype=np.bool_, count=n)


def _arith_vec(op: type[ast.operator]) -> Callable[[Vec, Vec, int], Vec]:
    row_fn = _ROW_ARITH[op]

    def arith(a: Vec, b: Vec, n: int) -> Vec:
        if not (_is_float(a) and _is_float(b)):
            return _elementwise(row_fn, [a, b], n)
        with np.errstate(all="ignore"):
            if op is ast.Add:
                return a + b
            if op is ast.Sub:
                return a - b
            if op is ast.Mult:
                return a * b
            if op is ast.Div:
                r = a / b
                r[b == 0.0] = np.nan
                return r
            if op is ast.Mod:
                r = np.remainder(a, b)
                r[b == 0.0] = np.nan
                return r
            r = np.power(a, b)  # IEEE's pow(1, nan) and pow(nan, 0) are 1: not for nulls
            r[((a == 0.0) & (b < 0.0)) | np.isnan(a) | np.isnan(b)] = np.nan
            return r

    return arith


def _compare_vec(op: type[ast.cmpop]) -> Callable[[Vec, Vec, int], Vec]:
    row_fn = _compare_row(op)
    fn = _ORDER[op]

    def compare(a: Vec, b: Vec, n: int) -> Vec:
        if _is_float(a) and _is_float(b):
            with np.errstate(invalid="ignore"):
                ok = fn(a, b) & ~np.isnan(a) & ~np.isnan(b)
            return np.asarray(ok, dtype=np.float64)
        return _elementwise(row_fn, [a, b], n)

    return compare


def _finish_vec(v: Vec, type_: str, n: int) -> Vec:
    if type_ in (NUMBER, NULL):
        return _floats(v, n)
    if type_ == BOOL:
        out = np.empty(n, dtype=object)
        if _is_float(v):
            out[:] = [None if x != x else x != 0.0 for x in v.tolist()]
        else:
            out[:] = [None if x is None else _truthy(x) for x in v]
        return out
    return _as_objects(v, n)


# ------------------------------------------------------------------------ compiling


@dataclass(frozen=True)
class _Node:
    row: RowFn
    vec: VecFn
    type: str


@dataclass(frozen=True)
class _Literal(_Node):
    text: str | None = None


def _numeric(t: str) -> bool:
    return t in (NUMBER, BOOL, NULL, ANY)


def _comparable(a: str, b: str) -> bool:
    if NULL in (a, b) or ANY in (a, b):
        return True
    return _numeric(a) == _numeric(b)


class _Compiler:
    def __init__(self, types: Mapping[str, str], request: Mapping[str, str], noun: str) -> None:
        self.types = types
        self.request = request
        self.noun = noun
        self.used: set[str] = set()
        self.fields: set[str] = set()
        self.unknown: set[str] = set()
        self.unknown_fields: set[str] = set()
        self.request_allowed = False

    # a node -> its row closure, column closure and type
    def compile(self, node: ast.expr) -> _Node:
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node.id, node.id)
        if isinstance(node, ast.Attribute):
            return self._request(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.BoolOp):
            return self._boolop(node)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise ExpressionError(f"a list is only allowed after `in`: {_shown(ast.unparse(node))}")
        raise ExpressionError(
            f"{_shown(ast.unparse(node))} is not allowed; use names, literals, arithmetic, "
            f"comparisons, and/or/not and the functions {', '.join(FUNCTIONS)}"
        )

    def _constant(self, node: ast.Constant) -> _Node:
        value = node.value
        if value is None:
            return _Node(lambda row: None, lambda cols, n: np.full(n, np.nan), NULL)
        if isinstance(value, bool):
            f = 1.0 if value else 0.0
            return _Node(lambda row: f, lambda cols, n: np.full(n, f), BOOL)
        if isinstance(value, (int, float)):
            try:
                f = float(value)
            except OverflowError:
                raise ExpressionError(f"number {_shown(str(value))} is too large") from None
            return _Node(lambda row: f, lambda cols, n: np.full(n, f), NUMBER)
        if isinstance(value, str):
            s = value

            def vec(cols: Columns, n: int) -> Vec:
                out = np.empty(n, dtype=object)
                out[:] = [s] * n
                return out

            return _Literal(lambda row: s, vec, STRING, s)
        raise ExpressionError(f"{_shown(ast.unparse(node))} is not allowed")

    def _name(self, name: str, key: str, type_: str | None = None) -> _Node:
        if type_ is None:
            if name not in self.types:
                self.unknown.add(name)
                type_ = ANY
            else:
                self.used.add(name)
                type_ = self.types[name]
        if type_ == OTHER:
            raise ExpressionError(
                f"{name!r} is a list or a map; expressions take numbers, strings and booleans"
            )
        if type_ in (NUMBER, BOOL):

            def row(r: Row) -> Value:
                return _num(r.get(key))

            def vec(cols: Columns, n: int) -> Vec:
                return _floats(cols[key], n)

        elif type_ == STRING:

            def row(r: Row) -> Value:
                return _text(r.get(key))

            def vec(cols: Columns, n: int) -> Vec:
                out = _objects(cols[key], n)
                out[[not isinstance(x, str) for x in out]] = None
                return out

        else:

            def row(r: Row) -> Value:
                return _norm(r.get(key))

            def vec(cols: Columns, n: int) -> Vec:
                return _auto(cols[key], n)

        return _Node(row, vec, type_)

    def _request(self, node: ast.Attribute) -> _Node:
        if not (isinstance(node.value, ast.Name) and node.value.id == REQUEST):
            raise ExpressionError(
                f"{_shown(ast.unparse(node))} is not allowed; the only dotted names are "
                f"{REQUEST}.<field>"
            )
        if not self.request_allowed:
            raise ExpressionError(
                f"{_shown(ast.unparse(node))}: request fields are only known to derived features"
            )
        field_ = node.attr
        if field_ not in self.request:
            self.unknown_fields.add(field_)
            return self._name(field_, f"{REQUEST}.{field_}", ANY)
        self.fields.add(field_)
        return self._name(field_, f"{REQUEST}.{field_}", self.request[field_])

    def _binop(self, node: ast.BinOp) -> _Node:
        op = type(node.op)
        if op not in _ROW_ARITH:
            raise ExpressionError(
                f"operator {_symbol(node.op)} is not allowed; arithmetic is + - * / ** %"
            )
        left, right = self.compile(node.left), self.compile(node.right)
        for side in (left, right):
            if not _numeric(side.type):
                raise ExpressionError(
                    f"{_symbol(node.op)} needs numbers: {_shown(ast.unparse(node))} has a "
                    f"{side.type}"
                )
        row_fn, vec_fn = _ROW_ARITH[op], _arith_vec(op)
        lr, rr, lv, rv = left.row, right.row, left.vec, right.vec
        return _Node(
            lambda row: row_fn(lr(row), rr(row)),
            lambda cols, n: vec_fn(lv(cols, n), rv(cols, n), n),
            NUMBER,
        )

    def _unary(self, node: ast.UnaryOp) -> _Node:
        operand = self.compile(node.operand)
        o_row, o_vec = operand.row, operand.vec
        if isinstance(node.op, ast.Not):
            return _Node(
                lambda row: 0.0 if _truthy(o_row(row)) else 1.0,
                lambda cols, n: np.asarray(~_truthy_vec(o_vec(cols, n), n), dtype=np.float64),
                BOOL,
            )
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            if not _numeric(operand.type):
                raise ExpressionError(f"{_shown(ast.unparse(node))}: a sign needs a number")
            if isinstance(node.op, ast.UAdd):
                return _Node(
                    lambda row: _num(o_row(row)),
                    lambda cols, n: _floats(o_vec(cols, n), n),
                    NUMBER,
                )

            def vec(cols: Columns, n: int) -> Vec:
                v = o_vec(cols, n)
                return -v if _is_float(v) else _elementwise(_neg, [v], n)

            return _Node(lambda row: _neg(o_row(row)), vec, NUMBER)
        raise ExpressionError(f"operator {_symbol(node.op)} is not allowed")

    def _boolop(self, node: ast.BoolOp) -> _Node:
        parts = [self.compile(v) for v in node.values]
        rows = [p.row for p in parts]
        vecs = [p.vec for p in parts]
        if isinstance(node.op, ast.And):

            def row(r: Row) -> Value:
                return 1.0 if all(_truthy(f(r)) for f in rows) else 0.0

            combine: Callable[[Any, Any], Any] = np.logical_and
        else:

            def row(r: Row) -> Value:
                return 1.0 if any(_truthy(f(r)) for f in rows) else 0.0

            combine = np.logical_or

        def vec(cols: Columns, n: int) -> Vec:
            result = _truthy_vec(vecs[0](cols, n), n)
            for f in vecs[1:]:
                result = combine(result, _truthy_vec(f(cols, n), n))
            return np.asarray(result, dtype=np.float64)

        return _Node(row, vec, BOOL)

    def _compare(self, node: ast.Compare) -> _Node:
        steps: list[tuple[Callable[[Row], Value], Callable[[Columns, int], Vec]]] = []
        left = self.compile(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                steps.append(self._membership(left, op, right_node, node))
                break  # `a in [..] < b` is not a thing a filter needs
            if type(op) not in _ORDER:
                raise ExpressionError(f"operator {type(op).__name__} is not allowed")
            right = self.compile(right_node)
            if not _comparable(left.type, right.type):
                raise ExpressionError(
                    f"{_shown(ast.unparse(node))} compares a {left.type} with a {right.type}"
                )
            row_fn = _EQ if isinstance(op, ast.Eq) else _NE if isinstance(op, ast.NotEq) else None
            row_fn = row_fn or _compare_row(type(op))
            vec_fn = _compare_vec(type(op))
            steps.append(self._compare_step(left, right, row_fn, vec_fn))
            left = right
        if len(node.ops) > len(steps):
            raise ExpressionError(
                f"{_shown(ast.unparse(node))}: `in` cannot be chained with other comparisons"
            )
        if len(steps) == 1:
            return _Node(steps[0][0], steps[0][1], BOOL)
        rows = [s[0] for s in steps]
        vecs = [s[1] for s in steps]

        def row(r: Row) -> Value:
            return 1.0 if all(f(r) for f in rows) else 0.0

        def vec(cols: Columns, n: int) -> Vec:
            result = np.ones(n, dtype=np.float64)
            for f in vecs:
                result = result * f(cols, n)
            return result

        return _Node(row, vec, BOOL)

    @staticmethod
    def _compare_step(
        left: _Node,
        right: _Node,
        row_fn: Callable[[Value, Value], Value],
        vec_fn: Callable[[Vec, Vec, int], Vec],
    ) -> tuple[Callable[[Row], Value], Callable[[Columns, int], Vec]]:
        lr, rr, lv, rv = left.row, right.row, left.vec, right.vec
        text = right.text if isinstance(right, _Literal) and isinstance(right.text, str) else None
        if text is not None and row_fn in (_EQ, _NE):
            equal = row_fn is _EQ

            def vec(cols: Columns, n: int) -> Vec:
                v = lv(cols, n)
                if _is_float(v):
                    return np.full(n, 0.0 if equal else 1.0) * ~np.isnan(v)
                hit = np.asarray(v == text, dtype=np.bool_)  # in C, element by element
                ok = (hit if equal else ~hit) & ~np.asarray(pd.isna(v), dtype=np.bool_)
                return np.asarray(ok, dtype=np.float64)

            return (lambda row: row_fn(lr(row), text), vec)
        return (
            lambda row: row_fn(lr(row), rr(row)),
            lambda cols, n: vec_fn(lv(cols, n), rv(cols, n), n),
        )

    def _membership(
        self, left: _Node, op: ast.cmpop, right: ast.expr, whole: ast.Compare
    ) -> tuple[Callable[[Row], Value], Callable[[Columns, int], Vec]]:
        if not isinstance(right, (ast.List, ast.Tuple, ast.Set)):
            raise ExpressionError(
                f"{_shown(ast.unparse(right))} is not a list of literals (`in [...]`)"
            )
        members: list[Value] = []
        for element in right.elts:
            value = _literal(element)
            if isinstance(value, _NotLiteral):
                raise ExpressionError(
                    f"a list in an expression holds literals only: {_shown(ast.unparse(right))}"
                )
            kind = NULL if value is None else STRING if isinstance(value, str) else NUMBER
            if not _comparable(left.type, kind):
                raise ExpressionError(
                    f"{_shown(ast.unparse(whole))} compares a {left.type} with a {kind}"
                )
            if value is not None:
                members.append(_norm(value))
        negate = isinstance(op, ast.NotIn)
        numbers = np.array([m for m in members if type(m) is float], dtype=np.float64)
        member_set = set(members)
        lr, lv = left.row, left.vec

        def row(r: Row) -> Value:
            v = lr(r)
            if v is None:
                return 0.0
            found = v in member_set
            return 1.0 if found != negate else 0.0

        def vec(cols: Columns, n: int) -> Vec:
            v = lv(cols, n)
            if _is_float(v):
                found = np.isin(v, numbers)
                nulls = np.isnan(v)
            else:
                nulls = np.asarray(pd.isna(v), dtype=np.bool_)
                found = np.fromiter((x in member_set for x in v), dtype=np.bool_, count=n)
            ok = (~found if negate else found) & ~nulls
            return np.asarray(ok, dtype=np.float64)

        return row, vec

    def _call(self, node: ast.Call) -> _Node:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name == _IF:
            name = "if"
        if name not in FUNCTIONS or node.keywords:
            raise ExpressionError(
                f"{_shown(ast.unparse(node))} is not allowed; the functions are "
                f"{', '.join(FUNCTIONS)}"
            )
        args = [self.compile(a) for a in node.args]
        arity = {"if": (3, 3), "coalesce": (1, 64), "min": (1, 64), "max": (1, 64)}
        lo, hi = arity.get(name, (1, 1))
        if not lo <= len(args) <= hi:
            want = str(lo) if lo == hi else f"{lo} or more"
            raise ExpressionError(f"{name}() takes {want} argument(s), got {len(args)}")
        if name == "if":
            return self._if(node, *args)
        if name == "coalesce":
            return self._coalesce(node, args)
        for a in args:
            if not _numeric(a.type):
                raise ExpressionError(
                    f"{name}() takes numbers: {_shown(ast.unparse(node))} has a {a.type}"
                )
        if name in ("min", "max"):
            return self._extremum(name, args)
        return self._math(name, args[0])

    @staticmethod
    def _same_type(node: ast.Call, args: Sequence[_Node]) -> str:
        kinds = {a.type for a in args} - {NULL}
        if not kinds:
            return NULL
        if len(kinds - {ANY}) > 1:
            numeric = {k for k in kinds if _numeric(k)}
            if numeric and len(numeric) == len(kinds - {ANY}):
                return NUMBER
            raise ExpressionError(
                f"{_shown(ast.unparse(node))} mixes {' and '.join(sorted(kinds))} values"
            )
        return (kinds - {ANY}).pop() if kinds - {ANY} else ANY

    def _if(self, node: ast.Call, cond: _Node, then: _Node, other: _Node) -> _Node:
        type_ = self._same_type(node, [then, other])
        cr, tr, orow = cond.row, then.row, other.row
        cv, tv, ov = cond.vec, then.vec, other.vec

        def row(r: Row) -> Value:
            return tr(r) if _truthy(cr(r)) else orow(r)

        def vec(cols: Columns, n: int) -> Vec:
            c = _truthy_vec(cv(cols, n), n)
            a, b = tv(cols, n), ov(cols, n)
            if _is_float(a) and _is_float(b):
                return np.where(c, a, b)
            return _squeeze(np.where(c, _as_objects(a, n), _as_objects(b, n)), n)

        return _Node(row, vec, type_)

    def _coalesce(self, node: ast.Call, args: Sequence[_Node]) -> _Node:
        type_ = self._same_type(node, args)
        rows = [a.row for a in args]
        vecs = [a.vec for a in args]

        def row(r: Row) -> Value:
            for f in rows:
                v = f(r)
                if v is not None:
                    return v
            return None

        def vec(cols: Columns, n: int) -> Vec:
            parts = [f(cols, n) for f in vecs]
            if all(_is_float(p) for p in parts):
                out = parts[0].copy()
                for p in parts[1:]:
                    missing = np.isnan(out)
                    out[missing] = p[missing]
                return out
            objs = [_as_objects(p, n) for p in parts]
            result = objs[0].copy()
            for p in objs[1:]:
                missing = np.asarray([x is None for x in result], dtype=np.bool_)
                result[missing] = p[missing]
            return _squeeze(result, n)

        return _Node(row, vec, type_)

    @staticmethod
    def _extremum(name: str, args: Sequence[_Node]) -> _Node:
        rows = [a.row for a in args]
        vecs = [a.vec for a in args]
        row_fn = _min if name == "min" else _max

        def row(r: Row) -> Value:
            return row_fn(*(f(r) for f in rows))

        def vec(cols: Columns, n: int) -> Vec:
            parts = [f(cols, n) for f in vecs]
            if not all(_is_float(p) for p in parts):
                return _elementwise(row_fn, parts, n)
            out = parts[0]
            nulls = np.isnan(out)
            for p in parts[1:]:
                better = p < out if name == "min" else p > out
                out = np.where(better, p, out)
                nulls |= np.isnan(p)
            out = np.array(out, dtype=np.float64)
            out[nulls] = np.nan
            return out

        return _Node(row, vec, NUMBER)

    @staticmethod
    def _math(name: str, arg: _Node) -> _Node:
        a_row, a_vec = arg.row, arg.vec
        row_fn: Callable[[Value], Value] = {
            "abs": _abs,
            "sqrt": _sqrt,
            "log": _log,
            "exp": _exp,
        }[name]

        def vec(cols: Columns, n: int) -> Vec:
            v = a_vec(cols, n)
            if not _is_float(v):
                return _elementwise(row_fn, [v], n)
            with np.errstate(all="ignore"):
                if name == "abs":
                    return np.abs(v)
                if name == "exp":
                    return np.exp(v)
                if name == "sqrt":
                    out = np.sqrt(v)
                    out[v < 0.0] = np.nan
                    return out
                out = np.log(v)
                out[v <= 0.0] = np.nan
                return out

        return _Node(lambda row: row_fn(a_row(row)), vec, NUMBER)


def _squeeze(v: npt.NDArray[np.object_], n: int) -> Vec:
    """Objects that are all numbers or nulls as floats (the one form of a number column)."""
    if all(x is None or type(x) is float for x in v):
        return _floats(v, n)
    return v


class _NotLiteral:
    pass


def _literal(node: ast.expr) -> Value | _NotLiteral:
    if isinstance(node, ast.Constant) and (
        node.value is None or isinstance(node.value, (str, int, float))
    ):
        return _norm(node.value)
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        value = float(node.operand.value)
        return -value if isinstance(node.op, ast.USub) else value
    return _NotLiteral()


def _symbol(op: ast.AST) -> str:
    symbols = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%",
               ast.Pow: "**", ast.FloorDiv: "//", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|",
               ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.Invert: "~"}  # fmt: skip
    return symbols.get(type(op), type(op).__name__)


def floats_equal(a: Any, b: Any) -> bool:
    """Whether two evaluated values are the same: both null, or the same bits.

    >>> floats_equal(float("nan"), None), floats_equal(0.0, -0.0)
    (True, False)
    """
    if _null(a) or _null(b):
        return _null(a) and _null(b)
    if isinstance(a, float) and isinstance(b, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b) and a == b
    return bool(a == b) and type(a) is type(b)
