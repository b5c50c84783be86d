"""A deterministic, resumable mini-batch loader with optional worker processes.

Everything random is a function of (seed, epoch, dataset index): the epoch's order comes from
`np.random.default_rng([seed, epoch])` and each sample's augmentation from
`np.random.default_rng([seed, epoch, index])`. So batches do not depend on `num_workers`, and a
run stopped after batch b of epoch e resumes exactly with `loader.batches(e, start_batch=b+1)`.

Workers (workers.py) decode and augment whole batches in separate processes, `prefetch`
batches per worker ahead of the consumer. The dataset and transform must be picklable.
"""

from __future__ import annotations

import collections
import logging
import sys

import numpy as np

from .batch import load_batch, unpack_batch
from .workers import WorkerDied, WorkerPool

log = logging.getLogger("overfeat_np.data")


def _default_context() -> str:
    # fork is unsafe once threads (BLAS pools, CUDA) exist in the parent; macOS defaults to spawn.
    if sys.platform.startswith("linux"):
        return "forkserver"
    return "spawn"


class DataLoader:
    """Mini-batches of `dataset` after `transform`, in an order fixed by (seed, epoch).

    dataset: sample-format sequence. batch_size: samples per batch. transform: callable
    t(sample, rng) -> (x float32 (3, H, W), boxes (k, 4), box_labels (k,)), e.g. TrainTransform;
    None means "image as float32 CHW, unnormalised". shuffle: permute each epoch (else dataset
    order). seed: fixes order and augmentation. num_workers: worker processes (0 = load in the
    calling process, no prefetch). prefetch: batches queued per worker. drop_last: drop the
    final short batch. mp_context: multiprocessing start method (default forkserver on Linux,
    spawn elsewhere; "fork" starts fastest but is unsafe with threads or CUDA in the parent).
    shard: (rank, ranks) for data-parallel training: each batch is this rank's share of the
    global batch of `batch_size` (`distributed`).

    A batch is a dict: x float32 (N, 3, H, W), labels int64 (N,), boxes [N arrays (k, 4)],
    box_labels [N arrays (k,) int64], indices int64 (N,). With a transform that hands out uint8
    images (`TrainTransform(..., as_uint8=True)`) x is uint8 and both x and labels are views of
    `packed`, one buffer (`batch.pack_batch`) that moves to a GPU in one copy. A sample whose image is corrupt is
    logged, counted in `num_skipped` / `skipped_paths` and left out, so that batch has fewer
    rows (a batch left with none is not yielded).

    `iter(loader)` runs the epoch `loader.epoch` and then increments it; `batches(epoch,
    start_batch)` runs any epoch from any batch without touching the counter. Use as a context
    manager or call close() to stop the workers (they also stop at interpreter exit).
    """

    def __init__(self, dataset, batch_size: int, transform=None, shuffle: bool = True,
                 seed: int = 0, num_workers: int = 0, prefetch: int = 2,
                 drop_last: bool = True, mp_context: str | None = None, shard: tuple = (0, 1)):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0 or prefetch < 1:
            raise ValueError(f"need num_workers >= 0 and prefetch >= 1, got {num_workers}, "
                             f"{prefetch}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.transform = transform
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.prefetch = int(prefetch)
        self.drop_last = drop_last
        self.mp_context = mp_context or _default_context()
        self.shard = (int(shard[0]), int(shard[1]))
        if not 0 <= self.shard[0] < self.shard[1]:
            raise ValueError(f"shard must be (rank, ranks) with 0 <= rank < ranks, got {shard}")
        self.epoch = 0
        self.skipped_paths: list[str] = []
        self._workers = None

    @property
    def num_skipped(self) -> int:
        """Samples skipped so far because their image could not be decoded."""
        return len(self.skipped_paths)

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int) -> np.ndarray:
        """Dataset indices int64 (len(dataset),) in the order epoch `epoch` visits them."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch]).permutation(n).astype(np.int64)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """The index arrays of the len(self) batches of epoch `epoch`: with shard = (rank, ranks),
        this rank's contiguous share of every global batch (the batches of one process, split)."""
        order = self.order(epoch)
        batches = [order[j * self.batch_size:(j + 1) * self.batch_size] for j in range(len(self))]
        rank, ranks = self.shard
        return batches if ranks == 1 else [np.array_split(b, ranks)[rank] for b in batches]

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self.batches(epoch)

    def batches(self, epoch: int, start_batch: int = 0):
        """Yield the batches of epoch `epoch`, starting at batch number `start_batch`."""
        if epoch < 0 or start_batch < 0:
            raise ValueError(f"epoch and start_batch must be >= 0, got {epoch}, {start_batch}")
        todo = self.batch_indices(epoch)[start_batch:]
        if self.num_workers == 0:
            for idx in todo:
                batch = self._finish(load_batch(self.dataset, self.transform, self.seed, epoch,
                                                idx))
                if batch is not None:
                    yield batch
            return
        yield from self._batches_from_workers(epoch, todo)

    def _batches_from_workers(self, epoch, todo):
        if self._workers is None or self._workers.closed:
            self._workers = WorkerPool(self.dataset, self.transform, self.num_workers,
                                       self.num_workers * self.prefetch, self.mp_context)
        workers = self._workers
        pending = collections.deque()
        queue = iter(todo)

        def submit():
            idx = next(queue, None)
            if idx is not None:
                pending.append(workers.submit(self.seed, epoch, idx))

        try:
            for _ in range(self.num_workers * self.prefetch):
                submit()
            while pending:
                result = workers.receive(pending.popleft())
                submit()  # keep the queue full while the caller works on this batch
                batch = self._finish(result)
                if batch is not None:
                    yield batch
        except WorkerDied as err:
            pending.clear()
            self.close()
            raise RuntimeError(
                f"{err}: out of memory? killed? Or, with the spawn or forkserver start method, "
                f"a script that starts the loader outside an `if __name__ == '__main__':` block "
                f"(each worker imports it again). The loader was closed") from err
        finally:
            # Abandoned or interrupted iteration: the workers finish what they were given and
            # the pool drops those results.
            for task in pending:
                workers.discard(task)

    def _finish(self, result: dict):
        for index, path, reason in result.pop("skipped"):
            log.warning("skipping corrupt image %s (dataset index %d): %s", path, index, reason)
            self.skipped_paths.append(path)
        if len(result["indices"]) == 0:
            log.warning("a whole batch was unreadable and is not yielded")
            return None
        if "packed" in result:
            result["x"], result["labels"] = unpack_batch(result["packed"], result["x_shape"])
        return result

    def close(self) -> None:
        """Stop the worker processes (if any). The loader can be iterated again afterwards."""
        if self._workers is not None:
            self._workers.close()
        self._workers = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, "
                f"transform={self.transform!r}, num_workers={self.num_workers}, "
                f"seed={self.seed}, epoch={self.epoch})")
