"""The one exception of inbound verification."""

from __future__ import annotations


class Refused(Exception):  # noqa: N818 - "refused" is what the dashboard shows
    """A delivery that does not verify. ``reason`` is safe to show and to store."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
