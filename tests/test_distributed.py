"""Data-parallel training over MPI ranks: equal to one process with the whole batch, identical on
every rank after every step, resumable, and every failure ends the job with a message."""

import builtins
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from overfeat_np import distributed
from overfeat_np.data import DataLoader, SyntheticShapes
from overfeat_np.models import OverFeat, small_config
from overfeat_np.train import TrainConfig, train

SCRIPT = pathlib.Path(__file__).parent / "mpi" / "train_ranks.py"
MPIEXEC = shutil.which("mpiexec") or str(pathlib.Path(sys.executable).parent / "mpiexec")


def _have_mpi() -> bool:
    try:
        import mpi4py.MPI  # noqa: F401
    except (ImportError, RuntimeError):
        return False
    return os.path.exists(MPIEXEC)


needs_mpi = pytest.mark.skipif(not _have_mpi(), reason='needs the MPI extra: pip install -e ".[mpi]" (CI installs it)')


def _ranks(tmp_path, case, n=2, max_steps=4, timeout=240):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, str(SCRIPT), str(tmp_path), case, str(max_steps)],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)


def _single(max_steps=4):
    model = OverFeat(dataclasses.replace(small_config(4, 0.25), dropout=0.0), seed=1)
    cfg = TrainConfig(model="small", width=0.25, batch_size=16, lr=0.02, seed=3, max_steps=max_steps, epochs=3,
                      out_dir=None, progress=False, eval_every=0)
    train(cfg, SyntheticShapes(64, image_size=72, num_classes=4, seed=5), model=model)
    return model.params


@needs_mpi
def test_two_ranks_equal_one_process_with_the_whole_batch(tmp_path):
    res = _ranks(tmp_path, "plain")
    assert res.returncode == 0, res.stderr
    r0, r1 = np.load(tmp_path / "rank0.npz"), np.load(tmp_path / "rank1.npz")
    for k in r0:
        np.testing.assert_array_equal(r0[k], r1[k])  # the same update on every rank, no broadcast
    s0, s1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert s0 == s1 and len(s0) == 4  # identical after every step
    one = _single()
    for k, v in one.items():
        np.testing.assert_allclose(r0[k], v, rtol=2e-4, atol=2e-6)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in log if r["kind"] == "step"] == [1, 2, 3, 4]  # rank 0 alone writes it


@needs_mpi
def test_resume_continues_exactly(tmp_path):
    straight = tmp_path / "straight"
    straight.mkdir()
    assert _ranks(straight, "plain", max_steps=6).returncode == 0
    cut = tmp_path / "cut"
    cut.mkdir()
    assert _ranks(cut, "plain", max_steps=2).returncode == 0  # stops with a checkpoint, like a kill after it
    res = _ranks(cut, "resume", max_steps=6)
    assert res.returncode == 0, res.stderr
    a, b = np.load(straight / "rank1.npz"), np.load(cut / "rank1.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@needs_mpi
def test_resume_with_another_number_of_ranks_says_what_changes(tmp_path):
    assert _ranks(tmp_path, "plain", max_steps=2).returncode == 0
    res = _ranks(tmp_path, "resume", n=1, max_steps=4)
    assert res.returncode == 0, res.stderr
    assert "written by 2 rank(s), this run has 1" in res.stderr and "mpiexec -n 2" in res.stderr


@needs_mpi
@pytest.mark.parametrize("case, message", [
    ("odd", "2 ranks cannot share a batch of 15 equally"),
    ("disagree", "ranks disagree on the training configuration"),
    ("die", "rank 1 of 2: RuntimeError: this rank fails on purpose"),
])
def test_failures_end_the_job_with_a_message(tmp_path, case, message):
    res = _ranks(tmp_path, case, timeout=120)  # a hang would hit the timeout and fail the test
    assert res.returncode != 0
    assert message in res.stderr, res.stderr[-2000:]


def test_without_mpi4py_the_error_says_how_to_install(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "mpi4py" or name.startswith("mpi4py."):
            raise ImportError("No module named 'mpi4py'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(distributed.DistributedError, match=r'pip install -e "\.\[mpi\]"'):
        distributed.init()


def test_shards_split_every_global_batch():
    data = SyntheticShapes(40, image_size=16, seed=1)
    whole = DataLoader(data, 8, seed=2).batch_indices(3)
    parts = [DataLoader(data, 8, seed=2, shard=(r, 2)).batch_indices(3) for r in (0, 1)]
    for b, p0, p1 in zip(whole, *parts):
        np.testing.assert_array_equal(np.concatenate([p0, p1]), b)
    with pytest.raises(distributed.DistributedError, match="cannot share a batch of 10"):
        distributed.shard_size(10, 4)
