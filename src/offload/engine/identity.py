"""The node identity an engine process claims work under, so a restart can take it back.

Every lease names its owner. A lease owner is ``<node>-<slot>/<random>``: ``node`` is
the node id (``--node-id`` / ``OFFLOAD_NODE_ID``, or one generated once and kept in
``<data_dir>/node_id``), and ``slot`` is the first of ``<data_dir>/node-slots/<n>.lock``
this process could lock (``flock``, released by the kernel when the process dies,
even on ``kill -9``). A process holding slot ``n`` is therefore the only live process
with the prefix ``<node>-<n>/``: any lease under that prefix held by someone else
belongs to a dead process and is taken back at start instead of waiting for it to
expire. Several engines sharing one data dir each get their own slot.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from pathlib import Path

from offload.config import validate_node_id
from offload.ids import new_id

log = logging.getLogger("offload.engine")

MAX_SLOTS = 256


class NodeIdentity:
    """A locked slot of this node: the owner prefix whose leases only this process holds."""

    def __init__(self, data_dir: Path, node_id: str | None = None) -> None:
        self.data_dir = data_dir
        self.node_id = node_id
        self.prefix: str | None = None
        """``<node>-<slot>/`` once acquired; None if no slot could be locked."""
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Lock a free slot; the owner prefix, or None (then nothing is taken back)."""
        try:
            node = self.node_id or self._stored_node_id()
            slots = self.data_dir / "node-slots"
            slots.mkdir(parents=True, exist_ok=True)
            for slot in range(MAX_SLOTS):
                fd = os.open(slots / f"{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._fd = fd
                self.prefix = f"{node}-{slot}/"
                return self.prefix
        except OSError as exc:
            log.warning("no node identity: leases of a crashed engine will expire instead "
                        "of being taken back at restart", extra={"error": str(exc)})
        return None

    def owner(self) -> str:
        """A fresh lease owner name under this identity (random if none was acquired)."""
        return f"{self.prefix or 'engine-'}{new_id()}"

    def release(self) -> None:
        """Unlock the slot (the kernel does it too when the process dies)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _stored_node_id(self) -> str:
        path = self.data_dir / "node_id"
        if path.exists():
            return validate_node_id(path.read_text(encoding="utf-8").strip())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        node = f"n{secrets.token_hex(6)}"
        tmp = path.with_name(f"node_id.{os.getpid()}.tmp")
        tmp.write_text(node + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)  # atomic and never overwrites: two first starts agree
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return validate_node_id(path.read_text(encoding="utf-8").strip())
