"""Readers and writers for ImageNet's small text files (class lists, validation labels).

- LOC_synset_mapping.txt: one class per line, "n01440764 tench, Tinca tinca"; line order is
  the class index. A plain class-list file (one wnid per line, name optional) has the same form.
- LOC_val_solution.csv: header "ImageId,PredictionString", then rows
  "ILSVRC2012_val_00000001,n01751748 111 108 441 411 n01751748 ..." (wnid and VOC-convention
  xmin ymin xmax ymax per object; see voc.py for the convention).
- ground-truth label file (ILSVRC2012_validation_ground_truth.txt, in the devkit's data/): one
  ILSVRC2012_ID (1-1000) per line, for the validation images in sorted file-name order. The IDs
  are the devkit's own numbering (ID 1 = n02119789 kit fox), NOT sorted-WordNet-ID order: only
  the devkit's data/meta.mat says which class an ID is (`read_devkit_meta`).
- meta.mat (ILSVRC2012_devkit_t12/data/meta.mat): a MATLAB struct array `synsets` with fields
  ILSVRC2012_ID, WNID, words, gloss, num_children, children, wordnet_height, num_train_images;
  the 1000 leaf classes are IDs 1..1000, the rest are their WordNet ancestors.
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
    """Read a ground-truth label file: its 1-based numbers minus 1, int64 (n,). For the devkit's
    file these are ILSVRC2012_IDs - 1, which index `devkit_classes`, not sorted wnids."""
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


# Where the devkit tarball (ILSVRC2012_devkit_t12.tar.gz) unpacked in the dataset root puts its
# files, and where people often copy them; searched in this order.
DEVKIT_DIRS = ("ILSVRC2012_devkit_t12/data", ".", "data", "devkit/data")


def find_devkit_meta(root) -> str | None:
    """Path of the devkit's meta.mat under dataset `root` (see DEVKIT_DIRS), or None."""
    return find_first(os.path.normpath(os.path.join(root, d, "meta.mat")) for d in DEVKIT_DIRS)


def _scalar(value):
    """A MATLAB cell/struct field as loaded by scipy (0-d, 1-element or nested) -> its one value."""
    a = np.asarray(value)
    while a.dtype == object and a.size == 1:
        a = np.asarray(a.reshape(-1)[0])
    return a.reshape(-1)[0] if a.size else None


def read_devkit_meta(path) -> dict[int, tuple[str, str, int]]:
    """Read the devkit's meta.mat: {ILSVRC2012_ID: (wnid, words, num_children)} for every synset.

    Leaf classes have num_children 0 (IDs 1..1000 in ILSVRC-2012); num_children is -1 when the
    file has no such field.
    """
    from scipy.io import loadmat  # scipy.io costs ~0.1 s to import; only devkit users pay it

    try:
        mat = loadmat(os.fspath(path), squeeze_me=True)
    except Exception as err:  # scipy raises several types (MatReadError, ValueError, ...)
        raise ValueError(f"{path}: cannot read as a MATLAB file ({err}); expected the ILSVRC "
                         f"devkit's data/meta.mat") from err
    synsets = mat.get("synsets")
    fields = getattr(getattr(synsets, "dtype", None), "names", None) or ()
    if "ILSVRC2012_ID" not in fields or "WNID" not in fields:
        raise ValueError(f"{path}: expected a struct array 'synsets' with fields ILSVRC2012_ID "
                         f"and WNID (the ILSVRC devkit's data/meta.mat), got "
                         f"{sorted(k for k in mat if not k.startswith('__'))} / {list(fields)}")
    out = {}
    for s in np.atleast_1d(synsets):
        sid, wnid = int(_scalar(s["ILSVRC2012_ID"])), str(_scalar(s["WNID"]))
        words = str(_scalar(s["words"])) if "words" in fields else wnid
        children = int(_scalar(s["num_children"])) if "num_children" in fields else -1
        if sid in out:
            raise ValueError(f"{path}: ILSVRC2012_ID {sid} appears twice")
        out[sid] = (wnid, words, children)
    return out


def write_devkit_meta(path, wnids, names=None, ids=None) -> None:
    """Write a devkit-style meta.mat with leaf synsets only: wnids (k,), names (k,) (default the
    wnids), ids (k,) their ILSVRC2012_IDs (default 1..k in the given order)."""
    from scipy.io import savemat

    names = list(wnids) if names is None else list(names)
    ids = range(1, len(wnids) + 1) if ids is None else ids
    rec = np.zeros((1, len(wnids)), dtype=[(f, "O") for f in (
        "ILSVRC2012_ID", "WNID", "words", "gloss", "num_children")])
    for r, sid, wnid, name in zip(rec[0], ids, wnids, names):
        r["ILSVRC2012_ID"], r["WNID"], r["words"] = float(sid), str(wnid), str(name)
        r["gloss"], r["num_children"] = "", 0.0  # MATLAB doubles, as in the devkit
    savemat(os.fspath(path), {"synsets": rec})


def devkit_classes(path) -> tuple[list[str], list[str]]:
    """The leaf classes of meta.mat `path` in ILSVRC2012_ID order: (wnids, names), ID k at k-1.

    Raises ValueError unless the leaves (num_children 0) are exactly IDs 1..K.
    """
    meta = read_devkit_meta(path)
    leaves = sorted(i for i, (_, _, n) in meta.items() if n == 0)
    if not leaves or leaves != list(range(1, len(leaves) + 1)):
        raise ValueError(f"{path}: the leaf synsets (num_children 0) should be IDs 1..K, got "
                         f"{len(leaves)} leaves from {leaves[:1]} to {leaves[-1:]}")
    return [meta[i][0] for i in leaves], [meta[i][1] for i in leaves]


# The 1000 ILSVRC-2012 classes in ILSVRC2012_ID order, shipped with the package (generated from
# the devkit's meta.mat by write_devkit_class_list).
ILSVRC2012_CLASS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                     "ilsvrc2012_classes.txt")

_CLASS_FILE_HEADER = """\
# The {n} ILSVRC-2012 classes in ILSVRC2012_ID order: the k-th class line is ID k, and output
# k-1 of the original OverFeat weights. One "wnid words" per line (LOC_synset_mapping.txt form).
# Source: the ILSVRC-2012 devkit's data/meta.mat (the synsets with num_children 0), written by
# overfeat_np.data.imagenet_files.write_devkit_class_list. Map by wnid, never by name: two
# classes are called "crane" (n02012849 the bird, n03126707 the machine).
"""


def write_devkit_class_list(meta_path, out_path) -> None:
    """Write the leaf classes of devkit meta.mat `meta_path` in ID order as a class-list file."""
    wnids, names = devkit_classes(meta_path)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(_CLASS_FILE_HEADER.format(n=len(wnids)))
        f.writelines(f"{w} {n}\n" for w, n in zip(wnids, names))


def ilsvrc2012_classes() -> tuple[list[str], list[str]]:
    """The 1000 ILSVRC-2012 classes in ILSVRC2012_ID order: (wnids, names), ID k at k-1."""
    if not os.path.isfile(ILSVRC2012_CLASS_FILE):
        raise FileNotFoundError(
            f"{ILSVRC2012_CLASS_FILE} is missing from this installation: regenerate it from the "
            f"devkit with overfeat_np.data.imagenet_files.write_devkit_class_list("
            f"'ILSVRC2012_devkit_t12/data/meta.mat', ILSVRC2012_CLASS_FILE)")
    return read_class_list(ILSVRC2012_CLASS_FILE)


def find_first(paths) -> str | None:
    """The first of `paths` that exists, or None."""
    return next((os.fspath(p) for p in paths if os.path.exists(p)), None)
