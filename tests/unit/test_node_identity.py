"""NodeIdentity: a stable node id in the data dir and one locked slot per live process."""

from __future__ import annotations

from pathlib import Path

import pytest

from offload.config import from_env
from offload.engine.identity import NodeIdentity
from offload.errors import ConfigError


def test_node_id_is_generated_once_and_kept(tmp_path: Path) -> None:
    one = NodeIdentity(tmp_path)
    prefix = one.acquire()
    one.release()
    again = NodeIdentity(tmp_path)
    assert again.acquire() == prefix
    assert prefix is not None and prefix.endswith("-0/")
    assert again.owner().startswith(prefix)
    again.release()


def test_live_slots_are_not_shared(tmp_path: Path) -> None:
    one, two = NodeIdentity(tmp_path, "web1"), NodeIdentity(tmp_path, "web1")
    assert one.acquire() == "web1-0/"
    assert two.acquire() == "web1-1/"
    one.release()
    three = NodeIdentity(tmp_path, "web1")
    assert three.acquire() == "web1-0/"  # a dead (released) slot is reused
    two.release()
    three.release()


def test_unusable_data_dir_means_no_identity(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    identity = NodeIdentity(blocker / "data")
    assert identity.acquire() is None
    assert identity.owner().startswith("engine-")


@pytest.mark.parametrize("bad", ["", "a/b", "-x", "x" * 64, "a b", "é"])
def test_bad_node_id_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="node id"):
        from_env({"OFFLOAD_NODE_ID": bad}) if bad else from_env(node_id=bad)
