"""Run by tests/test_distributed.py as `mpiexec -n N python train_ranks.py OUT CASE [MAX_STEPS]`:
a tiny data-parallel training run; each rank writes its weights and per-step checksums."""

import dataclasses
import json
import sys

import numpy as np

from overfeat_np.data import SyntheticShapes
from overfeat_np.distributed import init
from overfeat_np.models import OverFeat, small_config
from overfeat_np.train import TrainConfig, train

out, case = sys.argv[1], sys.argv[2]
max_steps = int(sys.argv[3]) if len(sys.argv) > 3 else 4
comm = init()
width = 0.5 if (case == "disagree" and comm.rank == 1) else 0.25
# no dropout, so one process with the whole batch computes what the ranks compute together
model = OverFeat(dataclasses.replace(small_config(4, width), dropout=0.0), seed=1)
cfg = TrainConfig(model="small", width=width, batch_size=15 if case == "odd" else 16, lr=0.02, seed=3,
                  max_steps=max_steps, epochs=3, out_dir=f"{out}/run", progress=False, eval_every=1,
                  log_every=1, checkpoint_every=2, distributed=True)
data = SyntheticShapes(64, image_size=72, num_classes=4, seed=5)
val = SyntheticShapes(20, image_size=72, num_classes=4, seed=6)
sums = []


def on_step(record):
    sums.append(float(sum(np.abs(v).sum(dtype=np.float64) for v in model.params.values())))
    if case == "die" and comm.rank == 1 and record["global_step"] == 2:
        raise RuntimeError("this rank fails on purpose")


train(cfg, data, val, model=model, on_step=on_step, resume=(case == "resume") or None)
np.savez(f"{out}/rank{comm.rank}.npz", **model.params)
with open(f"{out}/rank{comm.rank}.json", "w") as f:
    json.dump(sums, f)
