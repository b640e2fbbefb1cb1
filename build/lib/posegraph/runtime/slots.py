"""A node process's shared-memory output slots: what node code allocates, what it passes
on from its inputs, and how arrays are encoded for a link (a slot reference, or bytes).

State, declared in __init__:
  pools        (port, array name) -> this process's SlotPool for it
  allocated    id(array) -> (array, pool, slot): slots handed out by ctx.alloc and not yet sent
  forwardable  id(array) -> (array, slot ref): input arrays living in a producer's slots,
               for the packet being processed (passing one on forwards the reference)
"""
from __future__ import annotations

import numpy as np

from ..shm import MIN_SHM_BYTES, SlotPool


class Slots:
    def __init__(self, run_id: str, instance: str, incarnation: int, pool_slots: int, max_pool_bytes: int, wait):
        self.prefix = f"pg-{run_id}-{instance}"
        self.incarnation = incarnation
        self.pool_slots = pool_slots
        self.max_pool_bytes = max_pool_bytes
        self.wait = wait  # serve the back channel for a while: releases free slots
        self.pools: dict[tuple[str, str], SlotPool] = {}
        self.pool_count = 0
        # keyed by id(array); the array is kept in the value so the id stays its own
        self.allocated: dict[int, tuple[np.ndarray, SlotPool, int]] = {}
        self.forwardable: dict[int, tuple[np.ndarray, list]] = {}

    def _pool_for(self, port: str, name: str, nbytes: int) -> SlotPool:
        pool = self.pools.get((port, name))
        if pool is None or not pool.fits(nbytes):
            self.pool_count += 1
            safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in (name or "v"))[:40]
            pool_name = f"{self.prefix}.{port}.{safe}.{self.incarnation}.{self.pool_count}"
            slot_bytes = -(-(nbytes + 64) // 4096) * 4096
            slots = max(2, min(self.pool_slots, self.max_pool_bytes // slot_bytes))
            pool = SlotPool(pool_name, nbytes, slots)
            self.pools[port, name] = pool
        return pool

    def _acquire(self, pool: SlotPool) -> int:
        slot = pool.acquire()
        while slot is None:  # every slot is still read downstream: wait for releases
            self.wait(0.05)
            slot = pool.acquire()
        return slot

    def alloc(self, port: str, name: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
        """A writable array in a free slot of the port's pool."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < MIN_SHM_BYTES:
            return np.empty(shape, dtype)
        pool = self._pool_for(port, name, nbytes)
        slot = self._acquire(pool)
        array = pool.view(slot, shape, dtype)
        self.allocated[id(array)] = (array, pool, slot)
        return array

    def encode(self, port: str, arrays, for_shm: bool, slots: list):
        """[name, dtype, shape, ref] per array and the buffers that go inline. A large
        array on a shared-memory link travels as a slot reference: its own slot, the
        producer's slot it came in (forwarded), or a slot it is copied into."""
        specs, buffers = [], []
        for name, array in arrays:
            array_ref = None
            if for_shm and array.nbytes >= MIN_SHM_BYTES:
                array_ref = self._ref(port, name, array, slots)
            if array_ref is None:
                buffers.append(np.ascontiguousarray(array))
            specs.append([name, array.dtype.str, list(array.shape), array_ref])
        return specs, buffers

    def _ref(self, port, name, array, slots: list):
        forwarded = self.forwardable.get(id(array))
        if forwarded is not None and forwarded[0] is array:
            return forwarded[1]  # an input frame passed on: its producer's slot, no copy
        owned = self.allocated.get(id(array))
        if owned is None or owned[0] is not array:
            pool = self._pool_for(port, name, array.nbytes)
            slot = self._acquire(pool)
            np.copyto(pool.view(slot, array.shape, array.dtype), array)
            owned = (array, pool, slot)
            self.allocated[id(array)] = owned
        slots.append(owned[1:])
        return owned[1].ref(owned[2])

    def release_own(self) -> None:
        """Drop the node's own hold on what it allocated; the links keep theirs."""
        for _, pool, slot in list(self.allocated.values()):
            pool.release(slot)
        self.allocated.clear()

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
