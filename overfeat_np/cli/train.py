"""`overfeat-np train`: train an OverFeat classifier (Section 3), resumable; draws curves.png and
filters.png when the run finishes.

    overfeat-np train (--data ROOT | --synthetic N) [--model small] [--epochs 10] [--resume] ...
"""

from __future__ import annotations

import os

from ..backend import backend_name
from ..checkpoint import load_checkpoint
from ..data.transforms import TrainTransform
from ..models import build_config
from ..train import TrainConfig, train
from ..viz import plot_run
from .options import add_data, classification_data, int_list, positive_float, positive_int
from .registry import CLIError, command


def _train_args(p):
    add_data(p)
    p.add_argument("--model", choices=("fast", "accurate", "small"), help="network (default small)")
    p.add_argument("--width", type=float, help="multiply every layer's maps (default 1)")
    p.add_argument("--input-size", type=int, help="small model input (default 64)")
    p.add_argument("--epochs", type=int, help="default 10")
    p.add_argument("--batch-size", type=int, help="default 128 (Section 3)")
    p.add_argument("--lr", type=positive_float, help="initial learning rate (default 5e-2, Section 3)")
    p.add_argument("--milestones", type=int_list, help="comma-separated epochs after which lr is halved "
                                                       "(default 30,50,60,70,80)")
    p.add_argument("--momentum", type=float, help="default 0.6")
    p.add_argument("--weight-decay", type=float, help="default 1e-5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/train", help="output folder (default runs/train)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue from OUT/latest.npz (or the given checkpoint) exactly where it stopped")
    p.add_argument("--checkpoint-every-steps", "--checkpoint-every", dest="checkpoint_every", type=positive_int,
                   metavar="N", help="also write latest.npz every N steps, resumable mid-epoch bit for bit "
                                     "(default: only at the end of each epoch; ILSVRC epochs are hours long)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (with a checkpoint)")
    p.add_argument("--no-flip", action="store_true",
                   help="no random horizontal flips of the training crops (digits, text: a mirrored object is "
                        "another object); kept in the checkpoint's config, so --resume keeps it")
    p.add_argument("--distributed", action="store_true",
                   help="data parallel over the ranks of `mpiexec -n N` (MPI on CPUs, NCCL on GPUs): each rank "
                        "takes 1/N of every --batch-size batch; needs pip install -e \".[mpi]\"")


def _config(args) -> TrainConfig:
    """The run's TrainConfig: the resumed checkpoint's, overridden by the options given now."""
    given = {"model": args.model, "width": args.width, "input_size": args.input_size, "epochs": args.epochs,
             "batch_size": args.batch_size, "lr": args.lr, "momentum": args.momentum,
             "weight_decay": args.weight_decay, "checkpoint_every": args.checkpoint_every,
             "max_steps": args.max_steps, "flip": False if args.no_flip else None,
             "milestones": args.milestones}
    given["blas_threads"] = args.blas_threads  # unset on --resume: the count the run was trained with
    given = {k: v for k, v in given.items() if v is not None}
    base = {}
    if args.resume:
        path = os.path.join(args.out, "latest.npz") if args.resume is True else args.resume
        if not os.path.isfile(path):
            raise CLIError(f"cannot resume: no checkpoint at {path}")
        base = load_checkpoint(path)["train_config"] or {}
        base.pop("max_steps", None)  # a stop request of the earlier invocation, not of this one
        args.resume = path
    # TrainConfig keeps the backend's name: the config is saved as JSON in every checkpoint.
    return TrainConfig.from_dict({**base, **given, "backend": backend_name(args.xp), "out_dir": args.out,
                                  "seed": args.seed, "workers": args.workers,
                                  "progress": not args.no_progress,
                                  "distributed": args.distributed})


@command("train", "train an OverFeat classifier (Section 3), resumable", _train_args)
def cmd_train(args):
    cfg = _config(args)
    input_size = build_config(cfg.model, input_size=cfg.input_size).input_size
    train_set, val_set, transforms = classification_data(args, input_size)
    if not cfg.flip:  # TrainConfig.flip, from --no-flip or the resumed run
        tf = transforms[0]
        transforms = (TrainTransform(tf.crop, tf.resize, tf.mean, tf.std, flip=False), transforms[1])
    history = train(cfg, train_set, val_set, resume=args.resume, transforms=transforms)
    if history.rank:
        return 0  # rank 0 of a data-parallel run draws and reports
    if history.finished:
        plot_run(args.out, history.model)  # curves.png, filters.png
    final = history.final
    msg = f"trained {history.global_step} steps; outputs in {args.out}"
    if "val_top1" in final:
        msg += (f"; validation accuracy top-1 {final['val_top1']:.3f}, top-5 {final['val_top5']:.3f} "
                f"(error {100 * (1 - final['val_top1']):.1f}% / {100 * (1 - final['val_top5']):.1f}%)")
    print(msg)
    return 0
