"""ImageNet-layout image folders as a dataset in the package's sample format.

Expected tree (see layout.py for a writer that produces it):

    root/train/<wnid>/*.JPEG               also .jpg/.jpeg/.png, any case
    root/val/<wnid>/*.JPEG                 validation in class folders, or flat:
    root/val/*.JPEG                        with labels from LOC_val_solution.csv (labels and
                                           boxes) or the devkit's ground-truth file
    root/LOC_synset_mapping.txt            optional: class order and names
    root/Annotation/<wnid>/<stem>.xml      optional VOC boxes (flat val: Annotation/val/)
    root/ILSVRC2012_devkit_t12/data/       the devkit: ILSVRC2012_validation_ground_truth.txt
                                           and meta.mat (also found in root/ or root/data/)

The ground-truth file holds ILSVRC2012_IDs, the devkit's own class numbering (ID 1 = n02119789
kit fox), not an index into the sorted class folders; meta.mat maps them to WordNet ids, so a
ground-truth file is refused without it.

Images are decoded lazily in `ds[i]`; a file that cannot be decoded raises CorruptImageError.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from .image_io import decode_rgb, image_hw, is_image_file, open_rgb
from .imagenet_files import (
    DEVKIT_DIRS,
    find_devkit_meta,
    find_first,
    read_class_list,
    read_devkit_meta,
    read_ground_truth,
    read_loc_solution,
)
from .sample import make_sample
from .voc import parse_voc_xml

OUTSIDE_BOXES = ("clip", "drop")
LAYOUT_HELP = (
    "expected an ImageNet layout: <root>/train/<wnid>/*.JPEG, and for validation either "
    "<root>/val/<wnid>/*.JPEG or a flat <root>/val/*.JPEG with LOC_val_solution.csv or a "
    "ground-truth label file"
)
GROUND_TRUTH_NAME = "ILSVRC2012_validation_ground_truth.txt"


def _subdirs(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _images_in(path: str) -> list[str]:
    return sorted(os.path.join(path, e.name) for e in os.scandir(path)
                  if e.is_file() and is_image_file(e.name))


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


class ImageFolderDataset:
    """An ImageNet-layout split on disk.

    root: dataset folder. split: "train" or "val". class_list: None, a list of wnids, or the
    path of a class-list file ("wnid [name]" per line); it fixes the label order and restricts
    the dataset to those classes. Without it the order comes from root/LOC_synset_mapping.txt,
    else from the sorted train/ (then val/) folder names. with_boxes: read boxes (from the CSV
    or VOC XML); otherwise every sample has zero boxes. val_labels: path of a
    LOC_val_solution.csv or devkit ground-truth file for a flat val/ folder (found automatically
    in root, root/val or the devkit folders when None). devkit_meta: path of the devkit's
    meta.mat, which maps the ground-truth file's ILSVRC2012_IDs to wnids (found automatically:
    root/ILSVRC2012_devkit_t12/data/, root/, root/data/); without a LOC_synset_mapping.txt it
    also gives the class names. decode_min_side: the shorter side the transform resizes to
    (e.g. 256); a JPEG at least twice as large is then decoded at 1/2, 1/4 or 1/8 of its size
    (image_io.decode_rgb), never below that side, and its boxes scaled to match. None (default)
    decodes every image in full. Set it only when a resize to at most that side follows.
    outside_boxes: what to do with a box that reaches outside its image (real annotations have
    them): "clip" it to the image (default) or "drop" it; either way it is counted in
    `box_counts` and `box_report()` says how many (boxes left empty by clipping are dropped).
    pil_images: hand out each image as the decoded RGB PIL image instead of an array: for
    TrainTransform / EvalTransform, which then resample their crop straight from it, skipping
    two copies of the whole image (the training loader's fast path; benchmarks/bench_loader.py).

    Attributes: paths (n,), labels int64 (n,), wnids, classes (names), num_classes, layout
    ("folders", "csv" or "groundtruth").
    """

    def __init__(self, root, split: str = "train", class_list=None, with_boxes: bool = True,
                 val_labels=None, devkit_meta=None, decode_min_side: int | None = None,
                 outside_boxes: str = "clip", pil_images: bool = False):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.root = os.path.abspath(os.fspath(root))
        self.split = split
        self.with_boxes = with_boxes
        self.decode_min_side = decode_min_side
        self.pil_images = bool(pil_images)
        if outside_boxes not in OUTSIDE_BOXES:
            raise ValueError(f"outside_boxes must be one of {OUTSIDE_BOXES}, got {outside_boxes!r}")
        self.outside_boxes = outside_boxes
        self.box_counts = {"read": 0, "outside": 0, "clipped": 0, "dropped": 0}  # boxes met so far
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"dataset root {self.root} does not exist; {LAYOUT_HELP}")
        split_dir = os.path.join(self.root, split)
        if not os.path.isdir(split_dir):
            raise FileNotFoundError(f"split folder {split_dir} does not exist; {LAYOUT_HELP}")

        self._meta_path = (os.fspath(devkit_meta) if devkit_meta is not None
                           else find_devkit_meta(self.root))
        if self._meta_path is not None and not os.path.isfile(self._meta_path):
            raise FileNotFoundError(f"devkit_meta {self._meta_path} does not exist")
        full_wnids, names = self._class_order(class_list)
        self.wnids = full_wnids if class_list is None else self._as_wnids(class_list)
        lookup = dict(zip(full_wnids, names))
        self.classes = [lookup.get(w, w) for w in self.wnids]
        self.num_classes = len(self.wnids)
        self._index = {w: c for c, w in enumerate(self.wnids)}
        self._ann_root = find_first(os.path.join(self.root, d)
                                    for d in ("Annotation", "Annotations"))
        self._csv_boxes = None

        folders = _subdirs(split_dir)
        if folders:
            self.layout = "folders"
            paths, labels = self._scan_folders(split_dir, folders, explicit=class_list is not None)
        elif split == "train":
            raise FileNotFoundError(f"{split_dir} has no class folders; {LAYOUT_HELP}")
        else:
            paths, labels = self._scan_flat(split_dir, val_labels)
        if not paths:
            raise ValueError(f"no images found under {split_dir}; {LAYOUT_HELP}")
        self.paths = paths
        self.labels = np.asarray(labels, np.int64)

    # -- construction -----------------------------------------------------------------------
    def _as_wnids(self, class_list) -> list[str]:
        if isinstance(class_list, (str, os.PathLike)):
            return read_class_list(class_list)[0]
        return [str(w) for w in class_list]

    def _class_order(self, class_list):
        """(wnids, names) of the full class order used for names and ground-truth indices."""
        mapping = os.path.join(self.root, "LOC_synset_mapping.txt")
        if os.path.isfile(mapping):
            return read_class_list(mapping)
        if isinstance(class_list, (str, os.PathLike)):
            return read_class_list(class_list)
        if class_list is not None:
            wnids = [str(w) for w in class_list]
            return wnids, list(wnids)
        for split in ("train", "val"):
            d = os.path.join(self.root, split)
            if os.path.isdir(d) and _subdirs(d):
                wnids = _subdirs(d)
                return wnids, self._devkit_names(wnids)
        raise FileNotFoundError(
            f"cannot tell the classes of {self.root}: no LOC_synset_mapping.txt, no class_list "
            f"and no class folders; {LAYOUT_HELP}")

    def _scan_folders(self, split_dir, folders, explicit):
        paths, labels = [], []
        present = set(folders)
        for wnid in self.wnids:
            if wnid not in present:
                if explicit:
                    raise FileNotFoundError(
                        f"class folder {os.path.join(split_dir, wnid)} does not exist")
                continue  # a mapping file may list more classes than were downloaded
            files = _images_in(os.path.join(split_dir, wnid))
            if not files:
                raise ValueError(f"class folder {os.path.join(split_dir, wnid)} has no images "
                                 f"(.JPEG/.jpg/.jpeg/.png)")
            paths += files
            labels += [self._index[wnid]] * len(files)
        unknown = sorted(present - set(self.wnids))
        if not explicit and unknown:
            raise ValueError(f"folders {unknown} in {split_dir} are not in the class list")
        return paths, labels

    def _devkit_names(self, wnids) -> list[str]:
        """Names of `wnids` from the devkit's meta.mat when there is one, else the wnids."""
        if self._meta_path is None:
            return list(wnids)
        words = {w: name for w, name, _ in read_devkit_meta(self._meta_path).values()}
        return [words.get(w, w) for w in wnids]

    def _scan_flat(self, split_dir, val_labels):
        files = _images_in(split_dir)
        if val_labels is None:
            val_labels = find_first(
                [os.path.join(d, "LOC_val_solution.csv") for d in (self.root, split_dir)]
                + [os.path.normpath(os.path.join(self.root, d, GROUND_TRUTH_NAME))
                   for d in DEVKIT_DIRS]
                + sorted(glob.glob(os.path.join(self.root, "*ground_truth*.txt"))))
        if val_labels is None:
            raise FileNotFoundError(
                f"flat validation folder {split_dir} needs labels: put LOC_val_solution.csv in "
                f"{self.root}, or unpack the devkit (ILSVRC2012_devkit_t12.tar.gz: its "
                f"data/{GROUND_TRUTH_NAME} and data/meta.mat) there, or pass val_labels=")
        if os.fspath(val_labels).lower().endswith(".csv"):
            self.layout = "csv"
            return self._scan_csv(files, val_labels)
        self.layout = "groundtruth"
        return self._scan_ground_truth(split_dir, files, val_labels)

    def _scan_csv(self, files, val_labels):
        paths, labels = [], []
        table = read_loc_solution(val_labels)
        self._csv_boxes = {}
        for p in files:
            entry = table.get(_stem(p))
            if entry is None:
                raise ValueError(f"image {p} has no row in {val_labels}")
            box_wnids, boxes = entry
            label = self._index.get(box_wnids[0], None) if box_wnids else -1
            if label is None:
                continue  # a class outside class_list
            keep = [j for j, w in enumerate(box_wnids) if w in self._index]
            self._csv_boxes[p] = (boxes[keep],
                                  np.array([self._index[box_wnids[j]] for j in keep]))
            paths.append(p)
            labels.append(label)
        return paths, labels

    def _scan_ground_truth(self, split_dir, files, val_labels):
        if self._meta_path is None:
            raise FileNotFoundError(
                f"{val_labels} holds ILSVRC2012_IDs, the devkit's own class numbering (ID 1 = "
                f"n02119789 kit fox, not sorted-wnid order), and only the devkit's meta.mat says "
                f"which class each ID is: add it as "
                f"{os.path.join(self.root, 'ILSVRC2012_devkit_t12', 'data', 'meta.mat')} (unpack "
                f"ILSVRC2012_devkit_t12.tar.gz in {self.root}) or pass devkit_meta=; or label the "
                f"flat val/ with LOC_val_solution.csv instead")
        ids = read_ground_truth(val_labels) + 1  # the file's 1-based ILSVRC2012_IDs
        if len(ids) != len(files):
            raise ValueError(f"{val_labels} has {len(ids)} labels but {split_dir} has "
                             f"{len(files)} images")
        id_to_wnid = {i: w for i, (w, _, _) in read_devkit_meta(self._meta_path).items()}
        unknown = sorted(set(ids.tolist()) - set(id_to_wnid))
        if unknown:
            raise ValueError(f"{val_labels} has ILSVRC2012_IDs {unknown[:5]} that "
                             f"{self._meta_path} does not define: a devkit of another year?")
        paths, labels = [], []
        for p, i in zip(files, ids.tolist()):
            label = self._index.get(id_to_wnid[i])
            if label is not None:  # else a class outside this dataset's classes
                paths.append(p)
                labels.append(label)
        if files and not paths:
            raise ValueError(f"none of the classes that {self._meta_path} gives the images of "
                             f"{val_labels} (e.g. {id_to_wnid[ids[0]]}) is among this dataset's "
                             f"{self.num_classes} classes (e.g. {self.wnids[0]})")
        return paths, labels

    # -- access -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (f"ImageFolderDataset({self.root!r}, split={self.split!r}, "
                f"{len(self)} images, {self.num_classes} classes, layout={self.layout!r})")

    def __getitem__(self, i: int) -> dict:
        path = self.paths[i]
        decode = open_rgb if self.pil_images else decode_rgb
        image, scale = decode(path, self.decode_min_side)
        boxes, box_labels = self._boxes(path, int(self.labels[i]), image_hw(image), scale)
        return make_sample(image, self.labels[i], boxes, box_labels)

    def _boxes(self, path, label, shape, scale: float = 1.0):
        """Boxes (k, 4) and labels (k,) of image `path`, clipped to the image of `shape`, which
        was decoded at `scale` times the stored size (decode_rgb)."""
        empty = np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
        if not self.with_boxes:
            return empty
        if self._csv_boxes is not None:
            boxes, box_labels = self._csv_boxes[path]
            boxes = boxes * np.float32(scale)
        else:
            xml = self._xml_path(path, label)
            if xml is None:
                return empty
            boxes, names, size = parse_voc_xml(xml)
            keep = [j for j, n in enumerate(names) if n in self._index]
            boxes = boxes[keep]
            box_labels = np.array([self._index[names[j]] for j in keep], np.int64)
            stored = (shape[1] / scale, shape[0] / scale)  # the file's size, to 1/scale pixels
            off = 0.0 if size is None else max(abs(size[0] - stored[0]), abs(size[1] - stored[1]))
            if off >= 1 / scale:
                # A few ImageNet XMLs describe a differently sized copy of the image.
                boxes = boxes * np.array([shape[1] / size[0], shape[0] / size[1]] * 2,
                                         np.float32)
            else:
                boxes = boxes * np.float32(scale)
        h, w = shape[:2]
        limit = np.array([w, h, w, h], np.float32)
        outside = ((boxes < 0) | (boxes > limit)).any(axis=1)
        box_labels = np.asarray(box_labels, np.int64)
        n = len(boxes)
        if self.outside_boxes == "drop":
            boxes, box_labels, outside = boxes[~outside], box_labels[~outside], outside[~outside]
        boxes = np.clip(boxes, 0, limit)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # clipping can leave nothing
        c = self.box_counts
        c["read"] += n
        c["outside"] += int(outside.sum()) + (n - len(outside))
        c["clipped"] += int((outside & keep).sum())
        c["dropped"] += n - int(keep.sum())
        return boxes[keep], box_labels[keep]

    def box_report(self) -> str:
        """One line: how many of the boxes read so far reached outside their image, and what
        became of them (the `outside_boxes` rule)."""
        c = self.box_counts
        if not c["outside"]:
            return f"{c['read']} boxes read, none outside its image"
        return (f"{c['outside']} of {c['read']} boxes reached outside their image: {c['clipped']} clipped, "
                f"{c['dropped']} dropped (outside_boxes={self.outside_boxes!r}; 'drop' keeps only boxes that "
                "lie inside)")

    def _xml_path(self, path, label):
        if self._ann_root is None:
            return None
        folder = self.wnids[label] if self.layout == "folders" else self.split
        return find_first([os.path.join(self._ann_root, folder, _stem(path) + ".xml")])
