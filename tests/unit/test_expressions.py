"""CEL expressions as Inngest uses them, and how the library treats JSON values."""

from __future__ import annotations

from typing import Any

import pytest

from offload.errors import ExpressionError
from offload.protocol.expressions import (
    Expression,
    compile_expression,
    evaluate_int,
    evaluate_key,
)

EVENT: dict[str, Any] = {
    "event": {
        "name": "shop/order.placed",
        "data": {
            "user": "u_1",
            "amount": 150,
            "ratio": 1.0,
            "tags": ["a", "b"],
            "customer": {"id": 7, "tier": "gold", "addresses": [{"city": "Oslo"}]},
            "nothing": None,
        },
    },
    "async": {"name": "shop/order.paid", "data": {"user": "u_1", "amount": 150.0}},
}


def test_inngest_wait_for_event_match() -> None:
    assert compile_expression("event.data.user == async.data.user").matches(EVENT)
    other = {**EVENT, "async": {"data": {"user": "u_2"}}}
    assert not compile_expression("event.data.user == async.data.user").matches(other)


def test_inngest_conditions() -> None:
    expr = compile_expression("event.data.amount > 100 && event.name == 'shop/order.placed'")
    assert expr.matches(EVENT)
    assert not compile_expression("event.data.amount > 200").matches(EVENT)
    assert compile_expression("'b' in event.data.tags").matches(EVENT)
    assert compile_expression("event.data.customer.addresses[0].city == 'Oslo'").matches(EVENT)
    assert compile_expression("event.data.tags.exists(t, t == 'a')").matches(EVENT)
    assert compile_expression("event.data.user.startsWith('u_')").matches(EVENT)
    assert compile_expression("size(event.data.tags) == 2").matches(EVENT)


def test_evaluate_returns_python_values() -> None:
    assert compile_expression("event.data.customer.id").evaluate(EVENT) == 7
    assert compile_expression("event.data.customer").evaluate(EVENT)["tier"] == "gold"
    assert compile_expression("event.data.tags").evaluate(EVENT) == ["a", "b"]
    assert compile_expression("event.data.nothing").evaluate(EVENT) is None


def test_missing_field_is_an_error_not_null() -> None:
    expr = compile_expression("event.data.missing == 'x'")
    with pytest.raises(ExpressionError, match="missing"):
        expr.evaluate(EVENT)
    assert not expr.matches(EVENT)  # errors never match
    assert not compile_expression("event.data.missing != 'x'").matches(EVENT)
    # has() tests presence; || short-circuits past an erroring right side.
    assert not compile_expression("has(event.data.missing)").matches(EVENT)
    assert compile_expression("has(event.data.user)").matches(EVENT)
    assert compile_expression("event.data.user == 'u_1' || event.data.missing").matches(EVENT)
    assert compile_expression("event.data.nothing == null").matches(EVENT)


def test_unknown_variable_and_bad_index_do_not_match() -> None:
    assert not compile_expression("nope.x == 1").matches(EVENT)
    assert not compile_expression("event.data.tags[5] == 'a'").matches(EVENT)
    assert not compile_expression("event.data.nothing.field == 1").matches(EVENT)
    # `async` is absent when matching a trigger rather than a wait.
    assert not compile_expression("event.data.user == async.data.user").matches(
        {"event": EVENT["event"]}
    )


def test_numbers__int_and_float_compare_by_value() -> None:
    assert compile_expression("event.data.amount == async.data.amount").matches(EVENT)
    assert compile_expression("event.data.ratio == 1").matches(EVENT)
    assert compile_expression("event.data.amount > 149.5").matches(EVENT)
    assert compile_expression("[1, 2] == [1.0, 2.0]").matches({})
    assert compile_expression("{'k': 1} == {'k': 1.0}").matches({})


def test_numbers__mixed_arithmetic_is_an_error() -> None:
    with pytest.raises(ExpressionError):
        compile_expression("event.data.amount + 0.5").evaluate(EVENT)
    assert compile_expression("double(event.data.amount) + 0.5").evaluate(EVENT) == 150.5


def test_numbers__bool_is_not_one_and_big_ints_become_floats() -> None:
    assert not compile_expression("x == 1").matches({"x": True})
    assert isinstance(compile_expression("x").evaluate({"x": 2**70}), float)


def test_matches_is_truthiness() -> None:
    assert compile_expression("event.data.user").matches(EVENT)
    assert not compile_expression("event.data.nothing").matches(EVENT)
    assert not compile_expression("false").matches(EVENT)


def test_compile__syntax_error() -> None:
    with pytest.raises(ExpressionError, match="invalid expression"):
        compile_expression("event.data.amount >")
    with pytest.raises(ExpressionError, match="empty"):
        compile_expression("  ")


def test_compile__size_limit() -> None:
    ok = "1 == 1" + " && true" * 500
    assert len(ok) < 4096
    compile_expression(ok)
    with pytest.raises(ExpressionError, match="4096 bytes"):
        compile_expression("1 == 1" + " && true" * 600)


def test_compile__cached() -> None:
    a = compile_expression("event.data.user == 'cache-test'")
    b = compile_expression("event.data.user == 'cache-test'")
    assert a is b
    assert isinstance(a, Expression) and a.source == "event.data.user == 'cache-test'"


def test_evaluation_error_message_does_not_leak_values() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("x + 1").evaluate({"x": "s3cret-value"})
    assert "s3cret-value" not in str(info.value)


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ("event.data.user", "u_1"),
        ("event.data.customer.id", "7"),
        ("event.data.ratio", "1"),  # 1.0 and 1 give the same key
        ("event.data.amount * 2", "300"),
        ("double(event.data.amount) / 4.0", "37.5"),
        ("event.data.tags", '["a","b"]'),
        ("{'b': 1, 'a': [true, null]}", '{"a":[true,null],"b":1}'),
        ("event.data.user + '-' + event.name", "u_1-shop/order.placed"),
        ("event.data.nothing", "null"),
    ],
)
def test_evaluate_key(source: str, key: str) -> None:
    assert evaluate_key(source, EVENT) == key


def test_evaluate_key__int_and_float_give_same_key() -> None:
    assert evaluate_key("event.data.id", {"event": {"data": {"id": 5}}}) == evaluate_key(
        "event.data.id", {"event": {"data": {"id": 5.0}}}
    )


def test_evaluate_key__missing_field_raises() -> None:
    with pytest.raises(ExpressionError):
        evaluate_key("event.data.missing", EVENT)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.data.customer.id", 7),
        ("event.data.amount", 100),  # clamped to hi
        ("0 - event.data.amount", -100),  # clamped to lo
        ("event.data.ratio * 2.7", 2),  # float truncates
        ("event.data.customer.tier == 'gold' ? 50 : 0", 50),
        ("event.data.missing", 3),  # error -> default
        ("event.data.user", 3),  # non-numeric -> default
        ("true", 3),  # bool is not a number
    ],
)
def test_evaluate_int(source: str, expected: int) -> None:
    assert evaluate_int(source, EVENT, lo=-100, hi=100, default=3) == expected


def test_evaluate_int__default_is_clamped_and_syntax_errors_raise() -> None:
    assert evaluate_int("event.data.missing", EVENT, lo=0, hi=10, default=50) == 10
    with pytest.raises(ExpressionError):
        evaluate_int("1 +", EVENT, lo=0, hi=10)
