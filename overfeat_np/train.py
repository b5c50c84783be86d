"""The training loop of Section 3: SGD with momentum on mini-batches of random crops and flips.

    history = train(TrainConfig(model="small", epochs=8, batch_size=32), train_set, val_set)

Section 3 of the paper: mini-batches of 128 random 221/231 crops (and their flips) of images
resized to 256, SGD with momentum 0.6 and L2 weight decay 1e-5, learning rate 5e-2 halved after
epochs 30, 50, 60, 70 and 80, dropout 0.5 on the hidden full layers, weights from N(0, 1e-2).
Training treats the net as non-spatial: one crop in, one C-vector out.

One deliberate departure, for the scaled model only: N(0, 1e-2) is calibrated for the full-size
layers (an 11x11x3 filter has fan-in 363); with the small model's fan-ins of 75-576 it makes every
layer shrink the signal by about 10x, and 8 such layers start training with vanishing gradients
(no progress in 400 steps). `init="auto"` therefore follows the model config's `weight_init`: the
paper's N(0, 1e-2) for the fast and accurate models, He scaling N(0, 2 / fan_in) for the small
one's hidden layers (`models.he_init`).

The run is a pure function of its config: the loader's order and augmentation depend only on
(seed, epoch, index), the dropout masks on the dropout layers' generators, which checkpoints save.
So a run stopped at any step and resumed from its last checkpoint ends with bit-identical weights
to one that never stopped (numpy backend).

Output folder (`out_dir`): log.jsonl (one JSON record per `log_every` steps and per epoch),
latest.npz (checkpoint every `checkpoint_every` steps and at every epoch end), epoch_NNN.npz
(with `keep_epoch_checkpoints`), weights.npz (final weights, `serialization.load_weights`). Pictures are the caller's:
`viz.plot_run(out_dir, model)` draws curves.png and filters.png (the CLI and the demo do).

`train` is a short loop over named steps: `_start` (model, optimizer, paths), `_resume_state`,
`_run_epoch` (`_train_step` per batch), `_epoch_record`, `_evaluate_epoch`, `_log_epoch`,
`_next_epoch` (with its checkpoint). The backend is resolved once, when the model is built; each
step moves its batch with the model's `xp.asarray` (no driver query per step).

On a GPU a step costs the host one copy and no wait (`tests/test_cupy_double.py` counts it): the
loader hands out uint8 crops packed with their labels in one buffer (`data.batch.pack_batch`),
which crosses in one transfer and is normalised on the device (`normalize_batch`); the loss and
the correct count stay there, added up on the device, and the host reads them (one
synchronisation) only every `log_every` steps, where it also checks that the loss is finite. On
NumPy the loss is checked at every step, as it costs nothing there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from . import distributed, models
from .backend import get_backend, on_cpu, to_numpy
from .blas import default_threads, limit_blas
from .checkpoint import (
    load_checkpoint,
    restore_checkpoint,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from .data import DataLoader, EvalTransform, TrainTransform
from .data.batch import unpack_batch
from .data.transforms import normalize_batch
from .losses import softmax_cross_entropy
from .metrics import topk_accuracy
from .models import OverFeat
from .optim import SGD, StepSchedule
from .serialization import save_weights

MODELS = models.MODEL_NAMES  # "fast", "accurate", "small"
# Section 3: images resized to 256 before a 231 (fast) or 221 (accurate) crop; other input
# sizes keep the fast model's ratio 256 / 231.
RESIZE_RATIO = 256 / 231


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint)."""

    model: str = "small"  # "fast" (Table 1), "accurate" (Table 3) or "small" (models.small_config)
    width: float = 1.0  # multiplies every layer's number of maps
    num_classes: int | None = None  # None: the training set's num_classes
    input_size: int | None = None  # small model only (None: 64); fast/accurate are 231/221
    epochs: int = 10
    batch_size: int = 128  # Section 3
    lr: float = 5e-2  # Section 3
    milestones: tuple = (30, 50, 60, 70, 80)  # epochs after which lr *= gamma (Section 3)
    gamma: float = 0.5
    momentum: float = 0.6  # Section 3
    weight_decay: float = 1e-5  # Section 3
    flip: bool = True  # random horizontal flips of the training crops (Section 3); False: digits, text
    init: str = "auto"  # "paper" N(0, 1e-2), "he" N(0, 2/fan_in), "auto": the model's weight_init
    seed: int = 0  # model init, data order, augmentation, dropout
    backend: str = "numpy"  # "numpy" or "cupy" (a name: the config is saved as JSON in checkpoints)
    workers: int = 0  # data loader worker processes (0: load in the training process)
    blas_threads: int | None = None  # BLAS threads of the training process; None: the policy's (`blas`)
    out_dir: str | None = "runs/train"  # None: write nothing (no log or checkpoints)
    eval_every: int = 1  # evaluate on the validation set every this many epochs (0: never)
    log_every: int = 10  # steps between step records in log.jsonl
    checkpoint_every: int = 0  # steps between checkpoints (0: only at the end of each epoch)
    keep_epoch_checkpoints: bool = False  # also keep epoch_NNN.npz
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps in total
    progress: bool = True  # tqdm progress bars
    distributed: bool = False  # data parallel over the ranks of an mpiexec job (`distributed`)

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"TrainConfig.model must be one of {MODELS}, got {self.model!r}")
        if self.init not in ("auto", "paper", "he"):
            raise ValueError(f"TrainConfig.init must be 'auto', 'paper' or 'he', got {self.init!r}")
        if self.input_size is not None and self.model != "small":
            raise ValueError(f"input_size applies to the small model only; the {self.model} model's "
                             "input is fixed by its table (231 fast, 221 accurate)")
        if self.blas_threads is not None and self.blas_threads < 1:
            raise ValueError(f"TrainConfig.blas_threads must be >= 1 or None (automatic), got {self.blas_threads}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"need epochs >= 1 and batch_size >= 1, got {self.epochs}, {self.batch_size}")
        self.milestones = tuple(int(m) for m in self.milestones)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class History:
    """What `train` returns: the trained model and the records it logged."""

    model: OverFeat
    steps: list = field(default_factory=list)  # step records (also in log.jsonl)
    epochs: list = field(default_factory=list)  # epoch records with val_top1 / val_top5
    global_step: int = 0
    finished: bool = False  # False when max_steps stopped the run early
    out_dir: str | None = None
    rank: int = 0  # this process's rank in a data-parallel run (only rank 0 writes)

    @property
    def final(self) -> dict:
        """The last epoch record ({} before the first epoch ends)."""
        return self.epochs[-1] if self.epochs else {}


def build_model(config: TrainConfig, num_classes: int) -> OverFeat:
    """The network named by `config` (Table 1, Table 3 or the small variant), initialised
    (`models.build_model`; init "auto" follows the model config's `weight_init`)."""
    xp = get_backend(config.backend)  # once: a clear BackendError, and one driver query for every layer
    return models.build_model(config.model, num_classes, config.width, seed=config.seed, backend=xp,
                              input_size=config.input_size, init=config.init)


def default_transforms(input_size: int, resize: int | str | None = "auto", flip: bool = True):
    """(TrainTransform, EvalTransform) of Section 3 for a model with `input_size` crops.

    resize "auto": smallest side to round(input_size * 256 / 231) (256 for the fast model's 231);
    None: crop the images as they are (synthetic images generated a little larger than the crop).
    """
    if resize == "auto":
        resize = round(input_size * RESIZE_RATIO)
    return (TrainTransform(crop=input_size, resize=resize, flip=flip),
            EvalTransform(crop=input_size, resize=resize))


def evaluate(model: OverFeat, loader: DataLoader, progress: bool = False) -> dict:
    """Top-1/top-5 accuracy and mean loss of `model` over one pass of `loader` (eval mode).

    Batches move to the model's array module (uint8 batches are normalised there with the loader
    transform's mean and std). Returns {"top1", "top5", "loss", "count"}; top5 is top-min(5, C).
    Images with label -1 (no object) are not counted.
    """
    xp = model.xp
    k5 = min(5, model.config.num_classes)
    hits1 = hits5 = loss_sum = 0.0
    count = 0
    for batch in tqdm(loader.batches(0), total=len(loader), desc="eval", leave=False, disable=not progress):
        keep = batch["labels"] >= 0
        if not keep.any():
            continue
        labels = batch["labels"][keep]
        x = xp.asarray(batch["x"][keep])
        if x.dtype == "uint8":
            x = normalize_batch(x, loader.transform.mean, loader.transform.std)
        logits, _ = model.forward(x, train=False)
        loss, _ = softmax_cross_entropy(logits, xp.asarray(labels))
        acc = topk_accuracy(to_numpy(logits), labels, k=(1, k5))
        n = len(labels)
        hits1 += acc[1] * n
        hits5 += acc[k5] * n
        loss_sum += float(loss) * n
        count += n
    if count == 0:
        raise ValueError("evaluate: the loader yielded no labelled image")
    return {"top1": hits1 / count, "top5": hits5 / count, "loss": loss_sum / count, "count": count}


def read_log(path) -> list[dict]:
    """The records of a log.jsonl file (written by `train`), in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _append_jsonl(path, record: dict):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(path, global_step: int):
    """Drop log records written after the checkpoint we resume from (they will be redone)."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        keep = [line for line in f if line.strip() and json.loads(line).get("global_step", 0) <= global_step]
    with open(path, "w") as f:
        f.writelines(keep)


def blas_threads_for(config: TrainConfig) -> int:
    """The BLAS threads of the training process: `config.blas_threads` if set, else the package's
    policy (`blas.default_threads`: one, whatever the loader workers). Recorded in checkpoints:
    the float rounding of every GEMM, and so the weights, depend on it."""
    return int(config.blas_threads) if config.blas_threads is not None else default_threads()


def _zero_sums() -> dict:
    return {"loss": 0.0, "correct": 0, "seen": 0}


@dataclass
class _Loop:
    """What the steps of `train` share: the run's objects and its position (saved in checkpoints)."""

    config: TrainConfig
    model: OverFeat
    optimizer: SGD
    schedule: StepSchedule
    classes: list
    xp: object  # the model's array module (numpy or cupy): every batch moves with xp.asarray
    log_path: str | None  # out_dir/log.jsonl (None: out_dir is None, nothing is written)
    latest: str | None  # out_dir/latest.npz
    epoch: int = 0
    batch: int = 0  # batches of `epoch` done
    step: int = 0  # steps done in total
    # Running sums of the current epoch, saved so a resumed epoch reports the same averages.
    sums: dict = field(default_factory=_zero_sums)
    history: History | None = None
    normalization: tuple | None = None  # (mean, std) of uint8 batches normalised on the device
    comm: object = field(default_factory=distributed.Local)  # gradients averaged over ranks
    interrupted: object = bool  # () -> True once Ctrl-C has been pressed (`_interrupt_between_steps`)

    @property
    def writes(self) -> bool:
        """Whether this process writes logs, checkpoints and weights (rank 0 only)."""
        return self.config.out_dir is not None and self.comm.rank == 0


def train(config: TrainConfig, train_set, val_set=None, *, resume=None, transforms=None,
          model: OverFeat | None = None, classes=None, on_step=None) -> History:
    """Train an OverFeat classifier on `train_set` (sample-format dataset), evaluating on `val_set`.

    resume: a checkpoint path, True for `out_dir/latest.npz`, or None for a fresh run.
    transforms: (train_transform, eval_transform); default `default_transforms(input_size)`.
    model: train this model instead of `build_model(config)` (its config must match a resumed
    checkpoint). on_step(record): called after every step with the step record (its loss, acc and
    images_per_s only every `log_every` steps, where the host reads them; tests use it to
    simulate a crash). Returns a History; the model is trained in place. Pictures of the run are
    the caller's (`viz.plot_run`).
    """
    loop = _start(config, train_set, model, classes)
    if config.distributed:
        _join(loop, train_set)
    try:
        return _train(loop, config, train_set, val_set, resume, transforms, on_step)
    except Exception as exc:
        if loop.comm.size > 1:  # the other ranks would wait for this one forever: end them all
            loop.comm.abort(f"{type(exc).__name__}: {exc}")
        raise


def _train(loop: _Loop, config: TrainConfig, train_set, val_set, resume, transforms, on_step) -> History:
    _resume_state(loop, resume)
    loop.history = History(model=loop.model, global_step=loop.step, out_dir=config.out_dir, rank=loop.comm.rank)
    if config.max_steps is not None and loop.step >= config.max_steps:
        return loop.history  # resumed at or past the requested stop: nothing to do
    if loop.log_path and os.path.exists(loop.log_path):
        for r in read_log(loop.log_path):
            (loop.history.epochs if r["kind"] == "epoch" else loop.history.steps).append(r)
    train_tf, eval_tf = transforms or default_transforms(loop.model.config.input_size, flip=config.flip)
    if not on_cpu(loop.xp):  # a GPU: uint8 crops cross, the device normalises them
        train_tf, eval_tf = _as_uint8(train_tf), _as_uint8(eval_tf)
    if getattr(train_tf, "uint8", False):
        loop.normalization = (train_tf.mean, train_tf.std)
    with contextlib.ExitStack() as stack:  # closes the loaders' workers and restores the BLAS
        loop.interrupted = stack.enter_context(_interrupt_between_steps())
        loader, val_loader = _loaders(config, train_set, val_set, train_tf, eval_tf, stack,
                                      (loop.comm.rank, loop.comm.size))
        stack.enter_context(limit_blas(blas_threads_for(config)))
        while loop.epoch < config.epochs:
            timing = _run_epoch(loop, loader, on_step)
            if timing is None:
                return loop.history  # max_steps reached, with a checkpoint
            record = _epoch_record(loop, *timing, skipped=loader.num_skipped)
            _evaluate_epoch(loop, val_loader, record)
            _log_epoch(loop, record)
            _next_epoch(loop)
    loop.history.global_step, loop.history.finished = loop.step, True
    if loop.writes:
        save_weights(loop.model, os.path.join(config.out_dir, "weights.npz"))
    return loop.history


@contextlib.contextmanager
def _interrupt_between_steps():
    """Ctrl-C while training takes effect between two steps, never inside one (an SGD update half
    applied would leave weights no checkpoint describes). Yields () -> whether it was pressed."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield bool
        return
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


def _join(loop: _Loop, train_set):
    """Become one rank of a data-parallel job: the communicator, checks that every rank runs the
    same thing, and dropout masks of its own, reproducible from (seed, rank)."""
    comm = loop.comm = distributed.init(loop.xp)
    distributed.shard_size(loop.config.batch_size, comm.size)
    same = {k: v for k, v in loop.config.to_dict().items() if k not in ("progress", "workers", "blas_threads")}
    comm.check_same("the training configuration", same)
    comm.check_same("the model", loop.model.config.to_dict())
    comm.check_same("the training set's size and classes", (len(train_set), list(loop.classes)))
    if comm.rank:
        for i, layer in enumerate(loop.model.dropout_layers):
            layer.rng = np.random.default_rng([loop.config.seed, comm.rank, i])


def _start(config: TrainConfig, train_set, model, classes) -> _Loop:
    """The model (built from `config` unless given), its optimizer and schedule, the output paths."""
    num_classes = config.num_classes or train_set.num_classes
    if num_classes != train_set.num_classes:
        raise ValueError(f"TrainConfig.num_classes={num_classes} but the training set has "
                         f"{train_set.num_classes} classes")
    # The backend is resolved here, once (a clear BackendError before any work); from now on it
    # is the model's array module.
    model = model if model is not None else build_model(config, num_classes)
    if model.config.num_classes != num_classes:
        raise ValueError(f"the model has {model.config.num_classes} outputs but the training set has "
                         f"{num_classes} classes")
    classes = list(classes if classes is not None else getattr(train_set, "classes", range(num_classes)))
    optimizer = SGD(model.params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    schedule = StepSchedule(config.lr, config.milestones, config.gamma)
    log_path = latest = None
    if config.out_dir is not None:
        os.makedirs(config.out_dir, exist_ok=True)
        log_path, latest = os.path.join(config.out_dir, "log.jsonl"), os.path.join(config.out_dir, "latest.npz")
    return _Loop(config, model, optimizer, schedule, classes, model.xp, log_path, latest)


def _resume_state(loop: _Loop, resume):
    """Continue from a checkpoint (a path, or True for out_dir/latest.npz): weights, optimizer,
    schedule, dropout generators, position, and the log cut back to it. Else start a fresh log."""
    if not resume:
        if loop.writes and loop.log_path and os.path.exists(loop.log_path):
            os.remove(loop.log_path)  # a fresh run in an old folder starts a fresh log
        return
    path = loop.latest if resume is True else os.fspath(resume)
    if path is None:
        raise ValueError("resume=True needs an out_dir holding latest.npz; pass the checkpoint path")
    ckpt = load_checkpoint(path)
    saved = ckpt.get("train_config") or {}
    for key in ("seed", "batch_size"):  # they fix the batches; another value cannot continue the run
        if key in saved and saved[key] != getattr(loop.config, key):
            raise ValueError(f"cannot resume {path}: it was trained with {key}={saved[key]}, this run "
                             f"has {key}={getattr(loop.config, key)}; use the same value or a new out_dir")
    _warn_if_rounding_changes(loop.config, saved, path)
    restore_checkpoint(ckpt, loop.model, loop.optimizer, loop.schedule)
    st = ckpt["state"]
    loop.epoch, loop.batch, loop.step = int(st["epoch"]), int(st["batch"]), int(st["global_step"])
    loop.sums = dict(st.get("sums", _zero_sums()))
    _restore_rank_rngs(loop, st, path)
    if loop.writes and loop.log_path:
        _truncate_log(loop.log_path, loop.step)


def _warn_if_rounding_changes(config: TrainConfig, saved: dict, path):
    """Say so when the resumed run will round differently from the one that wrote `path`."""
    threads, before = blas_threads_for(config), saved.get("blas_threads")
    if before is not None and before != threads:
        print(f"overfeat-np: {path} was trained with {before} BLAS thread(s), this run uses {threads}: GEMMs round "
              "differently, so the weights will not be bit-identical to an uninterrupted run; pass "
              f"--blas-threads {before} (TrainConfig.blas_threads={before}) to keep them so", file=sys.stderr)
    if saved.get("backend", config.backend) != config.backend:
        print(f"overfeat-np: {path} was trained on {saved['backend']}, this run uses {config.backend}: the run "
              "continues, but not bit-identically", file=sys.stderr)


def _restore_rank_rngs(loop: _Loop, state: dict, path):
    """Each rank's dropout generators from a data-parallel checkpoint (rank 0's are the model's)."""
    saved = state.get("ranks", 1)
    if saved != loop.comm.size:
        print(f"overfeat-np: {path} was written by {saved} rank(s), this run has {loop.comm.size}: the "
              "batches stay the same, the dropout masks of ranks other than 0 do not, so the run is not "
              f"bit-identical to an uninterrupted one; resume with mpiexec -n {saved} to keep it so",
              file=sys.stderr)
        return
    if loop.comm.rank:
        set_rng_states(loop.model, state["rank_rngs"][loop.comm.rank])
        loop.sums = dict(state["rank_sums"][loop.comm.rank])


def _loaders(config: TrainConfig, train_set, val_set, train_tf, eval_tf, stack, shard=(0, 1)) -> tuple:
    """(training loader, validation loader or None), closed when `stack` closes; shard = (rank,
    ranks): this rank's share of every batch."""
    loader = DataLoader(train_set, config.batch_size, train_tf, shuffle=True, seed=config.seed,
                        num_workers=config.workers, shard=shard)
    stack.callback(loader.close)
    if len(loader) == 0:
        raise ValueError(f"the training set has {len(train_set)} images, fewer than one batch of "
                         f"{config.batch_size}; lower --batch-size")
    if val_set is None or not config.eval_every:
        return loader, None
    val_loader = DataLoader(val_set, config.batch_size, eval_tf, shuffle=False, seed=config.seed,
                            num_workers=config.workers, drop_last=False, shard=shard)
    stack.callback(val_loader.close)
    return loader, val_loader


def _as_uint8(transform):
    """The transform's uint8 twin where it has one (TrainTransform, EvalTransform), else itself."""
    return transform.as_uint8() if hasattr(transform, "as_uint8") else transform


def _host_sums(sums: dict) -> dict:
    """The running sums as host numbers (reading device sums synchronises: checkpoints, epoch ends)."""
    return {"loss": float(sums["loss"]), "correct": int(sums["correct"]), "seen": int(sums["seen"])}


def _checkpoint(loop: _Loop, path=None):
    """Save the run at its current position to `path` (default out_dir/latest.npz); rank 0 writes,
    with every rank's dropout generators."""
    if loop.config.out_dir is None:
        return
    sums = _host_sums(loop.sums)  # on a GPU reading the sums synchronises: once per checkpoint
    ranks = loop.comm.gather_objects((rng_states(loop.model), sums))  # every rank takes part
    if not loop.writes:
        return
    state = {"epoch": loop.epoch, "batch": loop.batch, "global_step": loop.step, "sums": sums}
    if loop.comm.size > 1:  # absent: one process
        state.update(ranks=loop.comm.size, rank_rngs=[r[0] for r in ranks], rank_sums=[r[1] for r in ranks])
    # The thread count as resolved: a resumed run needs the same one to stay bit-identical.
    config = {**loop.config.to_dict(), "blas_threads": blas_threads_for(loop.config)}
    save_checkpoint(path or loop.latest, loop.model, loop.optimizer, loop.schedule, state, config, loop.classes)


def _on_model(loop: _Loop, batch: dict) -> tuple:
    """The batch where the model lives -> (x float32 (N, 3, S, S), labels int64 (N,)).

    A packed uint8 batch (the GPU path) crosses in one copy and is normalised there; a float
    batch is moved as it is (free on NumPy)."""
    xp = loop.xp
    if "packed" in batch and loop.normalization is not None:
        images, labels = unpack_batch(xp.asarray(batch["packed"]), batch["x_shape"])
        return normalize_batch(images, *loop.normalization), labels
    x = batch["x"] if batch["x"].dtype != "uint8" else normalize_batch(batch["x"], *loop.normalization)
    return xp.asarray(x), xp.asarray(batch["labels"])


def _loss_error(loss, where: str, lr: float) -> FloatingPointError:
    return FloatingPointError(f"the loss became {loss} {where}; lower the learning rate (now {lr:g}) "
                              "or check the input normalisation")


def _train_step(loop: _Loop, batch: dict, lr: float) -> tuple:
    """One SGD step on a host batch -> (loss, number of correct top-1 predictions), both 0-d
    arrays where the model lives (not read here: on a GPU that would wait for the step)."""
    x, labels = _on_model(loop, batch)
    logits, cache = loop.model.forward(x, train=True)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    if on_cpu(loop.xp) and not math.isfinite(loss):  # free on the host: stop at the step itself
        raise _loss_error(loss, f"at step {loop.step + 1}", lr)
    _, grads = loop.model.backward(dlogits, cache)
    loop.optimizer.step(loop.comm.allreduce_mean(grads), lr=lr)
    return loss, (logits.argmax(axis=1) == labels).sum()


def _read_log_values(loop: _Loop, loss, correct, lr: float) -> tuple:
    """(loss, correct) of this step as host numbers: a log step's one synchronisation. On a GPU
    the epoch's loss sum is read with them; if it is no longer finite the run stops here."""
    xp = loop.xp
    if loop.comm.size > 1:  # the global batch's: every rank's share, summed over ranks
        n, b = loop.config.batch_size // loop.comm.size, loop.config.batch_size
        total, hits = loop.comm.sum_values([float(loss) * n, float(correct)])
        if not math.isfinite(total):
            raise _loss_error(total / b, f"at step {loop.step} on some rank", lr)
        return total / b, hits * n / b  # correct / n (this rank's count) = the global accuracy
    if on_cpu(xp):
        return float(loss), int(correct)
    host = to_numpy(xp.stack([loss, correct.astype(xp.float64), xp.asarray(loop.sums["loss"], dtype=xp.float64)]))
    if not math.isfinite(host[2]):
        raise _loss_error(host[2] if math.isnan(host[2]) else host[0],
                          f"by step {loop.step} (checked every {loop.config.log_every} steps)", lr)
    return float(host[0]), int(host[1])


def _run_epoch(loop: _Loop, loader: DataLoader, on_step) -> tuple | None:
    """Train the rest of epoch `loop.epoch`, logging and checkpointing steps as configured.

    Returns (lr, images per second), or None when max_steps stopped the run (after a checkpoint).
    """
    cfg = loop.config
    lr = loop.schedule.lr_at(loop.epoch)
    t0, seen = time.perf_counter(), 0
    bar = tqdm(total=len(loader), initial=loop.batch, desc=f"epoch {loop.epoch + 1}/{cfg.epochs}",
               disable=not cfg.progress or loop.comm.rank > 0, dynamic_ncols=True)
    with bar:
        for batch in loader.batches(loop.epoch, loop.batch):
            loss, correct = _train_step(loop, batch, lr)
            n = len(batch["indices"])  # a host count: the labels may live on the device only
            loop.step += 1
            loop.batch += 1
            seen += n
            loop.sums["loss"] += loss * n  # on the device where the model is: no synchronisation
            loop.sums["correct"] += correct
            loop.sums["seen"] += n
            bar.update(1)
            record = {"kind": "step", "global_step": loop.step, "epoch": loop.epoch, "batch": loop.batch, "lr": lr}
            if loop.step % cfg.log_every == 0:  # the host reads the loss only here
                loss, correct = _read_log_values(loop, loss, correct, lr)
                ips = seen / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{correct / n:.2f}", img_s=f"{ips:.0f}", lr=f"{lr:g}")
                record.update(loss=loss, acc=correct / n, images_per_s=ips)
                loop.history.steps.append(record)
                if loop.writes and loop.log_path:
                    _append_jsonl(loop.log_path, record)
            if cfg.checkpoint_every and loop.step % cfg.checkpoint_every == 0:
                _checkpoint(loop)
            if on_step is not None:
                on_step(record)
            if loop.interrupted():  # Ctrl-C arrived during the step: keep the run, then stop
                _checkpoint(loop)
                where = f"; resume from {loop.latest}" if loop.writes else " (no out_dir: nothing was saved)"
                raise KeyboardInterrupt(f"stopped after step {loop.step}{where}")
            if cfg.max_steps is not None and loop.step >= cfg.max_steps:
                _checkpoint(loop)
                loop.history.global_step = loop.step
                return None
    return lr, seen / max(time.perf_counter() - t0, 1e-9)


def _epoch_record(loop: _Loop, lr: float, images_per_s: float, skipped: int) -> dict:
    """The log record of the epoch just trained (averages over the whole epoch, resumed or not)."""
    sums = _host_sums(loop.sums)
    if loop.comm.size > 1:  # the epoch's sums over every rank's share
        sums = dict(zip(("loss", "correct", "seen"), loop.comm.sum_values([sums["loss"], sums["correct"], sums["seen"]])))
    seen = max(sums["seen"], 1)
    return {"kind": "epoch", "global_step": loop.step, "epoch": loop.epoch, "lr": lr,
            "train_loss": sums["loss"] / seen, "train_acc": sums["correct"] / seen,
            "images_per_s": images_per_s, "skipped_images": skipped}


def _evaluate_epoch(loop: _Loop, val_loader, record: dict):
    """Add val_top1 / val_top5 / val_loss to the epoch record every `eval_every` epochs."""
    if val_loader is not None and (loop.epoch + 1) % loop.config.eval_every == 0:
        ev = evaluate(loop.model, val_loader)
        if loop.comm.size > 1:  # each rank evaluated its share of the validation set
            n = ev["count"]
            t1, t5, loss, count = loop.comm.sum_values([ev["top1"] * n, ev["top5"] * n, ev["loss"] * n, n])
            ev = {"top1": t1 / count, "top5": t5 / count, "loss": loss / count}
        record.update(val_top1=ev["top1"], val_top5=ev["top5"], val_loss=ev["loss"])


def _log_epoch(loop: _Loop, record: dict):
    loop.history.epochs.append(record)
    if loop.writes and loop.log_path:
        _append_jsonl(loop.log_path, record)
    if loop.config.progress and loop.comm.rank == 0:
        tqdm.write(_epoch_line(record, loop.config.epochs))


def _next_epoch(loop: _Loop):
    """Move to the start of the next epoch and checkpoint there (and epoch_NNN.npz if kept)."""
    loop.epoch, loop.batch, loop.sums = loop.epoch + 1, 0, _zero_sums()
    _checkpoint(loop)
    if loop.config.out_dir is not None and loop.config.keep_epoch_checkpoints:
        _checkpoint(loop, os.path.join(loop.config.out_dir, f"epoch_{loop.epoch:03d}.npz"))


def _epoch_line(rec: dict, epochs: int) -> str:
    line = (f"epoch {rec['epoch'] + 1}/{epochs}: train loss {rec['train_loss']:.3f} "
            f"acc {rec['train_acc']:.3f}")
    if "val_top1" in rec:
        line += f" | val top-1 {rec['val_top1']:.3f} top-5 {rec['val_top5']:.3f}"
    return line + f" | {rec['images_per_s']:.0f} img/s"
