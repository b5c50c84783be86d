"""One picture of the paper's three tasks on the same images (Sermanet et al., ICLR 2014).

Row per image: classification (top-5 classes of the multi-scale dense classifier, Section 3.3),
localization (the best regressor box after box accumulation, Section 4), detection (every object
found with a background class, Section 5), both accumulated by the method named in the panel titles
(`METHOD_LABELS`: the package's default accumulation, Section 4.3's greedy merge or NMS; dashed
white: ground truth when known).
`overfeat-np demo` ends with it; `save_detections` draws the `overfeat-np detect` picture,
`draw_localization` the `overfeat-np localize` one, `plot_pr_curves` the precision/recall curves of
the demo and of `overfeat-np evaluate --task detection`.
"""

from __future__ import annotations

from .detect import detect, detect_with_classifier
from .scales import detection_scales

_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
            "#fabed4", "#469990")


def _name(class_names, c) -> str:
    return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)


def draw_boxes(ax, boxes, labels, colours, dashed=False, lw=2.0):
    """Draw (left, top, right, bottom) boxes (N, 4) on a matplotlib axis, a text label on each."""
    from matplotlib.patches import Rectangle

    for (l, t, r, b), text, col in zip(boxes, labels, colours):
        ax.add_patch(Rectangle((l - 0.5, t - 0.5), r - l, b - t, fill=False, ec=col, lw=lw,
                               ls="--" if dashed else "-"))
        if text:
            ax.text(l, t - 1, text, color="white", fontsize=7, va="bottom",
                    bbox={"facecolor": col, "alpha": 0.8, "pad": 1, "lw": 0})


def draw_localization(image, loc, class_names, width: int = 2):
    """The image (uint8 (H, W, 3)) with the guesses of a `localize.Localization` drawn, best one
    thickest -> a PIL image (no matplotlib: one file per image, at the image's own size)."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(img)
    for rank, (c, box, conf) in enumerate(zip(loc.classes, loc.boxes, loc.confidences)):
        colour = _COLOURS[int(c) % len(_COLOURS)]
        left, top, right, bottom = (float(v) for v in box)
        # An untrained regressor can put right < left; PIL refuses such a rectangle, so draw its bounds.
        draw.rectangle([min(left, right), min(top, bottom), max(left, right), max(top, bottom)], outline=colour,
                       width=width + (1 if rank == 0 else 0))
        draw.text((float(box[0]) + 2, float(box[1]) + 1), f"{rank + 1} {class_names[int(c)]} {conf:.2f}",
                  fill=colour)
    return img


def draw_detections(ax, image, detections, class_names=None, gt_boxes=None, title=None):
    """Image uint8 (H, W, 3) with its `detect.Detection`s (and dashed ground-truth boxes)."""
    ax.imshow(image)
    if gt_boxes is not None and len(gt_boxes):
        draw_boxes(ax, gt_boxes, [""] * len(gt_boxes), ["white"] * len(gt_boxes), dashed=True, lw=1.2)
    draw_boxes(ax, [d.box for d in detections], [f"{_name(class_names, d.cls)} {d.score:.1f}" for d in detections],
               [_COLOURS[d.cls % len(_COLOURS)] for d in detections])
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def save_detections(image, detections, class_names, out_png, title=None):
    """One image with its detections (`draw_detections`) saved to out_png (`overfeat-np detect`)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5 * image.shape[0] / image.shape[1]))
    draw_detections(ax, image, detections, class_names, title=title)
    fig.savefig(out_png, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out_png


def plot_pr_curves(curves, class_names, out_png, ap=None, title=None):
    """Precision against recall per class -> out_png.

    curves: {class: (precision (n,), recall (n,), thresholds (n,))} (`detect.evaluate_detection`);
    ap: {class: AP} to put in the legend. Classes without ground truth (NaN recall) are skipped.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(5, 4.2))
    drawn = 0
    for c, (p, r, _) in curves.items():
        if len(r) and not np.isnan(r).all():
            label = _name(class_names, c) + ("" if ap is None else f" (AP {ap[c]:.2f})")
            ax.plot(r, p, label=label, color=_COLOURS[c % len(_COLOURS)], lw=1.8)
            drawn += 1
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="lower left")
    else:
        ax.text(0.5, 0.5, "no detections", ha="center", transform=ax.transAxes)
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(out_png, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out_png


def _passes(d, min_score) -> bool:
    return d.score >= (min_score.get(d.cls, float("inf")) if isinstance(min_score, dict) else min_score)


METHOD_LABELS = {"merge": "accumulation (merge)", "paper": "Section 4.3's merge", "nms": "NMS"}
"""How pictures and printouts name each box accumulation (`localize.METHODS`): the default is not
Section 4.3's greedy merge, so it is never called that."""


def showcase(images, classifier, regressor, detector, out_png, class_names=None, det_regressor=None,
             scales=None, score_threshold: float = 0.5, k: int = 5, min_score=0.0, caption=None,
             method: str = "merge"):
    """Draw classification, localization and detection of each image in one figure -> out_png.

    One row per image: the input (dashed white: ground truth when known), the top-k classes of the
    multi-scale classifier as bars (mean over scales of each class's spatial maximum, Section 3.3),
    the best localization box (Section 4) and the detections (Section 5).
    images: uint8 (H, W, 3) arrays or sample dicts (their boxes are drawn as ground truth);
    classifier: the C-class OverFeat; regressor: its box regressor (None: the classifier's merged
    windows); detector: the (C+1)-class detector; det_regressor: the regressor trained on the
    detector's features (None: windows). scales default to `scales.detection_scales`.
    score_threshold: per-location probability that proposes a box (`detect.detect`); min_score:
    the merged score from which a detection is drawn, a float or {class: score} (classes left out
    are not drawn), e.g. each class's best-F1 threshold on a test set; caption: a figure title;
    method: the box accumulation of localization and detection ("merge", "paper", "nms"), named in
    the panel titles (`METHOD_LABELS`).
    Returns the drawn detections per image. A few seconds for 4 images with the small model.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .localize import localize
    from .multiscale import classify_multiscale, top_k

    scales = detection_scales(classifier.config) if scales is None else scales
    samples = [im if isinstance(im, dict) else {"image": im, "boxes": None} for im in images]
    n = len(samples)
    fig, axes = plt.subplots(n, 4, figsize=(11.5, 2.9 * n + (0.4 if caption else 0)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 0.75, 1, 1]})
    label = METHOD_LABELS[method]
    heads = ("input (dashed: truth)", f"classification: top-{k}", f"localization: best box ({label})",
             f"detection ({label})")
    out = []
    for r, (row, s) in enumerate(zip(axes, samples)):
        img, gt = s["image"], s.get("boxes")
        draw_detections(row[0], img, [], gt_boxes=gt)

        scores, _ = classify_multiscale(classifier, img, scales, flip=False)
        top = top_k(scores, k)[::-1]  # best at the top of the bar chart
        row[1].barh(range(len(top)), scores[top], color=[_COLOURS[c % len(_COLOURS)] for c in top])
        row[1].set_yticks(range(len(top)), [_name(class_names, c) for c in top], fontsize=8)
        row[1].set_xlim(0, 1)
        row[1].tick_params(axis="x", labelsize=7)
        # Section 3.3's score: each class's best window probability, averaged over the scales;
        # classes do not share one softmax, so several can be near 1 and they need not sum to 1
        row[1].set_xlabel("best-window probability,\nmean over scales (not summing to 1)", fontsize=7)
        row[1].set_box_aspect(1)
        row[1].spines[["top", "right"]].set_visible(False)

        if regressor is not None:
            loc = localize(classifier, regressor, img, scales, k=1, method=method)
            best = [(int(c), float(sc), tuple(b)) for c, b, sc in zip(loc.classes, loc.boxes, loc.confidences)]
        else:
            best = [(d.cls, d.score, d.box) for d in detect_with_classifier(classifier, img, scales)[:1]]
        row[2].imshow(img)
        draw_boxes(row[2], [b for _, _, b in best], [f"{_name(class_names, c)} {sc:.1f}" for c, sc, _ in best],
                   [_COLOURS[c % len(_COLOURS)] for c, _, _ in best], lw=2.5)
        row[2].set_axis_off()

        dets = [d for d in detect(detector, det_regressor, img, scales, score_threshold, method=method)
                if _passes(d, min_score)]
        draw_detections(row[3], img, dets, class_names, gt)
        row[3].text(0.02, 0.02, f"{len(dets)} found" + ("" if gt is None else f", {len(gt)} true"),
                    transform=row[3].transAxes, fontsize=8, color="white",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 2, "lw": 0})
        out.append(dets)
        if r == 0:
            for ax, head in zip(row, heads):
                ax.set_title(head, fontsize=10)
    if caption:
        fig.suptitle(caption, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out
