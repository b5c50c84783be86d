"""Readers and writers for ImageNet's small text files (class lists, validation labels).

- LOC_synset_mapping.txt: one class per line, "n01440764 tench, Tinca tinca"; line order is
  the class index. A plain class-list file (one wnid per line, name optional) has the same form.
- LOC_val_solution.csv: header "ImageId,PredictionString", then rows
  "ILSVRC2012_val_00000001,n01751748 111 108 441 411 n01751748 ..." (wnid and VOC-convention
  xmin ymin xmax ymax per object; see voc.py for the convention).
- ground-truth label file (like ILSVRC2012_validation_ground_truth.txt): one 1-based class index
  per line, for the validation images in sorted file-name order.
"""

from __future__ import annotations

import csv
import os

import numpy as np


def read_class_list(path) -> tuple[list[str], list[str]]:
    """Read a synset mapping / class-list file. Returns (wnids, names); name = wnid if absent."""
    wnids, names = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            wnid, _, name = line.partition(" ")
            if wnid in wnids:
                raise ValueError(f"{path}:{lineno}: class {wnid!r} listed twice")
            wnids.append(wnid)
            names.append(name.strip() or wnid)
    if not wnids:
        raise ValueError(f"class list {path} is empty")
    return wnids, names


def write_class_list(path, wnids, names) -> None:
    """Write "wnid name" lines (the LOC_synset_mapping.txt format)."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{wnid} {name}\n" for wnid, name in zip(wnids, names))


def read_loc_solution(path) -> dict[str, tuple[list[str], np.ndarray]]:
    """Read LOC_val_solution.csv into {image id: (wnids (k,), boxes float32 (k, 4))}.

    Boxes are converted to this package's convention (0-based, right/bottom exclusive).
    """
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise ValueError(f"{path}: expected header 'ImageId,PredictionString', got {header}")
        for lineno, row in enumerate(reader, 2):
            if not row:
                continue
            tokens = row[1].split() if len(row) > 1 else []
            if len(tokens) % 5:
                raise ValueError(f"{path}:{lineno}: PredictionString needs groups of "
                                 f"'wnid xmin ymin xmax ymax', got {len(tokens)} tokens")
            groups = [tokens[j:j + 5] for j in range(0, len(tokens), 5)]
            try:
                xyxy = np.array([[float(t) for t in g[1:]] for g in groups], np.float32)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: non-numeric box coordinate") from None
            xyxy = xyxy.reshape(-1, 4)
            xyxy[:, :2] = np.maximum(xyxy[:, :2] - 1, 0)
            out[row[0].strip()] = ([g[0] for g in groups], xyxy)
    return out


def write_loc_solution(path, rows) -> None:
    """Write LOC_val_solution.csv from rows (image id, wnids (k,), boxes (k, 4) 0-based)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ImageId", "PredictionString"])
        for image_id, wnids, boxes in rows:
            parts = []
            for wnid, b in zip(wnids, np.asarray(boxes, np.float64).reshape(-1, 4)):
                parts.append(f"{wnid} {b[0] + 1:g} {b[1] + 1:g} {b[2]:g} {b[3]:g}")
            w.writerow([image_id, " ".join(parts)])


def read_ground_truth(path) -> np.ndarray:
    """Read a ground-truth label file: returns 0-based class indices int64 (n,)."""
    with open(path, encoding="utf-8") as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    try:
        labels = np.array([int(ln) for ln in lines], np.int64) - 1
    except ValueError:
        raise ValueError(f"{path}: every line must be a 1-based class index") from None
    if np.any(labels < 0):
        raise ValueError(f"{path}: class indices are 1-based; found 0 or a negative index")
    return labels


def write_ground_truth(path, labels) -> None:
    """Write 0-based labels (n,) as a 1-based ground-truth file, one per line."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{int(lab) + 1}\n" for lab in labels)


def find_first(paths) -> str | None:
    """The first of `paths` that exists, or None."""
    return next((os.fspath(p) for p in paths if os.path.exists(p)), None)
