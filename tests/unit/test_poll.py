"""The suite's one polling helper (tests/support/poll.py)."""

from __future__ import annotations

import pytest

from tests.support.engine import free_port
from tests.support.poll import answers, eventually
from tests.support.target import Target


def test_eventually_returns_the_first_truthy_value() -> None:
    calls = iter([None, [], 0, {"ok": 1}, "never reached"])
    assert eventually(lambda: next(calls), interval=0) == {"ok": 1}


def test_eventually_names_what_it_waited_for_and_the_detail() -> None:
    with pytest.raises(AssertionError) as failed:
        eventually(lambda: None, timeout=0.1, interval=0.01, what="the moon",
                   detail=lambda: {"seen": "clouds"})
    assert str(failed.value) == "timed out after 0.1s waiting for the moon: {'seen': 'clouds'}"


def test_eventually_lets_the_probes_own_errors_through() -> None:
    def probe() -> None:
        raise KeyError("status")

    with pytest.raises(KeyError):
        eventually(probe, timeout=5)


def test_answers_is_false_where_nothing_listens() -> None:
    assert answers(f"http://127.0.0.1:{free_port()}/") is False


def test_answers_is_true_for_any_http_answer() -> None:
    target = Target().start()
    target.script("/missing", (404, {}, b"no", 0.0))
    try:
        assert answers(f"{target.url}/missing") is True
    finally:
        target.stop()
