"""Box accumulation study (issue 15): Section 4.3's greedy merge ("paper"), the package's default
accumulation ("merge", `merge.accumulate`) and NMS, on held-out images, for localization error
and detection mAP, at several object sizes and two scale sets.

    overfeat-np demo --out runs/demo --blas-threads 1          # the synthetic models (~2 min)
    python benchmarks/bench_accumulation.py --demo runs/demo    # synthetic table (~4 min, 1 thread)
    python benchmarks/bench_accumulation.py --demo runs/demo --diagnose   # why the paper's sum loses
    python benchmarks/bench_accumulation.py --digits            # handwritten digits (scikit-learn's
                                                                #   load_digits) on scikit-image photos
    python benchmarks/bench_accumulation.py --demo runs/demo --dev --sizes small --images 30   # quick,
                                                                #   development images only
    python benchmarks/bench_accumulation.py --demo runs/demo --dev --area-powers 1,0.5,0   # choose
                                                                #   merge.DEFAULT_AREA_POWER (dev images)
    python benchmarks/bench_accumulation.py --demo runs/demo --dev --localization-only --images 150 \
        --small-objects 0.2,0.25,0.3,0.4                        # choose merge.DEFAULT_SMALL_OBJECT
    python benchmarks/bench_accumulation.py --demo runs/demo --narrow-regressor   # the regressor
                                                                #   before small objects joined its set

Held out: evaluation images use seeds the models and the method choice never saw (localization
5000, detection 6000; the method was chosen on seed 2000). Object sizes are fractions of the
image side: localization on 64-px images (small 0.1-0.25, similar 0.3-0.6, large 0.6-1.0 of
the side: at the small model's scales 1,2,4,6 that is 7-54, 22-130 and 43-216 px against its 64-px
window), detection on 128-px images with 0..3 objects (small 0.08-0.15, similar 0.2-0.45 as the
demo trains, large 0.45-0.7). Scale sets: the fixed defaults (localization 1,2,4,6; detection
the config's 104,136,168) and "guided" = `scales.scales_for_objects` from the box sizes of 20
*training* images (`scales.object_size_range`). Duplicates: ground-truth objects that keep two
or more detections of their class with IoU >= 0.5 after the merge.
One BLAS thread (threadpoolctl) so the timings of a shared machine do not move the numbers.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from overfeat_np.boxes import iou
from overfeat_np.data import SyntheticShapes
from overfeat_np.detect import DETECT_METHODS, detection_candidates, merge_candidates
from overfeat_np.localize import METHODS, ground_truth, merge_predictions, predict_boxes
from overfeat_np.metrics import Detections, localization_error, mean_average_precision
from overfeat_np.regressor import load_regressor, window_overlap
from overfeat_np.scales import (
    detection_scales,
    object_size_range,
    scales_for,
    scales_for_objects,
    select_scales,
)
from overfeat_np.serialization import load_weights

LOC_SIZES = {"small": (0.1, 0.25), "similar": (0.3, 0.6), "large": (0.6, 1.0)}
DET_SIZES = {"small": (0.08, 0.15), "similar": (0.2, 0.45), "large": (0.45, 0.7)}
LOC_SEED, DET_SEED, TRAIN_SEED = 5000, 6000, 3
DEV_LOC_SEED, DEV_DET_SEED = 2000, 2001  # --dev: development images, for choosing methods (never 5000/6000)


def guided(config, train_set, n=20):
    """`scales_for_objects` from the boxes of the first n training images."""
    boxes = np.concatenate([train_set[i]["boxes"].reshape(-1, 4) for i in range(n)])
    return scales_for_objects(config, object_size_range(boxes), train_set[0]["image"].shape[:2])


NO_FALLBACK = "merge, area only"  # the default without its fallback to the paper's sum for small objects


def variants(methods, powers=()) -> list:
    """[(name, method, keyword arguments)]: the methods, then "merge^P" for each power P."""
    return [(m, m, {}) for m in methods] + [(f"merge^{p:g}", "merge", {"area_power": p}) for p in powers]


def localization_variants(powers=(), small_objects=()) -> list:
    """`variants` of `localize.METHODS`, the default without its small-object fallback
    (`merge_predictions(..., small_object=0)`), then "merge<T": the fallback below T of the window."""
    return (variants(METHODS, powers) + [(NO_FALLBACK, "merge", {"small_object": 0})]
            + [(f"merge<{t:g}", "merge", {"small_object": t}) for t in small_objects])


def paired(preds, gts, a="merge", b="nms") -> tuple:
    """(images only method a localizes, images only b localizes), top-5: the discordant pairs that
    tell a real difference between two methods on the same images from noise (McNemar)."""
    hit = {m: np.array([localization_error([p], [g], 5) == 0 for p, g in zip(preds[m], gts)]) for m in (a, b)}
    return int((hit[a] & ~hit[b]).sum()), int((hit[b] & ~hit[a]).sum())


def scale_sets(fixed_name, fixed, guided_fn, fixed_only: bool) -> list:
    """[(name, scales)]: the fixed set, then (unless fixed_only) the guided one (computed lazily)."""
    return [(fixed_name, fixed)] + ([] if fixed_only else [("guided", guided_fn())])


def localization_rows(model, reg, make_set, sizes, n, fixed_name, fixed, seed=LOC_SEED, powers=(),
                      fixed_only=False, small_objects=()):
    """[(size, scale set, scales, {method: (top-5 error, top-1 error)})]; powers, small_objects:
    `localization_variants`."""
    rows = []
    for size, (lo, hi) in sizes.items():
        val = make_set(n, seed, lo, hi)
        gts = ground_truth(val)
        for set_name, scales in scale_sets(fixed_name, fixed, lambda lo=lo, hi=hi: guided(model.config, make_set(20, TRAIN_SEED, lo, hi)),
                                           fixed_only):
            methods = localization_variants(powers, small_objects)
            preds = {name: [] for name, _, _ in methods}
            for i in range(len(val)):
                raw = predict_boxes(model, reg, val[i]["image"], scales)
                for name, m, kw in methods:
                    loc = merge_predictions(raw, 5, m, **kw)
                    preds[name].append((loc.classes, loc.boxes))
            err = {m: (localization_error(p, gts, 5), localization_error(p, gts, 1)) for m, p in preds.items()}
            rows.append((size, set_name, scales, err))
            print(f"  localization {size:<8} {set_name:<8} " + "  ".join(
                f"{m} {e5:.3f}/{e1:.3f}" for m, (e5, e1) in err.items())
                + "  (only merge right: {}, only NMS: {})".format(*paired(preds, gts)), flush=True)
    return rows


def duplicates(per_image, gts, iou_min=0.5) -> tuple:
    """(objects with >= 2 same-class detections of IoU >= iou_min, objects)."""
    dup = total = 0
    for (boxes, _, classes), (labels, gboxes) in zip(per_image, gts):
        total += len(gboxes)
        for lab, gb in zip(labels, gboxes.reshape(-1, 4)):
            sel = classes == lab
            if sel.any():
                dup += int((iou(boxes[sel], gb[None])[:, 0] >= iou_min).sum() >= 2)
    return dup, total


def detection_rows(det, reg, make_set, sizes, n, fixed_name, fixed, classes, seed=DET_SEED, powers=(),
                   fixed_only=False):
    """[(size, scale set, scales, {method: (mAP, duplicates, objects)})]; powers: `variants`."""
    rows = []
    for size, (lo, hi) in sizes.items():
        test = make_set(n, seed, lo, hi)
        gts = [(np.asarray(test[i]["box_labels"]), np.asarray(test[i]["boxes"], np.float32)) for i in range(n)]
        for set_name, scales in scale_sets(fixed_name, fixed, lambda lo=lo, hi=hi: guided(det.config, make_set(20, TRAIN_SEED, lo, hi)),
                                           fixed_only):
            methods = variants(DETECT_METHODS, powers)
            per = {name: [] for name, _, _ in methods}
            for i in range(n):
                cand = detection_candidates(det, reg, test[i]["image"], scales, 0.5)
                for name, m, kw in methods:
                    per[name].append(merge_candidates(cand, m, **kw) if len(cand.boxes) else
                                  (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)))
            res = {}
            for m, p in per.items():
                rows_ = [(i, c, s, b) for i, (bb, ss, cc) in enumerate(p) for b, s, c in zip(bb, ss, cc)]
                if rows_:
                    ids, cl, sc, bx = (np.array(v) for v in zip(*rows_))
                    dets = Detections(ids.astype(np.int64), cl.astype(np.int64), sc.astype(np.float64),
                                      bx.reshape(-1, 4).astype(np.float64))
                else:
                    dets = Detections(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4)))
                m_ap, _ = mean_average_precision(dets, gts, 0.5, classes=classes)
                res[m] = (m_ap, *duplicates(p, gts))
            rows.append((size, set_name, scales, res))
            print(f"  detection    {size:<8} {set_name:<8} " + "  ".join(
                f"{m} {a:.3f} (dup {d}/{t})" for m, (a, d, t) in res.items()), flush=True)
    return rows


def print_table(title, loc, det):
    """The markdown table of the README: method x scale set x object size."""
    print(f"\n{title}\n")
    print("| objects | scales | loc. error merge | area only | paper | NMS | mAP merge | paper | NMS "
          "| duplicates merge / paper / NMS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (size, sname, sc, err), (_, _, dsc, res) in zip(loc, det or [(None, None, (), None)] * len(loc)):
        e = [f"{err[m][0]:.3f}" for m in ("merge", NO_FALLBACK, "paper", "nms")]
        a = [f"{res[m][0]:.3f}" if res else "-" for m in DETECT_METHODS]
        d = (" / ".join(f"{res[m][1]}" for m in DETECT_METHODS) + f" of {res['merge'][2]}") if res else "-"
        scales = f"{sname} ({','.join(str(h) for h, _ in sc)} / {','.join(str(h) for h, _ in dsc)})"
        print(f"| {size} | {scales} | {' | '.join(e)} | {' | '.join(a)} | {d} |")


def evaluation_seeds(args) -> tuple:
    """(localization, detection) seeds of the evaluation images: development ones with --dev."""
    return (DEV_LOC_SEED, DEV_DET_SEED) if args.dev else (LOC_SEED, DET_SEED)


def chosen(sizes, args) -> dict:
    """The object sizes named by --sizes (all by default)."""
    names = args.sizes.split(",") if args.sizes else list(sizes)
    unknown = [n for n in names if n not in sizes]
    if unknown:
        raise SystemExit(f"--sizes: unknown {unknown}; choose from {list(sizes)}")
    return {n: sizes[n] for n in names}


# --- synthetic shapes ---------------------------------------------------------------------------------
def narrow_regressor(model):
    """The localization regressor as the demo trained it before small objects joined its training
    set: `data.localization_set` only (objects of 20-80% of the window), 20 epochs, the demo's
    scales and step size (README, "Where the default lost, and why")."""
    from overfeat_np.data import localization_set
    from overfeat_np.demo import fit_regressor

    images = localization_set(200, 3, model.config.input_size, model.config.num_classes)
    return fit_regressor(model, images, epochs=20)[0]


def synthetic(args):
    model = load_weights(os.path.join(args.demo, "weights.npz"))
    reg = narrow_regressor(model) if args.narrow_regressor else load_regressor(os.path.join(args.demo, "regressor.npz"), model)
    det = load_weights(os.path.join(args.demo, "detector.npz"))
    dreg = load_regressor(os.path.join(args.demo, "detector_regressor.npz"), det)

    def loc_set(n, seed, lo, hi):
        return SyntheticShapes(n, image_size=64, mode="localization", seed=seed, min_scale=lo, max_scale=hi, cache=True)

    def det_set(n, seed, lo, hi):
        return SyntheticShapes(n, image_size=128, mode="detection", seed=seed, min_scale=lo, max_scale=hi, cache=True)

    fixed = select_scales(scales_for(model.config), (1, 2, 4, 6))
    loc_sizes, det_sizes = chosen(LOC_SIZES, args), chosen(DET_SIZES, args)
    loc_seed, det_seed = evaluation_seeds(args)
    loc = localization_rows(model, reg, loc_set, loc_sizes, args.images, "1,2,4,6", fixed, loc_seed, args.area_powers,
                            args.fixed_only, args.small_objects)
    det_rows = [] if args.localization_only else detection_rows(
        det, dreg, det_set, det_sizes, args.images, "default", detection_scales(det.config),
        list(range(model.config.num_classes)), det_seed, args.area_powers, args.fixed_only)
    print_table("synthetic shapes (localization 64-px images; detection 128-px images)", loc, det_rows)


def size_and_class(raws, gts, ns):
    """Per scale: the object's side / the window's side, true and as the regressor predicts it
    (medians over images; predicted: the true class's windows kept by `merge.keep_strong`), whether
    the scale's most confident window of the true class has box IoU >= 0.5, and whether the scale's
    top class (by peak probability) is right."""
    true_r, pred_r, hit, right = ([[] for _ in range(ns)] for _ in range(4))
    for p, (lab, gb) in zip(raws, gts):
        w, b = p.windows.astype(np.float64), p.boxes.astype(np.float64)
        wside = np.sqrt((w[:, 2] - w[:, 0]) * (w[:, 3] - w[:, 1]))
        bside = np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None))
        gside = float(np.sqrt((gb[0, 2] - gb[0, 0]) * (gb[0, 3] - gb[0, 1])))
        for s in range(ns):
            at = p.scale_ids == s
            right[s].append(p.classes[at][np.argmax(p.scores[at])] == lab[0])
            k = np.flatnonzero(at & (p.classes == lab[0]))
            if not len(k):
                continue
            k = k[p.scores[k] >= 0.5 * p.scores[k].max()]
            true_r[s].append(gside / wside[k[0]])
            pred_r[s].append(np.median(bside[k] / wside[k]))
            best = k[np.argmax(p.scores[k])]
            hit[s].append(iou(p.boxes[best:best + 1], gb[:1])[0, 0] >= 0.5)
    med = lambda v: [round(float(np.median(x)), 2) if x else None for x in v]
    share = lambda v: [round(float(np.mean(x)), 2) if x else None for x in v]
    print(f"  object / window side, truth   {med(true_r)}")
    print(f"  ... as the regressor predicts {med(pred_r)}")
    print(f"  best true-class window IoU>=.5 {share(hit)}")
    print(f"  the scale's top class right   {share(right)}")


def true_class_guesses(locs, gts) -> str:
    """How each method's guesses fare: first guess's class right, localized (top-5), and among the
    guesses of the true class only, the first one and the first five localized."""
    first = np.mean([lc.classes[0] == g[0][0] for lc, g in zip(locs, gts)])
    e5 = localization_error([(lc.classes[:5], lc.boxes[:5]) for lc in locs], gts, 5)
    own = [(lc.classes[lc.classes == g[0][0]], lc.boxes[lc.classes == g[0][0]]) for lc, g in zip(locs, gts)]
    o1 = localization_error([(c[:1], b[:1]) for c, b in own], gts, 1)
    o5 = localization_error([(c[:5], b[:5]) for c, b in own], gts, 5)
    return (f"first guess of the right class {first:.2f}, localized (top-5) {1 - e5:.2f}; true class only: "
            f"first box {1 - o1:.2f}, first five {1 - o5:.2f}")


# --- why the paper's sum loses ------------------------------------------------------------------------
def diagnose(args):
    """Per scale: locations, share of the summed probability, whether the sum's best class is right,
    windows that see >= 50% of the object and the IoU of their boxes; merge threshold t sweep;
    each method with the top-5 or only the top-1 class of each scale (Section 4.3 step a).
    Development images (seed 2000), not the held-out ones of the table."""
    model = load_weights(os.path.join(args.demo, "weights.npz"))
    reg = narrow_regressor(model) if args.narrow_regressor else load_regressor(os.path.join(args.demo, "regressor.npz"), model)
    scales = select_scales(scales_for(model.config), (1, 2, 4, 6))
    for size, (lo, hi) in chosen(LOC_SIZES, args).items():
        val = SyntheticShapes(args.images, image_size=64, mode="localization", seed=DEV_LOC_SEED, min_scale=lo,
                              max_scale=hi)
        gts = ground_truth(val)
        raws = [predict_boxes(model, reg, val[i]["image"], scales) for i in range(len(val))]
        ns = len(scales)
        share, right, seen, own = (np.zeros(ns) for _ in range(4))
        iou_seen, iou_part = np.full((len(raws), ns), np.nan), np.full((len(raws), ns), np.nan)
        for n_img, (p, (lab, gb)) in enumerate(zip(raws, gts)):
            for s in range(ns):
                k = p.scale_ids == s
                sums = {c: p.scores[k & (p.classes == c)].sum() for c in np.unique(p.classes[k])}
                share[s] += sum(sums.values())
                right[s] += max(sums, key=sums.get) == lab[0]
                one = k & (p.classes == p.classes[k][0])  # every location once
                cov = window_overlap(p.windows[one], gb)[:, 0]
                ov = iou(p.boxes[one], gb)[:, 0]
                seen[s] += (cov >= 0.5).mean()
                w, b = p.windows[one].astype(np.float64), p.boxes[one].astype(np.float64)
                inter = (np.clip(np.minimum(w[:, 2], b[:, 2]) - np.maximum(w[:, 0], b[:, 0]), 0, None)
                         * np.clip(np.minimum(w[:, 3], b[:, 3]) - np.maximum(w[:, 1], b[:, 1]), 0, None))
                area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
                own[s] += (inter / area >= 0.5).mean()  # the window sees half of its own predicted box
                if (cov >= 0.5).any():
                    iou_seen[n_img, s] = ov[cov >= 0.5].mean()
                if (cov < 0.5).any():
                    iou_part[n_img, s] = ov[cov < 0.5].mean()
        n = len(raws)
        print(f"{size} objects ({lo}-{hi} of the image), {n} images, scales {[h for h, _ in scales]}")
        print(f"  locations per scale           {np.bincount(raws[0].scale_ids) // 5}")
        print(f"  share of the summed prob.     {np.round(share / share.sum(), 2)}")
        print(f"  summed best class is right    {np.round(right / n, 2)}")
        print(f"  windows seeing >=50% of obj.  {np.round(seen / n, 2)}")
        print(f"  ... of their own box          {np.round(own / n, 2)}  (a filter on it would keep almost all)")
        with np.errstate(all="ignore"):
            print(f"  box IoU, windows seeing >=50% {np.round(np.nanmean(iou_seen, 0), 2)}  (nan: none at that scale)")
            print(f"  box IoU, windows seeing <50%  {np.round(np.nanmean(iou_part, 0), 2)}")
        size_and_class(raws, gts, ns)
        for m in METHODS:
            print(f"  {m:<6} " + true_class_guesses([merge_predictions(p, 50, m) for p in raws], gts))
        for t in (0.25, 0.5, 0.75):
            g = [merge_predictions(p, 5, "paper", t=t) for p in raws]
            print(f"  paper merge t={t}: top-5 error {localization_error([(x.classes, x.boxes) for x in g], gts, 5):.3f}")
        one = [predict_boxes(model, reg, val[i]["image"], scales, top_k=1) for i in range(len(val))]
        for m in METHODS:
            e = [localization_error([(x.classes, x.boxes) for x in (merge_predictions(p, 5, m) for p in r)], gts, 5)
                 for r in (raws, one)]
            print(f"  {m:<6} top-5 error {e[0]:.3f} (top-5 classes per scale), {e[1]:.3f} (top-1 class per scale)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", help="a folder written by `overfeat-np demo --out DIR`")
    ap.add_argument("--digits", action="store_true", help="the handwritten-digits set (needs scikit-learn, scikit-image)")
    ap.add_argument("--diagnose", action="store_true")
    ap.add_argument("--images", type=int, default=100, help="held-out images per setting")
    ap.add_argument("--cache", help="--digits: keep the trained models in this folder and reuse them")
    ap.add_argument("--dev", action="store_true",
                    help="development images (seeds 2000/2001) instead of the held-out ones (5000/6000): "
                         "choose methods here, report the held-out table")
    ap.add_argument("--sizes", help="only these object sizes, e.g. small or small,large (default: all three); "
                                    "with --images 30 --dev a row takes about a minute")
    ap.add_argument("--localization-only", action="store_true", help="skip the detection rows")
    ap.add_argument("--fixed-only", action="store_true", help="skip the guided scale sets")
    ap.add_argument("--narrow-regressor", action="store_true",
                    help="synthetic localization with a regressor trained here as the demo's was before small "
                         "objects joined its training set (objects of 20-80%% of the window only), not regressor.npz")
    ap.add_argument("--area-powers", type=lambda v: tuple(float(x) for x in v.split(",")), default=(),
                    metavar="P,P", help="also print the default accumulation with these vote-weight powers "
                                        "(merge.DEFAULT_AREA_POWER; 1 = area weight, 0 = one vote per window)")
    ap.add_argument("--small-objects", type=lambda v: tuple(float(x) for x in v.split(",")), default=(),
                    metavar="T,T", help="also print localization with the fallback to the paper's sum below these "
                                        "fractions of the largest window (merge.DEFAULT_SMALL_OBJECT; 0 = never)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    with threadpool_limits(1):
        if args.diagnose:
            diagnose(args)
        elif args.digits:
            from bench_accumulation_digits import digits
            digits(args, chosen(LOC_SIZES, args), chosen(DET_SIZES, args), evaluation_seeds(args),
                   localization_rows, detection_rows, print_table)
        else:
            synthetic(args)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
