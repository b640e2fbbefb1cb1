"""Frames through shared memory: pools of fixed-size slots in /dev/shm.

A producer owns one pool per output array and writes frames straight into a free slot;
only a small reference (pool, slot, generation) crosses the socket. Slots are mapped and
touched once at start, because filling freshly mapped memory costs 0.7-2 ms per 720p
frame on this machine while reusing a slot costs nothing. A slot is reused only after
every consumer released it; the generation number written into the slot's header lets a
reader detect a stale reference instead of reading a frame that was overwritten.

The runner owns the names (prefix `pg-<run id>-`) and unlinks every pool when the graph
ends, so a producer killed with SIGKILL leaks nothing and its consumers keep reading the
slots they hold (an unlinked file stays mapped).
"""
from __future__ import annotations

import math
import mmap
import os
import re

import numpy as np

SHM_DIR = "/dev/shm"
SLOT_HEADER = 64          # generation (uint64) + padding, keeps data 64-byte aligned
PAGE = 4096
MIN_SHM_BYTES = 64 * 1024  # smaller arrays go inline on the socket: cheaper than a slot
NAME_PATTERN = re.compile(r"^pg-[0-9a-f]{8,32}-[A-Za-z0-9_.-]{1,180}$")


def pool_path(name: str) -> str:
    return os.path.join(SHM_DIR, name)


class SlotPool:
    """Producer side: allocate, reference-count and recycle slots of one pool."""

    def __init__(self, name: str, slot_data_bytes: int, slots: int):
        self.name = name
        self.slot_data_bytes = slot_data_bytes
        self.slot_bytes = -(-(SLOT_HEADER + slot_data_bytes) // PAGE) * PAGE
        self.slots = slots
        fd = os.open(pool_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, self.slot_bytes * slots)
            self.map = mmap.mmap(fd, self.slot_bytes * slots)
        finally:
            os.close(fd)
        self.bytes = np.frombuffer(self.map, dtype=np.uint8)
        self.bytes[::PAGE] = 0  # touch every page now, not on the hot path
        self.generations = np.frombuffer(self.map, dtype=np.uint64)[:: self.slot_bytes // 8]
        self.refcount = [0] * slots
        self.free = list(range(slots - 1, -1, -1))

    def acquire(self) -> int | None:
        """A free slot with a new generation, or None when all are held."""
        if not self.free:
            return None
        slot = self.free.pop()
        self.generations[slot] += 1
        self.refcount[slot] = 1  # held by the producer until sent or discarded
        return slot

    def view(self, slot: int, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        start = slot * self.slot_bytes + SLOT_HEADER
        return np.frombuffer(self.map, dtype=dtype, count=count, offset=start).reshape(shape)

    def ref(self, slot: int) -> list:
        return [self.name, slot, int(self.generations[slot]), self.slot_bytes]

    def retain(self, slot: int, count: int = 1) -> None:
        self.refcount[slot] += count

    def release(self, slot: int) -> None:
        self.refcount[slot] -= 1
        if self.refcount[slot] <= 0:
            self.refcount[slot] = 0
            self.free.append(slot)

    def fits(self, nbytes: int) -> bool:
        return nbytes <= self.slot_data_bytes

    def close(self) -> None:
        self.bytes = self.generations = None
        try:
            self.map.close()
        except BufferError:  # a view is still alive somewhere; the OS frees it at exit
            pass


class PoolReader:
    """Consumer side: map pools by name (checked against this run) and view their slots.

    Views are cached per (pool, slot, dtype, shape): a slot's memory never moves, so the
    hot path is a dictionary lookup and a generation check, not new numpy objects.
    """

    def __init__(self, run_id: str):
        self.prefix = f"pg-{run_id}-"
        self.maps: dict[str, tuple[mmap.mmap, int, np.ndarray]] = {}
        self.views: dict[tuple, np.ndarray] = {}

    def _attach(self, name: str):
        entry = self.maps.get(name)
        if entry is not None:
            return entry
        if not (name.startswith(self.prefix) and NAME_PATTERN.match(name)):
            raise ValueError(f"pool name {name!r} is not one of this run's pools")
        fd = os.open(pool_path(name), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            mapped = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        entry = (mapped, size, np.frombuffer(mapped, dtype=np.uint64, count=size // 8))
        self.maps[name] = entry
        return entry

    def view(self, ref: list, dtype: str, shape: list) -> np.ndarray:
        """A read-only view of a slot; raises ValueError for a bad or stale reference.

        ref is [pool name, slot, generation, slot size in bytes] as SlotPool.ref makes it.
        """
        name, slot, generation, slot_bytes = ref
        key = (name, slot, slot_bytes, dtype, *shape)
        view = self.views.get(key)
        words = self.maps[name][2] if view is not None else None
        if view is None:
            mapped, size, words = self._attach(name)
            itemsize = np.dtype(dtype).itemsize
            nbytes = math.prod(shape) * itemsize
            start = slot * slot_bytes
            if slot_bytes < SLOT_HEADER or slot_bytes % PAGE or start + slot_bytes > size or SLOT_HEADER + nbytes > slot_bytes:
                raise ValueError(f"slot {slot} of {name} is out of the pool's bounds")
            view = np.frombuffer(mapped, dtype=dtype, count=nbytes // itemsize if itemsize else 0,
                                 offset=start + SLOT_HEADER).reshape(shape)
            if len(self.views) > 4096:
                self.views.clear()
            self.views[key] = view
        if words[slot * slot_bytes // 8] != generation:
            raise ValueError(f"slot {slot} of {name} is stale (generation changed)")
        return view

    def generation_ok(self, ref: list) -> bool:
        """False when the producer reused the slot: what was read may be torn."""
        name, slot, generation, slot_bytes = ref
        entry = self.maps.get(name)
        return entry is not None and entry[2][slot * slot_bytes // 8] == generation

    def close(self) -> None:
        self.views.clear()
        for mapped, _, _ in self.maps.values():
            try:
                mapped.close()
            except BufferError:
                pass
        self.maps.clear()
