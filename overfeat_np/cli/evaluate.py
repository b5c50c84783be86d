"""`overfeat-np evaluate`: classification accuracy (default), localization error (--task
localization, `localize.run_evaluate_localization`) or detection mAP (--task detection,
`detect.run_evaluate_detection`).

    overfeat-np evaluate (--checkpoint PATH | --weights PATH) (--data ROOT | --synthetic N)
    overfeat-np evaluate --task localization --weights PATH --regressor PATH (--data ROOT | --synthetic N)
    overfeat-np evaluate --task detection --detector PATH --regressor PATH (--data ROOT | --synthetic N)
"""

from __future__ import annotations

from ..data import DataLoader
from ..train import evaluate
from .detect import add_detection_options, run_evaluate_detection
from .localize import run_evaluate_localization
from .options import add_data, add_model_source, classification_data, load_model
from .registry import CLIError, command

TASKS = ("classification", "localization", "detection")


def _evaluate_args(p):
    p.add_argument("--task", choices=TASKS, default="classification",
                   help="classification: top-1/top-5 (needs --checkpoint or --weights); localization: "
                        "top-5 localization error, the default accumulation vs Section 4.3's greedy merge vs NMS vs a centre box (Section 4; also "
                        "--regressor); detection: mAP (Section 5; needs --detector and --regressor, same as "
                        "the evaluate-detection subcommand)")
    add_model_source(p, required=False)
    p.add_argument("--regressor", help="localization: train-regressor's file; detection: the regressor on the "
                                       "detector's features (train-detector's regressor.npz)")
    p.add_argument("--detector", help="detection: detector weights (train-detector's detector.npz)")
    add_data(p)
    p.add_argument("--seed", type=int, default=0, help="synthetic set seed used for training (default 0); "
                                                       "the evaluation images use seed+1000")
    p.add_argument("--batch-size", type=int, default=64)
    add_detection_options(p, "localization 1,2,4,6; detection the model's scales.detection_scales")
    p.add_argument("--limit", type=int, help="localization/detection: evaluate the first N images only")
    p.add_argument("--out", help="detection: folder for pr_curves.png and map.json (default: print only)")


def _require(args, names: str, task: str, hint: str):
    """CLIError unless one of the --options in `names` ("a|b") was given."""
    if not any(getattr(args, n.replace("-", "_")) for n in names.split("|")):
        given = " or ".join(f"--{n}" for n in names.split("|"))
        raise CLIError(f"evaluate --task {task} needs {given} ({hint})")


@command("evaluate", "evaluate a trained model: classification accuracy (default), localization error "
                     "(--task localization) or detection mAP (--task detection)", _evaluate_args)
def cmd_evaluate(args):
    if args.task == "detection":
        _require(args, "detector", "detection", "the fine-tuned detector, e.g. runs/demo/detector.npz")
        _require(args, "regressor", "detection", "boxes regressed on the detector's features, e.g. "
                                                 "runs/demo/detector_regressor.npz; evaluate-detection runs without")
        return run_evaluate_detection(args)
    _require(args, "checkpoint|weights", args.task, "the trained classifier, e.g. runs/demo/weights.npz")
    if args.task == "localization":
        _require(args, "regressor", "localization", "overfeat-np train-regressor's output, e.g. "
                                                    "runs/demo/regressor.npz")
        return run_evaluate_localization(args)
    model, _ = load_model(args)
    _, val_set, (_, eval_tf) = classification_data(args, model.config.input_size, need_train=False)
    if val_set.num_classes != model.config.num_classes:
        raise CLIError(f"the model has {model.config.num_classes} classes, the data {val_set.num_classes}")
    with DataLoader(val_set, args.batch_size, eval_tf, shuffle=False, drop_last=False,
                    num_workers=args.workers) as loader:
        res = evaluate(model, loader, progress=not args.no_progress)
    print(f"{res['count']} images: top-1 accuracy {res['top1']:.4f} (error {100 * (1 - res['top1']):.2f}%), "
          f"top-5 accuracy {res['top5']:.4f} (error {100 * (1 - res['top5']):.2f}%), loss {res['loss']:.4f}")
    return 0
