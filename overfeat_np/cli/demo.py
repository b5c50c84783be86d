"""`overfeat-np demo`: the README's first command (`demo.run_demo`), with a summary of its figures."""

from __future__ import annotations

import os

from ..demo import run_demo
from ..localize import METHODS
from .options import method_errors
from .registry import command


def _demo_args(p):
    p.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="a ~40 s version on 2 cores (fewer images and steps)")


@command("demo", "the README's first command: train the small model on synthetic shapes, then show "
                 "classification, localization and detection in one picture (minutes on a CPU)", _demo_args)
def cmd_demo(args):
    s = run_demo(args.out, quick=args.quick, backend=args.xp, progress=not args.no_progress)
    c, loc, det = s["classification"], s["localization"], s["detection"]
    print(f"demo finished in {s['seconds']:.0f} s; outputs in {s['out_dir']}")
    print(f"  classification: validation top-1 {c['val_top1']:.3f}, top-5 {c['val_top5']:.3f} on "
          f"{c['val_images']} held-out images ({len(c['classes'])} classes, chance {1 / len(c['classes']):.3f})")
    errors = {m: loc[f"error_{m}"] for m in METHODS}
    print(f"  localization:   error (top-5, IoU >= 0.5) {method_errors(errors, 3)}, "
          f"centre box {loc['error_centre_box']:.3f} on {loc['val_images']} images")
    print(f"  detection:      mAP {det['mAP']:.3f} (classifier alone {det['mAP_classifier_only']:.3f}) on "
          f"{det['test_images']} images")
    print(f"  pictures: {os.path.join(s['out_dir'], 'showcase.png')} (the three tasks), "
          + ", ".join(f for f in s["files"] if f.endswith(".png") and f != "showcase.png"))
    return 0
