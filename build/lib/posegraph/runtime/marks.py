"""Per-stream "next seq" marks of a node instance that survive its restarts.

A small memory-mapped file in the run folder, one int64 per stream: a SIGKILL loses
nothing written here, so a restarted instance knows where each stream stands.
"""
from __future__ import annotations

import mmap
import os

import numpy as np

MAX_STREAMS = 65536


class StreamMarks:
    def __init__(self, path: str):
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            if os.fstat(fd).st_size < 8 * MAX_STREAMS:
                os.ftruncate(fd, 8 * MAX_STREAMS)
            self._map = mmap.mmap(fd, 8 * MAX_STREAMS)
        finally:
            os.close(fd)
        self.values = np.frombuffer(self._map, dtype=np.int64)

    def __getitem__(self, stream: int) -> int:
        return int(self.values[stream])

    def __setitem__(self, stream: int, seq: int) -> None:
        self.values[stream] = seq

    def advance(self, stream: int, seq: int) -> None:
        """Move the mark of `stream` to `seq` unless it is past it already."""
        if seq > self.values[stream]:
            self.values[stream] = seq
