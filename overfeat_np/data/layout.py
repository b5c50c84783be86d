"""Writing any dataset in the sample format as an ImageNet-layout tree on disk.

The tree (what `ImageFolderDataset` reads, and what the ILSVRC CLS-LOC download looks like):

    root/LOC_synset_mapping.txt                    "wnid name" per class, in label order
    root/train/<wnid>/<wnid>_<i>.JPEG
    root/Annotation/<wnid>/<wnid>_<i>.xml          PASCAL-VOC boxes of train images
    root/val/ILSVRC2012_val_<i>.JPEG               val_layout="csv" or "groundtruth"
    root/LOC_val_solution.csv                      val_layout="csv": labels and boxes
    root/ILSVRC2012_validation_ground_truth.txt    val_layout="groundtruth": devkit IDs, with
    root/meta.mat                                  the devkit's ID -> wnid map, labels ...
    root/Annotation/val/ILSVRC2012_val_<i>.xml     ... and boxes
    root/val/<wnid>/ILSVRC2012_val_<i>.JPEG        val_layout="folders", boxes in
                                                   Annotation/<wnid>/
"""

from __future__ import annotations

import os

from PIL import Image
from tqdm import tqdm

from .imagenet_files import (
    write_class_list,
    write_devkit_meta,
    write_ground_truth,
    write_loc_solution,
)
from .voc import write_voc_xml

VAL_LAYOUTS = ("csv", "groundtruth", "folders")
GROUND_TRUTH_NAME = "ILSVRC2012_validation_ground_truth.txt"


def default_wnids(num_classes: int) -> list[str]:
    """Made-up WordNet-style ids "n90000000", "n90000001", ... that sort in label order."""
    return [f"n{90000000 + c:08d}" for c in range(num_classes)]


def write_imagenet_layout(root, dataset, split: str = "train", val_layout: str = "csv",
                          wnids=None, ext: str = ".JPEG", quality: int = 92,
                          progress: bool = False) -> list[tuple[str, int]]:
    """Write `dataset` (sample format) as split "train" or "val" of an ImageNet tree at `root`.

    wnids: one id per class (default `default_wnids`); they must sort in label order so a
    reader that sorts folder names recovers the labels. ext: ".JPEG" (lossy, quality) or ".png"
    (lossless). Images with label -1 (no object) have no class folder and are skipped, except in
    the flat val/ + CSV layout, where they get an empty PredictionString.
    Returns [(written image path, dataset index), ...].
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if val_layout not in VAL_LAYOUTS:
        raise ValueError(f"val_layout must be one of {VAL_LAYOUTS}, got {val_layout!r}")
    root = os.fspath(root)
    wnids = list(default_wnids(dataset.num_classes) if wnids is None else wnids)
    if len(wnids) != dataset.num_classes or sorted(wnids) != wnids:
        raise ValueError(f"need {dataset.num_classes} wnids in sorted order, got {wnids}")
    os.makedirs(root, exist_ok=True)
    write_class_list(os.path.join(root, "LOC_synset_mapping.txt"), wnids, dataset.classes)

    written, csv_rows, gt_labels = [], [], []
    flat = split == "val" and val_layout != "folders"
    for i in tqdm(range(len(dataset)), desc=f"writing {split}", disable=not progress):
        s = dataset[i]
        label = s["label"]
        if label < 0 and not (flat and val_layout == "csv"):
            continue
        if split == "train":
            stem, folder, ann = f"{wnids[label]}_{i}", wnids[label], wnids[label]
        else:
            stem = f"ILSVRC2012_val_{i + 1:08d}"
            folder = "" if flat else wnids[label]
            ann = "val" if flat else wnids[label]
        path = os.path.join(root, split, folder, stem + ext)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(s["image"]).save(path, **({"quality": quality} if _is_jpeg(ext) else {}))
        names = [wnids[c] for c in s["box_labels"]]
        if val_layout == "csv" and flat:
            csv_rows.append((stem, names, s["boxes"]))
        else:
            h, w = s["image"].shape[:2]
            write_voc_xml(os.path.join(root, "Annotation", ann, stem + ".xml"), s["boxes"],
                          names, (w, h), filename=stem, folder=folder or split)
            gt_labels.append(label)
        written.append((path, i))
    if flat and val_layout == "csv":
        write_loc_solution(os.path.join(root, "LOC_val_solution.csv"), csv_rows)
    elif flat:
        # Ground-truth files hold devkit IDs; the reader needs the devkit's meta.mat to map them.
        write_ground_truth(os.path.join(root, GROUND_TRUTH_NAME), gt_labels)
        write_devkit_meta(os.path.join(root, "meta.mat"), wnids, dataset.classes)
    return written


def _is_jpeg(ext: str) -> bool:
    return ext.lower() in (".jpeg", ".jpg")
