"""Dashboard login: forwarded addresses, slowing guesses without lockouts, ending sessions.

Defects fixed (issue 11): ``X-Forwarded-For`` was believed from any loopback peer, so a
local client chose its own address; ten failures locked an address out for five
minutes (and with it the real user behind a shared proxy); a copied session cookie
stayed valid for 12 h after logout or a password change.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from offload.security.passwords import hash_password
from tests.support.engine import EngineProcess

PASSWORD = "correct horse battery"
OTHER_PASSWORD = "another staple"


def served(data: Path, password: str = PASSWORD, *, store_url: str | None = None,
           env: dict[str, str] | None = None) -> EngineProcess:
    return EngineProcess(data, mode="serve", database_url=store_url, env={
        "OFFLOAD_DASHBOARD_PASSWORD_HASH": hash_password(password, n=2**14),
        "OFFLOAD_API_KEYS": "ofk_admin_" + "k" * 40, **(env or {})})


def attempt(client: httpx.Client, secret: str, headers: dict[str, str] | None = None
            ) -> httpx.Response:
    page = client.get("/login")
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, page.text[:500]
    return client.post("/login", data={"csrf": match.group(1), "secret": secret, "next": "/"},
                       headers=headers or {})


def logged_in(url: str, cookie: str) -> bool:
    response = httpx.get(f"{url}/", cookies={"offload_session": cookie})
    assert response.status_code in (200, 303), response.text[:300]
    return response.status_code == 200


def login(url: str, password: str = PASSWORD) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=url, timeout=30)
    response = attempt(client, password)
    assert response.status_code == 303, response.text[:300]
    return client, client.cookies["offload_session"]


def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(tmp_path: Path) -> None:
    with served(tmp_path / "a") as engine, httpx.Client(base_url=engine.url) as client:
        statuses = [attempt(client, "wrong", {"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                    for i in range(5)]
        assert statuses == [401, 401, 401, 429, 429]  # one address: the peer's
    with served(tmp_path / "b", env={"OFFLOAD_TRUSTED_PROXIES": "127.0.0.1/32,::1"}) as engine, \
            httpx.Client(base_url=engine.url) as client:
        statuses = [attempt(client, "wrong", {"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                    for i in range(5)]
        assert statuses == [401] * 5  # each forwarded address counted on its own
        statuses = [attempt(client, "wrong", {"X-Forwarded-For": "198.51.100.7"}).status_code
                    for _ in range(4)]
        assert statuses == [401, 401, 401, 429]


def test_guessing_is_slowed_but_the_right_password_gets_in(tmp_path: Path) -> None:
    with served(tmp_path / "d") as engine:
        user, _ = login(engine.url)  # this browser is now known (device cookie)
        user.cookies.delete("offload_session")
        attacker = httpx.Client(base_url=engine.url, timeout=30)
        answers = [attempt(attacker, f"guess {i}") for i in range(12)]
        assert [a.status_code for a in answers[:3]] == [401, 401, 401]
        assert {a.status_code for a in answers[3:]} == {429}
        assert answers[3].headers["Retry-After"] == "1"
        # the known browser behind the same address is not held back by the attacker
        assert attempt(user, PASSWORD).status_code == 303
        # and the attacker's own wait is short and grows: 1 s, then 2 s
        time.sleep(1.1)  # real time is what is tested: the server's 1 s delay runs out
        assert attempt(attacker, PASSWORD).status_code == 303  # never a lockout


def test_logout_ends_a_copied_session(store_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    engine = served(data, store_url=store_url).start()
    try:
        client, cookie = login(engine.url)
        assert logged_in(engine.url, cookie)
        engine.kill()
        engine.start()  # sessions are stored: a restart keeps them
        assert logged_in(engine.url, cookie)
        page = client.get("/")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        assert client.post("/logout", data={"csrf": csrf.group(1)}).status_code == 303
        assert not logged_in(engine.url, cookie)  # the copy ends with the original
    finally:
        engine.kill()


def test_password_change_ends_sessions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    engine = served(data).start()
    try:
        _, cookie = login(engine.url)
        engine.kill()
        engine = served(data, OTHER_PASSWORD).start()
        assert not logged_in(engine.url, cookie)
        _, fresh = login(engine.url, OTHER_PASSWORD)
        assert logged_in(engine.url, fresh)
    finally:
        engine.kill()


@pytest.mark.parametrize("bad", ["not-an-ip", "10.0.0.0/33"])
def test_bad_trusted_proxy_is_refused_at_start(tmp_path: Path, bad: str) -> None:
    with pytest.raises(RuntimeError, match="TRUSTED_PROXIES"):
        served(tmp_path / "x", env={"OFFLOAD_TRUSTED_PROXIES": bad}).start(timeout=10)
