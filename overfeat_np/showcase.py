"""One picture of the paper's three tasks on the same images (Sermanet et al., ICLR 2014).

Row per image: classification (top-5 classes of the multi-scale dense classifier, Section 3.3),
localization (the best merged regressor box, Section 4), detection (every object found with a
background class and greedy merge, Section 5; dashed white: ground truth when known).
`overfeat-np demo` ends with it; `draw_detections` also draws the `overfeat-np detect` picture.
"""

from __future__ import annotations

from .detect import default_scales, detect, detect_with_classifier

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


def showcase(images, classifier, regressor, detector, out_png, class_names=None, det_regressor=None,
             scales=None, score_threshold: float = 0.5, k: int = 5):
    """Draw classification, localization and detection of each image in one figure -> out_png.

    images: uint8 (H, W, 3) arrays or sample dicts (their boxes are drawn dashed as ground truth);
    classifier: the C-class OverFeat; regressor: its box regressor (None: the classifier's merged
    windows); detector: the (C+1)-class detector; det_regressor: the regressor trained on the
    detector's features (None: windows). scales default to `detect.default_scales`. Returns
    the list of detections per image. A few seconds for 4 images with the small model.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .localize import localize
    from .multiscale import classify_multiscale, top_k

    scales = default_scales(classifier.config) if scales is None else scales
    samples = [im if isinstance(im, dict) else {"image": im, "boxes": None} for im in images]
    fig, axes = plt.subplots(len(samples), 3, figsize=(9, 3 * len(samples)), squeeze=False)
    out = []
    for row, s in zip(axes, samples):
        img = s["image"]
        scores, _ = classify_multiscale(classifier, img, scales, flip=False)
        top = top_k(scores, k)
        row[0].imshow(img)
        row[0].set_axis_off()
        row[0].set_title("classification", fontsize=8)
        row[0].text(1, 1, "\n".join(f"{_name(class_names, c)} {scores[c]:.2f}" for c in top), va="top",
                    fontsize=7, color="white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 2})
        if regressor is not None:
            loc = localize(classifier, regressor, img, scales, k=1)
            best = [(int(c), float(sc), tuple(b)) for c, b, sc in zip(loc.classes, loc.boxes, loc.confidences)]
        else:
            best = [(d.cls, d.score, d.box) for d in detect_with_classifier(classifier, img, scales)[:1]]
        row[1].imshow(img)
        draw_boxes(row[1], [b for _, _, b in best], [_name(class_names, c) for c, _, _ in best],
                   [_COLOURS[c % len(_COLOURS)] for c, _, _ in best])
        row[1].set_axis_off()
        row[1].set_title("localization (top-1 box)", fontsize=8)
        dets = detect(detector, det_regressor, img, scales, score_threshold)
        draw_detections(row[2], img, dets, class_names, s.get("boxes"), f"detection ({len(dets)} objects)")
        out.append(dets)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out
