"""Worker processes for DataLoader: a process pool and a ring of shared-memory batch slots.

Why slots: pickling a 32 x 3 x 231 x 231 float32 batch (20 MB) back through the result pipe
costs about 2 ms per image, as much as decoding the JPEG, and a fresh shared-memory block per
batch still pays ~15 ms of page faults. So the parent owns `depth` blocks sized after the first
batch; each task is handed a free one, the worker writes the batch into it and the parent copies
it out. Batches that do not fit (or arrive before the slots exist) are pickled as usual.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import signal
import weakref
from multiprocessing import shared_memory

import numpy as np

from .batch import load_batch

# Smaller batches are cheap to pickle; slots would only add bookkeeping.
MIN_SLOT_BYTES = 1 << 20

_state = None  # (dataset, transform), set in each worker by _init_worker
_attached: dict[str, shared_memory.SharedMemory] = {}  # worker side: slot name -> mapping


def _init_worker(dataset, transform):
    global _state
    # Ctrl-C reaches the whole process group; only the parent should react, then stop us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _state = (dataset, transform)


def _run(seed, epoch, indices, slot):
    """Worker task: load one batch; put x into shared-memory `slot` (name, bytes) if it fits."""
    batch = load_batch(_state[0], _state[1], seed, epoch, indices)
    x = batch["x"]
    if slot is not None and x.nbytes <= slot[1]:
        shm = _attached.get(slot[0])
        if shm is None:
            shm = _attached[slot[0]] = shared_memory.SharedMemory(name=slot[0])
        np.ndarray(x.shape, x.dtype, buffer=shm.buf)[...] = x
        batch["x"] = ("slot", x.shape)
    return batch


def _close(pool, slots):
    pool.shutdown(wait=True, cancel_futures=True)
    for shm in slots.values():
        shm.close()
        shm.unlink()
    slots.clear()


class WorkerPool:
    """`num_workers` processes loading batches of `dataset` through `transform`, with up to
    `depth` batches in flight. submit() -> future; receive(future) -> batch dict."""

    def __init__(self, dataset, transform, num_workers: int, depth: int, mp_context: str):
        ctx = multiprocessing.get_context(mp_context)
        self.depth = depth
        self._pool = concurrent.futures.ProcessPoolExecutor(
            num_workers, mp_context=ctx, initializer=_init_worker,
            initargs=(dataset, transform))
        self._slots: dict[str, shared_memory.SharedMemory] = {}
        self._slot_bytes = 0
        self._free = collections.deque()  # appended to from executor callback threads too
        # Stops the workers and frees the slots on close(), garbage collection or exit.
        self._finalizer = weakref.finalize(self, _close, self._pool, self._slots)

    def submit(self, seed: int, epoch: int, indices) -> concurrent.futures.Future:
        name = self._free.popleft() if self._free else None
        slot = None if name is None else (name, self._slot_bytes)
        fut = self._pool.submit(_run, seed, epoch, indices, slot)
        fut.slot_name = name
        return fut

    def receive(self, fut: concurrent.futures.Future) -> dict:
        """Wait for `fut` and return its batch with x as a private array."""
        try:
            batch = fut.result()
            x = batch["x"]
            if isinstance(x, tuple):
                view = np.ndarray(x[1], np.float32, buffer=self._slots[fut.slot_name].buf)
                batch["x"] = view.copy()
                del view  # a live view would keep the slot from being closed
            elif not self._slots and x.nbytes >= MIN_SLOT_BYTES:
                self._make_slots(x.nbytes)
            return batch
        finally:
            self._release(fut)

    def discard(self, fut: concurrent.futures.Future) -> None:
        """Give up on `fut`: cancel it if queued, else free its slot once the worker is done."""
        if fut.cancel():
            self._release(fut)
        else:
            fut.add_done_callback(self._release)

    def _release(self, fut) -> None:
        if fut.slot_name is not None:
            self._free.append(fut.slot_name)
            fut.slot_name = None

    def _make_slots(self, nbytes: int) -> None:
        self._slot_bytes = nbytes
        for _ in range(self.depth):
            shm = shared_memory.SharedMemory(create=True, size=nbytes)
            self._slots[shm.name] = shm
            self._free.append(shm.name)

    def close(self) -> None:
        self._finalizer()
