"""Unit tests of request ids and their expiry (no Ray)."""

from __future__ import annotations

import pytest

from engine.scatter_gather import RequestExpiredError, UnknownRequestError
from engine.scatter_gather.requests import RequestTable

pytestmark = pytest.mark.unit


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_records_live_for_the_ttl_then_expire_with_a_clear_error() -> None:
    clock = FakeClock()
    table: RequestTable[str] = RequestTable(ttl_s=10.0, clock=clock)
    first = table.add("first")
    clock.now += 6
    second = table.add("second")
    assert first != second and len(first) == 32
    assert table.get(first) == "first"
    clock.now += 5  # first is 11 s old, second 5 s
    with pytest.raises(RequestExpiredError, match=f"{first}.*expired.*10 s"):
        table.get(first)
    assert table.get(second) == "second"
    assert len(table) == 1


def test_unknown_ids_raise_a_key_error_naming_the_id() -> None:
    table: RequestTable[str] = RequestTable(ttl_s=1.0, clock=FakeClock())
    with pytest.raises(UnknownRequestError, match="unknown request id 'nope'") as info:
        table.get("nope")
    assert isinstance(info.value, KeyError)
    assert not isinstance(info.value, RequestExpiredError)


def test_explicit_ids_and_discard() -> None:
    table: RequestTable[int] = RequestTable(ttl_s=1.0, clock=FakeClock())
    assert table.add(7, "my-id") == "my-id"
    assert table.get("my-id") == 7
    table.discard("my-id")
    with pytest.raises(UnknownRequestError):
        table.get("my-id")
