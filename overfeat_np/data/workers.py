"""Worker processes for DataLoader: one pipe per worker and a ring of shared-memory batch slots.

Why a pipe per worker: batches are consumed in order, so batch j simply goes to worker
j % num_workers and its result is read back from that worker's pipe. No executor threads sit in
the training process (a ProcessPoolExecutor runs two, which cost about 0.5 ms of CPU per batch and
contend with the training step for the GIL); the parent only does a send and a receive per batch.

Why slots: pickling a 32 x 3 x 231 x 231 float32 batch (20 MB) back through the pipe costs
about 2 ms per image, as much as decoding the JPEG, and a fresh shared-memory block per batch
still pays ~15 ms of page faults. So the parent owns `depth` blocks sized after the first batch;
each task is handed a free one, the worker writes the batch into it and the parent copies it
out. Batches that do not fit (or arrive before the slots exist) are pickled as usual.
"""

from __future__ import annotations

import collections
import multiprocessing
import signal
import time
import traceback
import weakref
from multiprocessing import shared_memory

import numpy as np

from .batch import load_batch

# Smaller batches are cheap to pickle; slots would only add bookkeeping.
MIN_SLOT_BYTES = 1 << 20


class WorkerDied(RuntimeError):
    """A worker process ended while the parent waited for its batch."""


def _worker_loop(conn, dataset, transform):
    """Worker process: load the batches asked for on `conn` until told to stop (None) or the
    parent goes away. Task: (seed, epoch, indices, slot); reply: ("ok", batch) or ("error", exc,
    traceback text). The images (x, or a uint8 transform's packed buffer) go into shared-memory
    `slot` (name, bytes) when given and they fit."""
    # Ctrl-C reaches the whole process group; only the parent should react, then stop us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    attached: dict[str, shared_memory.SharedMemory] = {}
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if task is None:
            return
        seed, epoch, indices, slot = task
        try:
            batch = load_batch(dataset, transform, seed, epoch, indices)
            key = _images_key(batch)
            x = batch[key]
            if slot is not None and x.nbytes <= slot[1]:
                shm = attached.get(slot[0])
                if shm is None:
                    shm = attached[slot[0]] = shared_memory.SharedMemory(name=slot[0])
                np.ndarray(x.shape, x.dtype, buffer=shm.buf)[...] = x
                batch[key] = ("slot", x.shape, x.dtype.str)
            reply = ("ok", batch)
        except Exception as err:  # noqa: BLE001 -- the parent raises it where the batch is used
            reply = ("error", err, traceback.format_exc())
        if not _send(conn, reply):
            return


def _images_key(batch: dict) -> str:
    # A uint8 transform's batch carries its images packed with the labels (`load_batch`).
    return "packed" if "packed" in batch else "x"


def _send(conn, reply) -> bool:
    """Send `reply` to the parent; False when the parent has gone."""
    try:
        conn.send(reply)
    except OSError:
        return False
    except Exception as err:  # noqa: BLE001 -- e.g. a dataset's exception that cannot be pickled
        return _send(conn, ("error", RuntimeError(f"a worker's reply could not be sent: {err!r}"),
                            traceback.format_exc()))
    return True


class _WorkerTraceback(Exception):
    """The traceback of an exception raised in a worker, as its cause in the parent."""

    def __str__(self) -> str:
        return f"in a data loader worker:\n{self.args[0]}"


class _Task:
    __slots__ = ("discarded", "slot", "worker")

    def __init__(self, worker: int, slot: str | None):
        self.worker, self.slot, self.discarded = worker, slot, False


def _close(procs, conns, slots):
    for conn in conns:
        try:
            conn.send(None)  # an idle worker exits on this
        except OSError:
            pass
        conn.close()  # a busy one then fails to send its result, and exits
    deadline = time.monotonic() + 1.0
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.is_alive():  # still loading a batch: nothing to lose, it holds no shared lock
            p.terminate()
            p.join()
    conns.clear()
    procs.clear()
    for shm in slots.values():
        shm.close()
        shm.unlink()
    slots.clear()


class WorkerPool:
    """`num_workers` processes loading batches of `dataset` through `transform`, with up to
    `depth` batches in flight. submit() -> task; receive(task) -> batch dict. Tasks go to the
    workers in turn and each worker answers in order, so tasks must be received in the order
    they were submitted (discarded ones excepted)."""

    def __init__(self, dataset, transform, num_workers: int, depth: int, mp_context: str):
        ctx = multiprocessing.get_context(mp_context)
        self.depth = depth
        self._procs, self._conns = [], []
        self._queues = [collections.deque() for _ in range(num_workers)]  # tasks sent, per worker
        self._slots: dict[str, shared_memory.SharedMemory] = {}
        self._slot_bytes = 0
        self._free = collections.deque()
        self._next = 0
        # Stops the workers and frees the slots on close(), garbage collection or exit.
        self._finalizer = weakref.finalize(self, _close, self._procs, self._conns, self._slots)
        for _ in range(num_workers):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_worker_loop, args=(there, dataset, transform), daemon=True)
            proc.start()
            there.close()  # the worker holds its end; ours would hide the worker's death
            self._procs.append(proc)
            self._conns.append(here)

    @property
    def closed(self) -> bool:
        """True once close() ran (also after an interrupted transfer closed the pool)."""
        return not self._finalizer.alive

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers."""
        return [p.pid for p in self._procs]

    def submit(self, seed: int, epoch: int, indices) -> _Task:
        self._drain_discarded()
        k = self._next
        self._next = (k + 1) % len(self._conns)
        task = _Task(k, self._free.popleft() if self._free else None)
        slot = None if task.slot is None else (task.slot, self._slot_bytes)
        try:
            self._conns[k].send((seed, epoch, np.asarray(indices), slot))
        except OSError as err:
            raise self._died(k) from err
        except BaseException:
            self.close()
            raise
        self._queues[k].append(task)
        return task

    def receive(self, task: _Task) -> dict:
        """Wait for `task` and return its batch with x as a private array."""
        queue = self._queues[task.worker]
        while True:  # earlier, discarded tasks of this worker answer first
            reply = self._recv(task.worker)
            head = queue.popleft()
            if head is task:
                break
            self._release(head)
        try:
            if reply[0] == "error":
                raise reply[1] from _WorkerTraceback(reply[2])
            batch = reply[1]
            key = _images_key(batch)
            x = batch[key]
            if isinstance(x, tuple):
                view = np.ndarray(x[1], np.dtype(x[2]), buffer=self._slots[task.slot].buf)
                batch[key] = view.copy()
                del view  # a live view would keep the slot from being closed
            elif not self._slots and x.nbytes >= MIN_SLOT_BYTES:
                self._make_slots(x.nbytes)
            return batch
        finally:
            self._release(task)

    def discard(self, task: _Task) -> None:
        """Give up on `task`: its result is read and dropped (freeing its slot) later."""
        task.discarded = True

    def _recv(self, k: int):
        try:
            return self._conns[k].recv()
        except (EOFError, OSError) as err:
            raise self._died(k) from err
        except BaseException:  # e.g. Ctrl-C in the middle of a message: the pipe is unusable
            self.close()
            raise

    def _died(self, k: int) -> WorkerDied:
        self._procs[k].join(timeout=1)  # reap it, to report how it ended
        code = self._procs[k].exitcode
        return WorkerDied(f"data loader worker {k} (pid {self._procs[k].pid}) ended with exit "
                          f"code {code}")

    def _drain_discarded(self) -> None:
        # Results of abandoned tasks that have arrived: read them, so their slots can be reused.
        for k, queue in enumerate(self._queues):
            while queue and queue[0].discarded and self._conns[k].poll():
                self._recv(k)
                self._release(queue.popleft())

    def _release(self, task: _Task) -> None:
        if task.slot is not None:
            self._free.append(task.slot)
            task.slot = None

    def _make_slots(self, nbytes: int) -> None:
        self._slot_bytes = nbytes
        for _ in range(self.depth):
            shm = shared_memory.SharedMemory(create=True, size=nbytes)
            self._slots[shm.name] = shm
            self._free.append(shm.name)

    def close(self) -> None:
        self._finalizer()
