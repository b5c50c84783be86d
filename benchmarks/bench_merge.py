"""Time OverFeat's greedy merge (Section 4.3) against classic NMS on realistic box sets.

Synthetic but shaped like the real thing: the six scales of Table 5 (classifier maps 3x3 ...
21x30, 1575 locations) each predict one box per location for each of the top-k classes; the
locations whose centre falls on an object regress that object's box with noise and high scores,
the others predict scattered low-score false positives. All boxes are in original-image pixels.

    python benchmarks/bench_merge.py            # k = 2, 3, 4 top classes -> 3150-6300 boxes
    python benchmarks/bench_merge.py --topk 3 --repeat 5
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

from overfeat_np.merge import DEFAULT_MERGE_T, batched_nms, greedy_merge

MAPS = [(3, 3), (6, 9), (9, 15), (15, 21), (18, 24), (21, 30)]  # Table 5 classifier maps (H, W)
IMAGE_HW = (461, 569)


def make_boxes(topk: int, n_objects: int = 4, seed: int = 0):
    """Boxes (N, 4), scores (N,), classes (N,) for `topk` classes at six scales."""
    rng = np.random.default_rng(seed)
    H, W = IMAGE_HW
    obj_cls = rng.integers(0, topk, n_objects)
    wh = rng.uniform(0.25, 0.6, (n_objects, 2)) * [W, H]
    ctr = rng.uniform(0.2, 0.8, (n_objects, 2)) * [W, H]
    objs = np.concatenate([ctr - wh / 2, ctr + wh / 2], 1)  # (n_objects, 4)
    boxes, scores, classes = [], [], []
    for mh, mw in MAPS:
        ys, xs = np.meshgrid((np.arange(mh) + 0.5) / mh * H, (np.arange(mw) + 0.5) / mw * W,
                             indexing="ij")
        loc = np.stack([xs.ravel(), ys.ravel()], 1)  # (L, 2) location centres in pixels
        for cls in range(topk):
            b = np.empty((len(loc), 4))
            s = rng.uniform(0.0, 0.15, len(loc))  # background: weak scattered false positives
            half = rng.uniform(20, 80, (len(loc), 2))
            b[:] = np.concatenate([loc - half, loc + half], 1)
            for o in np.flatnonzero(obj_cls == cls):
                x0, y0, x1, y1 = objs[o]
                on = (loc[:, 0] > x0) & (loc[:, 0] < x1) & (loc[:, 1] > y0) & (loc[:, 1] < y1)
                size = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
                b[on] = objs[o] + rng.normal(0, 0.06, (on.sum(), 4)) * size
                s[on] = rng.uniform(0.4, 1.0, on.sum())
            boxes.append(b)
            scores.append(s)
            classes.append(np.full(len(loc), cls))
    b = np.concatenate(boxes)
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
    return b.astype(np.float32), np.concatenate(scores).astype(np.float32), np.concatenate(classes)


def best_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--topk", type=int, nargs="+", default=[2, 3, 4], help="classes per scale")
    p.add_argument("--t", type=float, default=DEFAULT_MERGE_T, help="merge threshold")
    p.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(f"{'boxes':>6} {'classes':>7} {'merge ms':>9} {'merged':>7} {'nms ms':>7} {'kept':>5}")
    for k in args.topk:
        b, s, c = make_boxes(k, seed=args.seed)
        out = greedy_merge(b, s, c, t=args.t)
        kept = batched_nms(b, s, c, 0.5)
        t_merge = best_ms(partial(greedy_merge, b, s, c, t=args.t), args.repeat)
        t_nms = best_ms(partial(batched_nms, b, s, c, 0.5), args.repeat)
        print(f"{len(b):6d} {k:7d} {t_merge:9.1f} {len(out[0]):7d} {t_nms:7.1f} {len(kept):5d}")
        top = ", ".join(f"c{cl}:{cf:.1f}" for cl, cf in zip(out[2][:4], out[1][:4]))
        print(f"{'':6} top merged confidences: {top}")


if __name__ == "__main__":
    main()
