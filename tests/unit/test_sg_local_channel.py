"""The same-node channel to a shard host (``local_channel``), over real Unix sockets,
without Ray: what it carries, what it refuses, and how a late or dead host ends a call."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.scatter_gather.local_channel import (MAX_REQUEST_BYTES, TOKEN_BYTES, ChannelAddress,
                                                 ChannelClient, ChannelServer, decode_request,
                                                 encode_request, wait_calls)

pytestmark = pytest.mark.unit


def echo(request: Any, budget_s: float | None) -> bytes | None:
    """Replies with the request as JSON; special requests stall, fail or are not framed."""
    if request.get("sleep_s"):
        time.sleep(request["sleep_s"])
    if request.get("fail"):
        raise KeyError("injected")
    if request.get("not_framed"):
        return None
    return json.dumps([request, budget_s]).encode()


@pytest.fixture
def server() -> Iterator[ChannelServer]:
    running = ChannelServer(echo)
    yield running
    running.close()


def ask(client: ChannelClient, request: Any, wait_s: float = 5.0) -> tuple[str, Any]:
    call = client.send(encode_request(request, 0.25))
    assert call is not None
    (outcome,) = wait_calls([call], time.monotonic() + wait_s, time.monotonic)
    return outcome


def test_replies_not_framed_and_errors_come_back_as_outcomes(server: ChannelServer) -> None:
    client = ChannelClient(server.address("node"))
    kind, body = ask(client, {"q": "a", "k": [1, 2]})
    assert kind == "reply" and json.loads(body) == [{"q": "a", "k": [1, 2]}, 0.25]
    assert ask(client, {"not_framed": True}) == ("not_framed", None)
    assert ask(client, {"fail": True}) == ("error", "KeyError: 'injected'")
    assert len(client._idle) == 1  # the one connection went back to the pool each time


def test_several_calls_at_once_each_get_their_own_reply(server: ChannelServer) -> None:
    client = ChannelClient(server.address("node"))
    calls = [client.send(encode_request({"i": i, "sleep_s": 0.05 * (3 - i)}, None)) for i in range(3)]
    outcomes = wait_calls(calls, time.monotonic() + 5, time.monotonic)  # type: ignore[arg-type]
    assert [json.loads(body)[0]["i"] for _, body in outcomes] == [0, 1, 2]
    assert len(client._idle) == 3


def test_a_late_reply_is_dropped_with_its_connection(server: ChannelServer) -> None:
    client = ChannelClient(server.address("node"))
    call = client.send(encode_request({"sleep_s": 0.5}, None))
    assert wait_calls([call], time.monotonic() + 0.05, time.monotonic) == [("late", None)]  # type: ignore[list-item]
    assert client._idle == []
    kind, body = ask(client, {"after": True})  # a new connection: not the late reply
    assert kind == "reply" and json.loads(body)[0] == {"after": True}


def test_a_connection_that_ends_is_broken_and_an_unreachable_host_unusable(tmp_path: Any) -> None:
    path = str(tmp_path / "host.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    body = encode_request({"x": 1}, None)
    assert body is not None

    def hang_up() -> None:  # accepts, reads the token and the request, dies without a reply
        conn, _ = listener.accept()
        wanted = TOKEN_BYTES + 4 + len(body)
        got = b""
        while len(got) < wanted:
            got += conn.recv(wanted - len(got))
        conn.close()

    thread = threading.Thread(target=hang_up)
    thread.start()
    client = ChannelClient(ChannelAddress("node", path, b"t" * TOKEN_BYTES))
    call = client.send(body)
    thread.join()
    assert wait_calls([call], time.monotonic() + 5, time.monotonic) == [("broken", None)]  # type: ignore[list-item]
    listener.close()
    os.unlink(path)
    assert client.send(encode_request({"x": 1}, None)) is None and not client.usable


def test_a_wrong_token_is_refused(server: ChannelServer) -> None:
    real = server.address("node")
    intruder = ChannelClient(ChannelAddress("node", real.path, bytes(TOKEN_BYTES)))
    assert ask(intruder, {"x": 1}) == ("broken", None)
    assert ask(ChannelClient(real), {"x": 1})[0] == "reply"


def test_an_oversized_request_is_not_encoded_and_not_read(server: ChannelServer) -> None:
    assert encode_request({"blob": "x" * MAX_REQUEST_BYTES}, None) is None  # goes through Ray
    conn = ChannelClient(server.address("node")).connect()
    conn.sendall((MAX_REQUEST_BYTES + 1).to_bytes(4, "little"))  # a header, no body
    reply = conn.recv(1 << 16)
    assert reply[4:5] == b"E" and b"limit" in reply
    assert conn.recv(1) == b""  # and the server hung up


def test_the_socket_is_in_a_private_directory_removed_on_close() -> None:
    running = ChannelServer(echo)
    directory = os.path.dirname(running.path)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(running.path).st_mode)
    running.close()
    assert not os.path.exists(directory)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(json_values, st.none() | st.floats(min_value=0, max_value=10))
def test_plain_json_requests_round_trip(request: Any, budget_s: float | None) -> None:
    body = encode_request(request, budget_s)
    assert body is not None and decode_request(body) == (request, budget_s)


@pytest.mark.parametrize("request_", [(1, 2), {1: "a"}, {"x": float("nan")}, {"x": b"raw"},
                                      {"x": {1, 2}}, {"x": (1,)}])
def test_requests_json_would_change_are_not_encoded(request_: Any) -> None:
    assert encode_request(request_, 1.0) is None
