"""Identifiers (names, ids, keys, path and query parameters) hold no control characters.

The same rule on both stores: PostgreSQL ``text`` cannot hold NUL at all, and SQLite
would store it, so without this check one store answers a misleading ``503`` and
the other accepts a name no one can type. Control characters inside JSON *data*
are fine (data is stored as JSON text, where they are escaped).
"""

from __future__ import annotations

import re

from fastapi import Request

from offload.errors import NotFoundError, ValidationError

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""C0 and C1 control characters, DEL, and lone surrogates (not valid UTF-8)."""


def has_control(text: str) -> bool:
    """True if ``text`` holds a control character or a lone surrogate."""
    return _CONTROL.search(text) is not None


def no_control(value: str) -> str:
    """``value`` unchanged, or ValueError (for pydantic validators) if it holds one."""
    if has_control(value):
        raise ValueError("must not contain control characters (such as NUL)")
    return value


def check_identifier(field: str, value: str | None) -> None:
    """Raise ValidationError (422) naming ``field`` if ``value`` holds a control character."""
    if value is not None and has_control(value):
        raise ValidationError(field, "must not contain control characters (such as NUL)",
                              "invalid_character")


class UnknownPathParameter(NotFoundError):
    """A path parameter no stored thing can match (answered 404, naming the parameter)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"no such resource: {field} contains a control character")
        self.field = field


async def reject_control_characters(request: Request) -> None:
    """A dependency for every route: path parameters with control characters are 404
    (no such thing can exist), query parameters 422; both name the parameter."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and has_control(value):
            raise UnknownPathParameter(f"path.{name}")
    for name, value in request.query_params.multi_items():
        check_identifier(f"query.{name}", value)
