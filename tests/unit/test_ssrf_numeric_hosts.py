"""Numeric host forms are read as the system resolver reads them, and refused up front."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from offload.errors import AddressRefusedError
from offload.outbound.ssrf import AddressPolicy, numeric_host

FORMS = {
    "2130706433": "127.0.0.1", "0": "0.0.0.0", "127.1": "127.0.0.1",  # noqa: S104
    "017700000001": "127.0.0.1", "0x7f000001": "127.0.0.1", "0x7f.1": "127.0.0.1",
    "0177.0.0.1": "127.0.0.1", "0x7F.0x0.0.01": "127.0.0.1", "127.0.1": "127.0.0.1",
    "167772161": "10.0.0.1", "134744072": "8.8.8.8", "169.254.43518": "169.254.169.254",
}
NOT_NUMERIC = ["example.com", "1.2.3.4.5", "256.1", "127.0.0.256", "0x", "08", "1..2",
               "0x1g", "4294967296", "-1", "1e3"]


@pytest.mark.parametrize(("host", "ip"), FORMS.items())
def test_numeric_host__reads_like_the_system_resolver(host: str, ip: str) -> None:
    assert numeric_host(host) == ipaddress.IPv4Address(ip)
    assert socket.gethostbyname(host) == ip  # the resolver the guard relies on agrees


@pytest.mark.parametrize("host", NOT_NUMERIC)
def test_numeric_host__none_for_other_names(host: str) -> None:
    assert numeric_host(host) is None


@pytest.mark.parametrize("host", ["2130706433", "0", "127.1", "017700000001", "0x7f.1",
                                  "169.254.43518", "localhost", "2130706433."])
async def test_check_url__same_reason_as_the_guard_at_call_time(host: str) -> None:
    policy = AddressPolicy()
    with pytest.raises(AddressRefusedError) as at_submission:
        policy.check_url(f"http://{host}:8080/x")
    with pytest.raises(AddressRefusedError) as at_call:
        await policy.resolve_and_check(host, 8080)
    assert str(at_submission.value) == str(at_call.value)


def test_check_url__trailing_dot_is_the_same_host() -> None:
    with pytest.raises(AddressRefusedError, match="loopback"):
        AddressPolicy().check_url("http://2130706433./")


def test_check_url__follows_the_policy() -> None:
    AddressPolicy(allow_loopback=True).check_url("http://127.1:9/")
    AddressPolicy(allow_list=["10.0.0.0/8"]).check_url("http://167772161/")
    AddressPolicy().check_url("http://134744072/")  # 8.8.8.8: public
    AddressPolicy().check_url("http://example.com/")  # names are resolved at call time
    with pytest.raises(AddressRefusedError, match="private address"):
        AddressPolicy(allow_loopback=True).check_url("http://167772161/")
    with pytest.raises(AddressRefusedError, match="loopback"):
        AddressPolicy().check_url("http://[::ffff:127.0.0.1]/")
