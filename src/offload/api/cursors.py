"""Page cursors: opaque, checksummed, and bound to the list that issued them.

A cursor is ``<list>.<position>.<check>``: the store's position (the last id of the
page), and a keyed BLAKE2 checksum over both, so a cursor that was mangled, made
up, or issued by another list is answered ``400`` naming ``query.cursor`` instead of
silently answering an empty or first page.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from offload.errors import ValidationError

_POSITION = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
"""Store positions are ULIDs."""


class BadCursorError(ValidationError):
    """A cursor this server did not issue for this list (answered ``400``)."""


def _check(kind: str, position: str) -> str:
    return hashlib.blake2b(position.encode(), key=f"offload-cursor:{kind}".encode(),
                           digest_size=6).hexdigest()


def encode(kind: str, position: str | None) -> str | None:
    """The cursor of the next page of list ``kind`` after ``position`` (None: no more)."""
    if position is None:
        return None
    return f"{kind}.{position}.{_check(kind, position)}"


def decode(kind: str, cursor: str | None) -> str | None:
    """The store position of ``cursor`` for list ``kind``; BadCursorError if not ours."""
    if cursor is None or cursor == "":
        return None
    got_kind, _, rest = cursor.partition(".")
    position, _, check = rest.partition(".")
    if got_kind != kind:
        raise BadCursorError("query.cursor", f"is not a cursor of this list ({kind}); use "
                             "the next_cursor of a previous page", "invalid_cursor")
    if not _POSITION.fullmatch(position) or not hmac.compare_digest(
            check, _check(kind, position)):
        raise BadCursorError("query.cursor", "is malformed or was altered; use the "
                             "next_cursor of a previous page", "invalid_cursor")
    return position
