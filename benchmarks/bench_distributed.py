"""Data-parallel training costs: the gradient allreduce of the fast model, and the small model's
images/s on 1 and 2 ranks.

    mpiexec -n 2 python benchmarks/bench_distributed.py          # needs pip install -e ".[mpi]"
    python benchmarks/bench_distributed.py --model-only          # the GPU scaling model, no MPI

Each rank uses one BLAS thread (ranks are processes: N ranks on N cores). Printed by rank 0. The
GPU table is a model, not a measurement: step time from the fast model's 16.8 GFLOP per image
(forward + backward) at an assumed sustained FP32 rate, allreduce time from the ring algorithm's
2 (N - 1) / N bytes per rank over an interconnect's bus bandwidth.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from overfeat_np.accounting import count_parameters
from overfeat_np.models import OverFeat, fast_config

FAST_FLOP_PER_IMAGE = 16.8e9  # forward + backward, 3 x 2.80 G multiply-adds x 2 FLOP
INTERCONNECTS = {"NVLink 4 (H100, ~360 GB/s bus bandwidth)": 360e9, "PCIe 4.0 x16 (~24 GB/s)": 24e9,
                 "InfiniBand NDR 400 Gb/s (~45 GB/s)": 45e9, "InfiniBand HDR 200 Gb/s (~22 GB/s)": 22e9}


def gpu_model(batch_per_gpu: int = 128, sustained_flops: float = 30e12):
    """Print the modelled fast-model step time and scaling efficiency on N GPUs."""
    grad_bytes = 4 * count_parameters(fast_config(), biases=True)
    compute = batch_per_gpu * FAST_FLOP_PER_IMAGE / sustained_flops
    print(f"\nGPU scaling MODEL (not measured): fast model, batch {batch_per_gpu} per GPU, "
          f"{grad_bytes / 1e6:.0f} MB of gradients, step {compute * 1e3:.0f} ms of compute at "
          f"{sustained_flops / 1e12:.0f} TFLOP/s sustained, allreduce not overlapped with backward")
    print("| interconnect | N=2 | N=4 | N=8 |")
    print("|---|---|---|---|")
    for name, bw in INTERCONNECTS.items():
        cells = []
        for n in (2, 4, 8):
            comm = 2 * (n - 1) / n * grad_bytes / bw
            cells.append(f"{comm * 1e3:.0f} ms, {compute / (compute + comm):.0%}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-only", action="store_true", help="print the GPU model and exit (no MPI)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if a.model_only:
        gpu_model()
        return
    from mpi4py import MPI

    from overfeat_np.data import SyntheticShapes
    from overfeat_np.distributed import MPICommunicator
    from overfeat_np.train import TrainConfig, train

    comm = MPICommunicator(MPI.COMM_WORLD)
    threadpool_limits(1)
    shapes = {k: v.shape for k, v in OverFeat(fast_config(), init="none").params.items()}
    grads = {k: np.ones(s, np.float32) for k, s in shapes.items()}  # the fast model's gradients
    n_params = sum(g.size for g in grads.values())
    times = []
    for _ in range(a.repeat):
        MPI.COMM_WORLD.Barrier()
        t0 = time.perf_counter()
        comm.allreduce_mean(grads)
        times.append(time.perf_counter() - t0)
    if comm.rank == 0:
        nbytes = 4 * n_params
        bus = 2 * (comm.size - 1) / comm.size * nbytes / min(times) / 1e9
        print(f"{comm.size} rank(s) on one machine: allreduce of the fast model's gradients ({nbytes / 1e6:.0f} MB "
              f"in {len(comm._buckets)} buckets, {len(grads)} tensors): best {min(times) * 1e3:.0f} ms of "
              f"{len(times)}" + (f", {bus:.2f} GB/s ring-equivalent bus bandwidth" if comm.size > 1 else
                                 " (one rank: the copies into the buckets only)"))
    data = SyntheticShapes(1024, image_size=72, seed=0, cache=True)
    cfg = TrainConfig(model="small", batch_size=64, epochs=1, out_dir=None, progress=False, eval_every=0,
                      distributed=comm.size > 1, blas_threads=1)
    train(TrainConfig(**{**cfg.to_dict(), "max_steps": 2}), data)  # warm-up: caches the images
    t0 = time.perf_counter()
    hist = train(cfg, data)
    dt = time.perf_counter() - t0
    if comm.rank == 0:
        print(f"small model, global batch 64, {comm.size} rank(s): {hist.global_step * 64 / dt:.0f} images/s "
              f"({hist.global_step} steps in {dt:.1f} s)")
        gpu_model()


if __name__ == "__main__":
    main()
