"""CEL expressions for matching events and computing keys (``common-expression-language``).

Behaviour of the library, pinned by ``tests/unit/test_expressions.py``:

* a missing map key or an unknown variable is an evaluation *error*, not null;
  ``has(event.data.x)`` tests presence. :meth:`Expression.matches` treats any error
  as no match, as Inngest does, and ``a || b`` short-circuits past an error in ``b``;
* ints and floats compare by value (``1 == 1.0`` is true, also inside lists and
  maps), but arithmetic does not mix them (``1 + 1.0`` is an error);
* Python ints beyond 64 bits arrive as floats; ``bool`` is not a number.

There is no evaluation time limit in the library; sources are capped at 4 KiB.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import cel

from offload.errors import ExpressionError

__all__ = [
    "MAX_SOURCE_BYTES",
    "Expression",
    "compile_expression",
    "evaluate_int",
    "evaluate_key",
]

MAX_SOURCE_BYTES = 4096
_MAX_EXACT_FLOAT = 2**53


class Expression:
    """A compiled CEL expression; cheap to evaluate many times, safe to share."""

    __slots__ = ("_program", "source")

    def __init__(self, source: str, program: Any) -> None:
        self.source = source
        self._program = program

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """Evaluate with ``variables`` (e.g. ``{"event": {...}}``); raise ExpressionError."""
        try:
            return self._program.execute(dict(variables))
        except Exception as err:  # the library raises KeyError, TypeError, RuntimeError, ...
            raise ExpressionError(f"cannot evaluate {self.source!r}: {err}") from None

    def matches(self, variables: Mapping[str, Any]) -> bool:
        """True if the result is truthy; evaluation errors (missing fields) are False."""
        try:
            result = self.evaluate(variables)
        except ExpressionError:
            return False
        return bool(result)


@functools.lru_cache(maxsize=1024)
def _compile(source: str) -> Expression:
    try:
        program = cel.compile(source)
    except Exception as err:
        raise ExpressionError(f"invalid expression {source!r}: {err}") from None
    return Expression(source, program)


def compile_expression(source: str) -> Expression:
    """Compile ``source`` (cached); raise ExpressionError on syntax errors or > 4 KiB."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("expression is empty")
    if len(source.encode("utf-8")) > MAX_SOURCE_BYTES:
        raise ExpressionError(f"expression is longer than {MAX_SOURCE_BYTES} bytes")
    return _compile(source)


def _normalise(value: Any) -> Any:
    """Make a CEL result JSON-serialisable, with integral floats written as ints."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ExpressionError("expression result is not a finite number")
        if value.is_integer() and abs(value) <= _MAX_EXACT_FLOAT:
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise ExpressionError(f"expression result of type {type(value).__name__} cannot be a key")


def _compiled(source: str | Expression) -> Expression:
    return source if isinstance(source, Expression) else compile_expression(source)


def evaluate_key(source: str | Expression, variables: Mapping[str, Any]) -> str:
    """Evaluate ``source`` (text or compiled) into a stable string key (concurrency,
    throttle, debounce).

    A string result is the key itself; anything else becomes canonical JSON text
    (sorted keys, no spaces, ``1.0`` written as ``1``). Raises ExpressionError if the
    expression fails, e.g. on a missing field.
    """
    result = _compiled(source).evaluate(variables)
    if isinstance(result, str):
        return result
    return json.dumps(_normalise(result), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def evaluate_int(
    source: str | Expression,
    variables: Mapping[str, Any],
    *,
    lo: int,
    hi: int,
    default: int = 0,
) -> int:
    """Evaluate ``source`` to an int clamped to ``[lo, hi]`` (e.g. priority).

    Errors and non-numeric results give ``default`` (also clamped); floats truncate.
    Compile errors still raise ExpressionError.
    """
    expression = _compiled(source)
    try:
        result = expression.evaluate(variables)
    except ExpressionError:
        result = default
    if isinstance(result, bool) or not isinstance(result, int | float):
        result = default
    if isinstance(result, float):
        result = int(result) if math.isfinite(result) else default
    return max(lo, min(hi, int(result)))
