"""ImageNet-layout image folders as a dataset in the package's sample format.

Expected tree (see layout.py for a writer that produces it):

    root/train/<wnid>/*.JPEG               also .jpg/.jpeg/.png, any case
    root/val/<wnid>/*.JPEG                 validation in class folders, or flat:
    root/val/*.JPEG                        with labels from LOC_val_solution.csv (labels and
                                           boxes) or a ground-truth file (1-based class index
                                           per line, sorted file order)
    root/LOC_synset_mapping.txt            optional: class order and names
    root/Annotation/<wnid>/<stem>.xml      optional VOC boxes (flat val: Annotation/val/)

Images are decoded lazily in `ds[i]`; a file that cannot be decoded raises CorruptImageError.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from .image_io import is_image_file, load_rgb
from .imagenet_files import find_first, read_class_list, read_ground_truth, read_loc_solution
from .sample import make_sample
from .voc import parse_voc_xml

LAYOUT_HELP = (
    "expected an ImageNet layout: <root>/train/<wnid>/*.JPEG, and for validation either "
    "<root>/val/<wnid>/*.JPEG or a flat <root>/val/*.JPEG with LOC_val_solution.csv or a "
    "ground-truth label file"
)


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
    LOC_val_solution.csv or ground-truth file for a flat val/ folder (found automatically in
    root or root/val when None). Ground-truth indices refer to the full class order (mapping
    file, else class_list).

    Attributes: paths (n,), labels int64 (n,), wnids, classes (names), num_classes, layout
    ("folders", "csv" or "groundtruth").
    """

    def __init__(self, root, split: str = "train", class_list=None, with_boxes: bool = True,
                 val_labels=None):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.root = os.path.abspath(os.fspath(root))
        self.split = split
        self.with_boxes = with_boxes
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"dataset root {self.root} does not exist; {LAYOUT_HELP}")
        split_dir = os.path.join(self.root, split)
        if not os.path.isdir(split_dir):
            raise FileNotFoundError(f"split folder {split_dir} does not exist; {LAYOUT_HELP}")

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
            paths, labels = self._scan_flat(split_dir, full_wnids, val_labels)
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
                return wnids, list(wnids)
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

    def _scan_flat(self, split_dir, full_wnids, val_labels):
        files = _images_in(split_dir)
        if val_labels is None:
            gt = sorted(glob.glob(os.path.join(self.root, "*ground_truth*.txt")))
            val_labels = find_first(
                [os.path.join(d, "LOC_val_solution.csv") for d in (self.root, split_dir)] + gt)
        if val_labels is None:
            raise FileNotFoundError(
                f"flat validation folder {split_dir} needs labels: put LOC_val_solution.csv or "
                f"a *ground_truth*.txt file in {self.root}, or pass val_labels=")
        paths, labels = [], []
        if os.fspath(val_labels).lower().endswith(".csv"):
            self.layout = "csv"
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
        else:
            self.layout = "groundtruth"
            gt = read_ground_truth(val_labels)
            if len(gt) != len(files):
                raise ValueError(f"{val_labels} has {len(gt)} labels but {split_dir} has "
                                 f"{len(files)} images")
            if gt.max(initial=0) >= len(full_wnids):
                raise ValueError(f"{val_labels} has class index {gt.max() + 1} but there are "
                                 f"only {len(full_wnids)} classes")
            for p, g in zip(files, gt):
                label = self._index.get(full_wnids[g])
                if label is not None:
                    paths.append(p)
                    labels.append(label)
        return paths, labels

    # -- access -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (f"ImageFolderDataset({self.root!r}, split={self.split!r}, "
                f"{len(self)} images, {self.num_classes} classes, layout={self.layout!r})")

    def __getitem__(self, i: int) -> dict:
        path = self.paths[i]
        image = load_rgb(path)
        boxes, box_labels = self._boxes(path, int(self.labels[i]), image.shape)
        return make_sample(image, self.labels[i], boxes, box_labels)

    def _boxes(self, path, label, shape):
        """Boxes (k, 4) and labels (k,) of image `path`, clipped to the image of `shape`."""
        empty = np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
        if not self.with_boxes:
            return empty
        if self._csv_boxes is not None:
            boxes, box_labels = self._csv_boxes[path]
        else:
            xml = self._xml_path(path, label)
            if xml is None:
                return empty
            boxes, names, size = parse_voc_xml(xml)
            keep = [j for j, n in enumerate(names) if n in self._index]
            boxes = boxes[keep]
            box_labels = np.array([self._index[names[j]] for j in keep], np.int64)
            if size is not None and size != (shape[1], shape[0]):
                # A few ImageNet XMLs describe a differently sized copy of the image.
                boxes = boxes * np.array([shape[1] / size[0], shape[0] / size[1]] * 2,
                                         np.float32)
        h, w = shape[:2]
        boxes = np.clip(boxes, 0, np.array([w, h, w, h], np.float32))
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes[keep], np.asarray(box_labels, np.int64)[keep]

    def _xml_path(self, path, label):
        if self._ann_root is None:
            return None
        folder = self.wnids[label] if self.layout == "folders" else self.split
        return find_first([os.path.join(self._ann_root, folder, _stem(path) + ".xml")])
