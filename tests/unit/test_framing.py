"""Frames: encode, then parse from a byte stream cut at arbitrary places."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dora_runtime import _framing
from dora_runtime.errors import TransportError

_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=50)
    | st.binary(max_size=300)
)
messages = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)


@_SETTINGS
@given(objs=st.lists(messages, max_size=12), data=st.data())
def test_round_trip_through_random_splits(objs: list, data: st.DataObject) -> None:
    stream = b"".join(_framing.encode(o) for o in objs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    buf = _framing.FrameBuffer()
    got = []
    start = 0
    for cut in [*cuts, len(stream)]:
        buf.feed(stream[start:cut])
        got.extend(buf.frames())
        start = cut
    assert got == objs
    assert buf.pending == 0


@_SETTINGS
@given(objs=st.lists(messages, max_size=12), data=st.data())
def test_take_returns_every_body_whatever_the_reads(objs: list, data: st.DataObject) -> None:
    """``take`` (the receiver's read path, with its one-whole-frame shortcut) gives the same
    bodies, in order, as the frames that were sent, however the stream is cut into reads."""
    frames = [_framing.encode(o) for o in objs]
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    cuts += [sum(map(len, frames[: i + 1])) for i in range(len(frames)) if data.draw(st.booleans())]
    buf = _framing.FrameBuffer()
    got = []
    start = 0
    for cut in sorted(set(c for c in [*cuts, len(stream)] if c > 0)):
        if cut <= start:
            continue
        n = buf.take(stream[start:cut])
        assert n == len(buf.out)
        got.extend(_framing.decode_body(b) for b in buf.out)
        start = cut
    assert got == objs
    assert buf.pending == 0


def test_take_keep_last_skips_older_frames() -> None:
    buf = _framing.FrameBuffer()
    stream = b"".join(_framing.encode(["M", i]) for i in range(5))
    assert buf.take(stream, keep_last=2, skipped=[]) == 5
    assert [_framing.decode_body(b) for b in buf.out] == [["M", 3], ["M", 4]]
    assert buf.take(_framing.encode(["M", 5]), keep_last=2) == 1
    assert [_framing.decode_body(b) for b in buf.out] == [["M", 5]]


@_SETTINGS
@given(obj=messages)
def test_partial_frame_yields_nothing_until_complete(obj: object) -> None:
    frame = _framing.encode(obj)
    buf = _framing.FrameBuffer()
    buf.feed(frame[:-1])
    assert list(buf.frames()) == []
    assert buf.pending == len(frame) - 1
    buf.feed(frame[-1:])
    assert list(buf.frames()) == [obj]


def test_frame_layout_is_u32_le_length_then_msgpack() -> None:
    frame = _framing.encode(["M", 1])
    (n,) = struct.unpack_from("<I", frame)
    assert n == len(frame) - 4
    assert _framing.decode_body(frame[4:]) == ["M", 1]


def test_oversized_frame_is_refused() -> None:
    buf = _framing.FrameBuffer()
    buf.feed(struct.pack("<I", _framing.MAX_FRAME + 1))
    with pytest.raises(TransportError, match="exceeds"):
        list(buf.frames())


def test_recv_frame_over_a_socket() -> None:
    a, b = socket.socketpair()
    with a, b:
        big = ["M", b"x" * 300_000]
        writer = threading.Thread(
            target=lambda: a.sendall(_framing.encode(big) + _framing.encode([1]))
        )
        writer.start()
        assert _framing.recv_frame(b) == big
        assert _framing.recv_frame(b) == [1]
        writer.join()
        a.shutdown(socket.SHUT_WR)
        assert _framing.recv_frame(b) is None  # clean end of stream


def test_recv_frame_cut_in_the_middle_raises() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(_framing.encode(["M", "abcdef"])[:-2])
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(TransportError, match="middle of a frame"):
            _framing.recv_frame(b)
