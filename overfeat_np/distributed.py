"""Data parallelism on the engines the field uses: MPI between processes, NCCL between GPUs.

    mpiexec -n 2 overfeat-np train --synthetic 2000 --batch-size 64 --distributed

Every rank (process) holds the whole model. Each step, rank r trains on its share of the global
batch (`data.DataLoader(shard=(r, N))`: the same global batches as one process with the same
batch size), the gradients are averaged with one allreduce per bucket (a few large flat buffers,
not one call per parameter), and every rank applies the same SGD update, so the weights stay
identical without a broadcast. Host arrays go through MPI (mpi4py); device arrays through NCCL
(`cupy.cuda.nccl`), bootstrapped by broadcasting NCCL's unique id over MPI, one GPU per rank
(the rank's local rank on its node picks the device), as ChainerMN and Horovod do.

A rank that fails ends the whole job with its rank named (`Communicator.abort`), and a collective
that waits longer than `timeout` seconds for another rank does the same instead of hanging: a rank
that died without a word is found that way.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from .backend import get_array_module

MPI_HELP = ('install the MPI extra: pip install -e ".[mpi]" (mpi4py with the mpich wheel), then launch '
            "with mpiexec -n N overfeat-np train ... --distributed")
BUCKET_BYTES = 64 * 2**20  # gradients per allreduce: large enough for the network, few calls
DEFAULT_TIMEOUT = 600.0  # seconds a collective may wait for the slowest rank before the job ends


class DistributedError(RuntimeError):
    """A data-parallel run cannot go on: MPI missing, ranks that disagree, a bad batch split."""


class Local:
    """One process: every collective is the identity. What `train` uses without --distributed."""

    rank, size = 0, 1

    def allreduce_mean(self, grads: dict) -> dict:
        return grads

    def sum_values(self, values):
        return np.asarray(values, dtype=np.float64)

    def gather_objects(self, obj) -> list:
        return [obj]

    def check_same(self, what: str, value):
        pass

    def abort(self, message: str):
        raise DistributedError(message)


class MPICommunicator(Local):
    """Gradients averaged over MPI ranks (host arrays), in buckets of at most BUCKET_BYTES."""

    def __init__(self, comm, timeout: float = DEFAULT_TIMEOUT):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = float(timeout)
        self._buckets = None  # [(flat buffer, [(key, offset, shape), ...])], built at the first step

    def _plan(self, grads: dict, xp) -> list:
        """Flat float32 buffers holding the gradients in sorted-key order (the same on every rank)."""
        buckets, members, size = [], [], 0
        for key in sorted(grads):
            n = int(grads[key].size)
            if members and (size + n) * 4 > BUCKET_BYTES:
                buckets.append((xp.empty(size, np.float32), members))
                members, size = [], 0
            members.append((key, size, tuple(grads[key].shape)))
            size += n
        if members:
            buckets.append((xp.empty(size, np.float32), members))
        self.check_same("the gradients' names and sizes (the model)",
                        [(k, s) for _, m in buckets for k, _, s in m])
        return buckets

    def allreduce_mean(self, grads: dict) -> dict:
        """{name: gradient} -> the mean over ranks, as views of the bucket buffers (no copy out)."""
        if self._buckets is None:
            self._buckets = self._plan(grads, get_array_module(*grads.values()))
        out = {}
        for flat, members in self._buckets:
            for key, start, shape in members:
                flat[start:start + grads[key].size] = grads[key].reshape(-1)
            self._allreduce(flat)
            flat *= np.float32(1.0 / self.size)
            for key, start, shape in members:
                out[key] = flat[start:start + int(np.prod(shape))].reshape(shape)
        return out

    def _allreduce(self, flat):
        from mpi4py import MPI

        self._wait(self.comm.Iallreduce(MPI.IN_PLACE, flat, op=MPI.SUM), "an allreduce of gradients")

    def _wait(self, request, what: str):
        """Wait for a non-blocking collective, ending the job after `timeout` seconds."""
        t0, pause = time.monotonic(), 1e-5
        while not request.Test():
            if time.monotonic() - t0 > self.timeout:
                self.abort(f"rank {self.rank} waited {self.timeout:.0f} s for {what}; another rank is stuck "
                           "or has died (see its own message above)")
            time.sleep(pause)
            pause = min(pause * 2, 1e-2)

    def sum_values(self, values):
        """Host numbers (k,) -> their sums over ranks, float64 (k,) (loss and accuracy sums)."""
        from mpi4py import MPI

        buf = np.asarray(values, dtype=np.float64).copy()
        self._wait(self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM), "a sum of logged values")
        return buf

    def gather_objects(self, obj) -> list:
        """Every rank's `obj` (picklable), on every rank, in rank order."""
        return self.comm.allgather(obj)

    def check_same(self, what: str, value):
        """Raise DistributedError on every rank unless all ranks hold an equal `value`."""
        values = self.gather_objects(value)
        odd = [r for r, v in enumerate(values) if v != values[0]]
        if odd:
            raise DistributedError(f"ranks disagree on {what}: rank 0 has {_short(values[0])}, rank {odd[0]} "
                                   f"has {_short(values[odd[0]])}; start every rank with the same command and data")

    def abort(self, message: str):
        """Print `message` and end every rank of the job (exit status 1)."""
        print(f"overfeat-np: rank {self.rank} of {self.size}: {message}", file=sys.stderr, flush=True)
        self.comm.Abort(1)


class NCCLCommunicator(MPICommunicator):
    """Gradients averaged over GPUs with NCCL (device arrays); MPI starts the ranks and carries
    NCCL's unique id, the logged sums and the checks."""

    def __init__(self, comm, xp, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(comm, timeout)
        from cupy.cuda import nccl

        xp.cuda.Device(local_rank(comm) % xp.cuda.runtime.getDeviceCount()).use()
        uid = comm.bcast(nccl.get_unique_id() if self.rank == 0 else None, root=0)
        self._nccl = nccl
        self._xp = xp
        self.nccl_comm = nccl.NcclCommunicator(self.size, uid, self.rank)

    def _allreduce(self, flat):
        stream = self._xp.cuda.get_current_stream()
        self.nccl_comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, self._nccl.NCCL_FLOAT32,
                                 self._nccl.NCCL_SUM, stream.ptr)


def local_rank(comm) -> int:
    """This rank's number among the ranks on its node (picks its GPU)."""
    for var in ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK", "SLURM_LOCALID"):
        if var in os.environ:
            return int(os.environ[var])
    from mpi4py import MPI

    return comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()


def init(xp=np, timeout: float = DEFAULT_TIMEOUT) -> MPICommunicator:
    """The communicator of this mpiexec job: NCCL for CuPy models, MPI for NumPy ones.

    Raises DistributedError with the install command when mpi4py or an MPI library is missing.
    """
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(f"--distributed needs mpi4py and an MPI library ({exc}); {MPI_HELP}") from None
    except RuntimeError as exc:  # mpi4py installed, but no libmpi to load
        raise DistributedError(f"--distributed: mpi4py found no MPI library ({exc}); {MPI_HELP}") from None
    comm = MPI.COMM_WORLD
    if xp is not np:
        return NCCLCommunicator(comm, xp, timeout)
    return MPICommunicator(comm, timeout)


def shard_size(batch_size: int, size: int) -> int:
    """Each rank's share of a global batch; DistributedError unless `size` divides it."""
    if batch_size % size:
        raise DistributedError(f"{size} ranks cannot share a batch of {batch_size} equally; use a batch size that "
                               f"{size} divides (e.g. {batch_size // size * size or size}) or another number of ranks")
    return batch_size // size


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."
