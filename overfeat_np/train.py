"""The training loop of Section 3: SGD with momentum on mini-batches of random crops and flips.

    history = train(TrainConfig(model="small", epochs=8, batch_size=32), train_set, val_set)

Section 3 of the paper: mini-batches of 128 random 221/231 crops (and their flips) of images
resized to 256, SGD with momentum 0.6 and L2 weight decay 1e-5, learning rate 5e-2 halved after
epochs 30, 50, 60, 70 and 80, dropout 0.5 on the hidden full layers, weights from N(0, 1e-2).
Training treats the net as non-spatial: one crop in, one C-vector out.

One deliberate departure, for the scaled model only: N(0, 1e-2) is calibrated for the full-size
layers (an 11x11x3 filter has fan-in 363); with the small model's fan-ins of 75-576 it makes every
layer shrink the signal by about 10x, and 8 such layers start training with vanishing gradients
(no progress in 400 steps). `init="auto"` therefore keeps the paper's N(0, 1e-2) for the fast and
accurate models and uses He scaling, N(0, 2 / fan_in), for the small one's hidden layers.

The run is a pure function of its config: the loader's order and augmentation depend only on
(seed, epoch, index), the dropout masks on the dropout layers' generators, which checkpoints save.
So a run stopped at any step and resumed from its last checkpoint ends with bit-identical weights
to one that never stopped (numpy backend).

Output folder (`out_dir`): log.jsonl (one JSON record per `log_every` steps and per epoch),
latest.npz (checkpoint every `checkpoint_every` steps and at every epoch end), epoch_NNN.npz
(with `keep_epoch_checkpoints`), weights.npz (final weights, `serialization.load_weights`),
curves.png and filters.png.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .backend import get_array_module, get_backend, rng_normal, to_device, to_numpy
from .checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from .data import DataLoader, EvalTransform, TrainTransform
from .losses import softmax_cross_entropy
from .metrics import topk_accuracy
from .models import OverFeat, overfeat_accurate, overfeat_fast, overfeat_small
from .optim import SGD, StepSchedule
from .serialization import save_weights
from .viz import plot_filters, plot_history, read_log

MODELS = ("fast", "accurate", "small")
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
    init: str = "auto"  # "paper" N(0, 1e-2), "he" N(0, 2/fan_in), "auto" (see module docstring)
    seed: int = 0  # model init, data order, augmentation, dropout
    backend: str = "numpy"  # "numpy" or "cupy"
    workers: int = 0  # data loader worker processes (0: load in the training process)
    blas_threads: int | None = None  # BLAS threads of the training process; None: see blas_threads_for
    out_dir: str | None = "runs/train"  # None: write nothing (no log, checkpoints or plots)
    eval_every: int = 1  # evaluate on the validation set every this many epochs (0: never)
    log_every: int = 10  # steps between step records in log.jsonl
    checkpoint_every: int = 0  # steps between checkpoints (0: only at the end of each epoch)
    keep_epoch_checkpoints: bool = False  # also keep epoch_NNN.npz
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps in total
    progress: bool = True  # tqdm progress bars
    plots: bool = True  # curves.png and filters.png at the end

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

    @property
    def final(self) -> dict:
        """The last epoch record ({} before the first epoch ends)."""
        return self.epochs[-1] if self.epochs else {}


def build_model(config: TrainConfig, num_classes: int) -> OverFeat:
    """The network named by `config` (Table 1, Table 3 or the small variant), initialised."""
    if config.model == "fast":
        model = overfeat_fast(num_classes, config.width, seed=config.seed, backend=config.backend)
    elif config.model == "accurate":
        model = overfeat_accurate(num_classes, config.width, seed=config.seed, backend=config.backend)
    else:
        model = overfeat_small(num_classes, config.width, seed=config.seed, backend=config.backend,
                               input_size=config.input_size or 64)
    init = config.init if config.init != "auto" else ("he" if config.model == "small" else "paper")
    if init == "he":
        he_init(model, config.seed)
    return model


def he_init(model: OverFeat, seed: int = 0):
    """Redraw the hidden layers' weights W from N(0, 2 / fan_in) (He et al. 2015), fan_in =
    prod(W.shape[1:]).

    Used for the small model (see the module docstring). The output layer keeps the paper's
    N(0, 1e-2), so training starts from near-uniform class scores (loss ln C) instead of large
    random ones that make the first steps jump; biases stay 0. Drawn on the host from
    one seeded generator, so NumPy and CuPy start equal. In place; returns the model.
    """
    rng = np.random.default_rng([seed, 1])
    last = max(k for k in model.params if k.startswith("classifier.") and k.endswith(".W"))
    for key, w in model.params.items():
        if key.endswith(".W") and key != last:
            std = math.sqrt(2.0 / int(np.prod(w.shape[1:])))
            w[...] = rng_normal(rng, w.shape, std, xp=get_array_module(w), dtype=w.dtype)
    return model


def default_transforms(input_size: int, resize: int | str | None = "auto"):
    """(TrainTransform, EvalTransform) of Section 3 for a model with `input_size` crops.

    resize "auto": smallest side to round(input_size * 256 / 231) (256 for the fast model's 231);
    None: crop the images as they are (synthetic images generated a little larger than the crop).
    """
    if resize == "auto":
        resize = round(input_size * RESIZE_RATIO)
    return (TrainTransform(crop=input_size, resize=resize, flip=True),
            EvalTransform(crop=input_size, resize=resize))


def evaluate(model: OverFeat, loader: DataLoader, backend: str | None = None, progress: bool = False) -> dict:
    """Top-1/top-5 accuracy and mean loss of `model` over one pass of `loader` (eval mode).

    Returns {"top1", "top5", "loss", "count"}; top5 is top-min(5, C). Images with label -1 (no
    object) are not counted.
    """
    backend = backend or ("cupy" if model.xp.__name__.startswith("cupy") else "numpy")
    k5 = min(5, model.config.num_classes)
    hits1 = hits5 = loss_sum = 0.0
    count = 0
    for batch in tqdm(loader.batches(0), total=len(loader), desc="eval", leave=False, disable=not progress):
        keep = batch["labels"] >= 0
        if not keep.any():
            continue
        x = to_device(batch["x"][keep], backend)
        labels = batch["labels"][keep]
        logits, _ = model.forward(x, train=False)
        loss, _ = softmax_cross_entropy(logits, to_device(labels, backend))
        acc = topk_accuracy(to_numpy(logits), labels, k=(1, k5))
        n = len(labels)
        hits1 += acc[1] * n
        hits5 += acc[k5] * n
        loss_sum += loss * n
        count += n
    if count == 0:
        raise ValueError("evaluate: the loader yielded no labelled image")
    return {"top1": hits1 / count, "top5": hits5 / count, "loss": loss_sum / count, "count": count}


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


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def blas_threads_for(config: TrainConfig) -> int | None:
    """How many BLAS threads the training process should use: `config.blas_threads` if set;
    else, when loader worker processes feed a NumPy model, the cores the workers leave free (at
    least 1); else None (leave the BLAS as it is, all cores).

    Why: the workers and the BLAS threads must not outnumber the cores. On 2 cores, 2 workers next
    to OpenBLAS's 2 spinning threads make every GEMM wait for a descheduled thread: the small
    model's step with 2 workers drawing fresh images takes 26.5 ms with 2 BLAS threads and 16.8 ms
    with 1 (`benchmarks/bench_train.py`).
    """
    if config.blas_threads is not None:
        return int(config.blas_threads)
    if config.workers > 0 and config.backend == "numpy":
        return max(1, available_cores() - config.workers)
    return None


def limit_blas(threads: int | None):
    """Context manager: this process's BLAS limited to `threads` inside it (None: no change)."""
    if threads is None:
        return contextlib.nullcontext()
    return threadpool_limits(threads, user_api="blas")


def train(config: TrainConfig, train_set, val_set=None, *, resume=None, transforms=None,
          model: OverFeat | None = None, classes=None, on_step=None) -> History:
    """Train an OverFeat classifier on `train_set` (sample-format dataset), evaluating on `val_set`.

    resume: a checkpoint path, True for `out_dir/latest.npz`, or None for a fresh run.
    transforms: (train_transform, eval_transform); default `default_transforms(input_size)`.
    model: train this model instead of `build_model(config)` (its config must match a resumed
    checkpoint). on_step(record): called after every step with the step record (tests use it to
    simulate a crash). Returns a History; the model is trained in place.
    """
    get_backend(config.backend)  # a clear BackendError now rather than in the first step
    num_classes = config.num_classes or train_set.num_classes
    if num_classes != train_set.num_classes:
        raise ValueError(f"TrainConfig.num_classes={num_classes} but the training set has "
                         f"{train_set.num_classes} classes")
    model = model if model is not None else build_model(config, num_classes)
    if model.config.num_classes != num_classes:
        raise ValueError(f"the model has {model.config.num_classes} outputs but the training set has "
                         f"{num_classes} classes")
    classes = list(classes if classes is not None else getattr(train_set, "classes", range(num_classes)))
    train_tf, eval_tf = transforms or default_transforms(model.config.input_size)
    optimizer = SGD(model.params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    schedule = StepSchedule(config.lr, config.milestones, config.gamma)

    out = config.out_dir
    log_path = latest = None
    if out is not None:
        os.makedirs(out, exist_ok=True)
        log_path, latest = os.path.join(out, "log.jsonl"), os.path.join(out, "latest.npz")
    epoch, start_batch, step = 0, 0, 0
    # Running sums of the current epoch, saved so a resumed epoch reports the same averages.
    sums = {"loss": 0.0, "correct": 0, "seen": 0}
    if resume:
        path = latest if resume is True else os.fspath(resume)
        if path is None:
            raise ValueError("resume=True needs an out_dir holding latest.npz; pass the checkpoint path")
        ckpt = load_checkpoint(path)
        saved = ckpt.get("train_config") or {}
        for key in ("seed", "batch_size"):  # they fix the batches; another value cannot continue the run
            if key in saved and saved[key] != getattr(config, key):
                raise ValueError(f"cannot resume {path}: it was trained with {key}={saved[key]}, this run "
                                 f"has {key}={getattr(config, key)}; use the same value or a new out_dir")
        restore_checkpoint(ckpt, model, optimizer, schedule)
        st = ckpt["state"]
        epoch, start_batch, step = int(st["epoch"]), int(st["batch"]), int(st["global_step"])
        sums = dict(st.get("sums", sums))
        if log_path:
            _truncate_log(log_path, step)
    elif log_path and os.path.exists(log_path):
        os.remove(log_path)  # a fresh run in an old folder starts a fresh log

    history = History(model=model, global_step=step, out_dir=out)
    if config.max_steps is not None and step >= config.max_steps:
        return history  # resumed at or past the requested stop: nothing to do
    if log_path and os.path.exists(log_path):
        for r in read_log(log_path):
            (history.epochs if r["kind"] == "epoch" else history.steps).append(r)

    def checkpoint(ep, batch, path=None):
        if out is None:
            return
        state = {"epoch": ep, "batch": batch, "global_step": step, "sums": sums}
        save_checkpoint(path or latest, model, optimizer, schedule, state, config.to_dict(), classes)

    loader = DataLoader(train_set, config.batch_size, train_tf, shuffle=True, seed=config.seed,
                        num_workers=config.workers)
    val_loader = None
    if val_set is not None and config.eval_every:
        val_loader = DataLoader(val_set, config.batch_size, eval_tf, shuffle=False, seed=config.seed,
                                num_workers=config.workers, drop_last=False)
    if len(loader) == 0:
        raise ValueError(f"the training set has {len(train_set)} images, fewer than one batch of "
                         f"{config.batch_size}; lower --batch-size")
    blas = contextlib.ExitStack()  # left in the finally below, with the loaders
    blas.enter_context(limit_blas(blas_threads_for(config)))
    try:
        while epoch < config.epochs:
            lr = schedule.lr_at(epoch)
            t0, seen0 = time.perf_counter(), 0
            bar = tqdm(total=len(loader), initial=start_batch, desc=f"epoch {epoch + 1}/{config.epochs}",
                       disable=not config.progress, dynamic_ncols=True)
            batch_no = start_batch
            for batch in loader.batches(epoch, start_batch):
                x = to_device(batch["x"], config.backend)  # (N, 3, S, S) float32
                labels = to_device(batch["labels"], config.backend)  # (N,) int64
                logits, cache = model.forward(x, train=True)
                loss, dlogits = softmax_cross_entropy(logits, labels)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"the loss became {loss} at step {step + 1}; lower the learning "
                                             f"rate (now {lr:g}) or check the input normalisation")
                _, grads = model.backward(dlogits, cache)
                optimizer.step(grads, lr=lr)
                n = len(batch["labels"])
                correct = int(to_numpy((logits.argmax(axis=1) == labels).sum()))
                step += 1
                batch_no += 1
                seen0 += n
                sums["loss"] += loss * n
                sums["correct"] += correct
                sums["seen"] += n
                ips = seen0 / max(time.perf_counter() - t0, 1e-9)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{correct / n:.2f}", img_s=f"{ips:.0f}", lr=f"{lr:g}")
                record = {"kind": "step", "global_step": step, "epoch": epoch, "batch": batch_no,
                          "loss": loss, "acc": correct / n, "lr": lr, "images_per_s": ips}
                if step % config.log_every == 0:
                    history.steps.append(record)
                    if log_path:
                        _append_jsonl(log_path, record)
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    checkpoint(epoch, batch_no)
                if on_step is not None:
                    on_step(record)
                if config.max_steps is not None and step >= config.max_steps:
                    bar.close()
                    checkpoint(epoch, batch_no)
                    history.global_step = step
                    return history
            bar.close()
            rec = {"kind": "epoch", "global_step": step, "epoch": epoch, "lr": lr,
                   "train_loss": sums["loss"] / max(sums["seen"], 1),
                   "train_acc": sums["correct"] / max(sums["seen"], 1),
                   "images_per_s": seen0 / max(time.perf_counter() - t0, 1e-9),
                   "skipped_images": loader.num_skipped}
            if val_loader is not None and (epoch + 1) % config.eval_every == 0:
                ev = evaluate(model, val_loader, config.backend)
                rec.update(val_top1=ev["top1"], val_top5=ev["top5"], val_loss=ev["loss"])
            history.epochs.append(rec)
            if log_path:
                _append_jsonl(log_path, rec)
            if config.progress:
                tqdm.write(_epoch_line(rec, config.epochs))
            epoch, start_batch = epoch + 1, 0
            sums = {"loss": 0.0, "correct": 0, "seen": 0}
            checkpoint(epoch, 0)
            if out is not None and config.keep_epoch_checkpoints:
                checkpoint(epoch, 0, os.path.join(out, f"epoch_{epoch:03d}.npz"))
    finally:
        loader.close()
        if val_loader is not None:
            val_loader.close()
        blas.close()
    history.global_step, history.finished = step, True
    if out is not None:
        save_weights(model, os.path.join(out, "weights.npz"))
        if config.plots:
            plot_history(log_path, os.path.join(out, "curves.png"))
            plot_filters(model, os.path.join(out, "filters.png"))
    return history


def _epoch_line(rec: dict, epochs: int) -> str:
    line = (f"epoch {rec['epoch'] + 1}/{epochs}: train loss {rec['train_loss']:.3f} "
            f"acc {rec['train_acc']:.3f}")
    if "val_top1" in rec:
        line += f" | val top-1 {rec['val_top1']:.3f} top-5 {rec['val_top5']:.3f}"
    return line + f" | {rec['images_per_s']:.0f} img/s"
