"""The message format and shared-memory slots, checked without processes: what a peer may
send is validated before the engine trusts it, and a stale slot reference is detected."""
import os

import msgpack
import numpy as np
import pytest

from posegraph import wire
from posegraph.shm import PoolReader, SlotPool, pool_path

GOOD = {"k": "d", "e": 0, "f": 0, "i": 0, "s": 0, "q": 5, "t": 123, "x": 0, "b": True, "m": None,
        "a": [["", "|u1", [4, 4, 3], None]]}


def test_a_well_formed_header_and_buffer_decode_to_the_array_sent():
    frame = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    header = wire.decode_header(msgpack.packb(GOOD))
    array = wire.inline_array(header.arrays[0], memoryview(frame.tobytes()))
    assert np.array_equal(array, frame) and not array.flags.writeable


@pytest.mark.parametrize("change, reason", [
    ({"k": "zz"}, "unknown message kind"),
    ({"q": -1}, "'q'"),
    ({"q": "5"}, "'q'"),
    ({"s": True}, "'s'"),
    ({"x": 9}, "'x'"),
    ({"b": 1}, "'b'"),
    ({"m": [1]}, "'m'"),
    ({"a": "x"}, "'a'"),
    ({"a": [["", "O", [1], None]]}, "dtype"),
    ({"a": [["", "|u1", [-1], None]]}, "shape"),
    ({"a": [["", "|u1", [1 << 20, 1 << 20], None]]}, "2 GiB"),
    ({"a": [["", "|u1", [1], ["pool", -1, 0, 0]]]}, "ref"),
    ({"a": [["", "|u1", [1], None], ["x", "|u1", [1], None]]}, "bare"),
])
def test_malformed_headers_are_refused_with_the_reason(change, reason):
    with pytest.raises(wire.WireError, match=reason):
        wire.decode_header(msgpack.packb(dict(GOOD, **change)))


@pytest.mark.parametrize("raw", [b"", b"\xc1", os.urandom(64), msgpack.packb([1, 2]), msgpack.packb(GOOD)[:-3]])
def test_random_and_truncated_bytes_are_refused(raw):
    with pytest.raises(wire.WireError):
        wire.decode_header(raw)


def test_a_buffer_shorter_than_its_header_promises_is_refused():
    header = wire.decode_header(msgpack.packb(GOOD))
    with pytest.raises(wire.WireError, match="promises 48 bytes"):
        wire.inline_array(header.arrays[0], b"\0" * 47)


def test_back_channel_accepts_hellos_and_ack_batches_and_refuses_the_rest():
    assert wire.decode_back(msgpack.packb(["h", "pose.0", 2, 0])).consumer == "pose.0"
    assert len(wire.decode_back(msgpack.packb(["b", [0, 0, 1, 3, 0], [0, 0, 2, 1, 0]])).acks) == 2
    for bad in (["b", [0, 0, 1, 9, 0]], ["b", [0, -1, 1, 1, 0]], ["h", 3, 0, 0], ["z"], {"a": 1}):
        with pytest.raises(wire.WireError):
            wire.decode_back(msgpack.packb(bad))


def test_port_values_round_trip_through_arrays_and_meta():
    value = {"landmarks": np.ones((33, 4), np.float32), "label": "squat", "score": np.float32(0.5)}
    bare, arrays, meta = wire.split_value(value)
    assert not bare and [n for n, _ in arrays] == ["landmarks"] and meta["label"] == "squat"
    header = wire.decode_header(wire.pack(dict(GOOD, b=False, m=meta, a=[[n, a.dtype.str, list(a.shape), None] for n, a in arrays])))
    back = wire.join_value(False, [("landmarks", arrays[0][1])], header.meta, empty=False)
    assert back["label"] == "squat" and back["score"] == 0.5 and back["landmarks"].shape == (33, 4)
    assert wire.join_value(True, [], None, empty=True) is None


@pytest.fixture
def pool():
    pool = SlotPool("pg-0123456789ab-test.0.frame.v.0.1", 640 * 480 * 3, 3)
    yield pool
    pool.close()
    os.unlink(pool_path(pool.name))


def test_a_slot_is_read_through_its_reference_without_copying(pool):
    slot = pool.acquire()
    frame = pool.view(slot, (480, 640, 3), np.uint8)
    frame[:] = 7
    reader = PoolReader("0123456789ab")
    seen = reader.view(pool.ref(slot), "|u1", [480, 640, 3])
    assert seen.sum() == 7 * frame.size and not seen.flags.writeable
    frame[0, 0, 0] = 9
    assert seen[0, 0, 0] == 9  # the same memory, not a copy
    del seen
    reader.close()


def test_a_reused_slot_makes_the_old_reference_stale(pool):
    slot = pool.acquire()
    ref = pool.ref(slot)
    pool.release(slot)
    assert pool.acquire() == slot  # the freed slot is handed out again, with a new generation
    reader = PoolReader("0123456789ab")
    with pytest.raises(ValueError, match="stale"):
        reader.view(ref, "|u1", [480, 640, 3])
    assert not reader.generation_ok(ref)
    reader.close()


def test_slots_are_recycled_only_after_every_holder_released_them(pool):
    slots = [pool.acquire() for _ in range(3)]
    assert pool.acquire() is None
    pool.retain(slots[0], 2)  # two consumers hold it besides the producer
    pool.release(slots[0])
    pool.release(slots[0])
    assert pool.acquire() is None
    pool.release(slots[0])
    assert pool.acquire() == slots[0]


def test_references_outside_this_run_or_the_pool_are_refused(pool):
    reader = PoolReader("0123456789ab")
    with pytest.raises(ValueError, match="not one of this run's pools"):
        reader.view(["pg-ffffffffffff-x", 0, 1, 4096 * 300], "|u1", [1])
    with pytest.raises(ValueError, match="not one of this run's pools"):
        reader.view(["../../etc/passwd", 0, 1, 4096], "|u1", [1])
    with pytest.raises(ValueError, match="out of the pool"):
        reader.view([pool.name, 7, 1, pool.slot_bytes], "|u1", [480, 640, 3])
    reader.close()
