"""Data for overfeat-np: datasets in one sample format, Section 3 transforms, a batch loader.

Every dataset is a sequence whose items are dicts (see sample.py): image uint8 (H, W, 3) RGB,
label int (-1 = no object), boxes float32 (k, 4) (left, top, right, bottom; right/bottom
exclusive), box_labels int64 (k,); plus `classes` and `num_classes`.

- SyntheticShapes: procedurally drawn shapes, for tests and lessons (no download);
  classification_sets / localization_set / detection_set / regressor_set: the sets the CLI, demo
  and tests share.
- ImageFolderDataset: an ImageNet-layout tree; write_imagenet_layout writes one.
- TrainTransform / EvalTransform: resize 256, random or center crop 221/231, flips, normalize.
- DataLoader: NCHW float32 batches, deterministic in (seed, epoch), resumable, worker processes.
"""

from .batch import load_batch
from .folders import ImageFolderDataset
from .image_io import CorruptImageError, decode_rgb, load_rgb, open_rgb
from .imagenet_files import (
    ILSVRC2012_CLASS_FILE,
    devkit_classes,
    find_devkit_meta,
    ilsvrc2012_classes,
    read_devkit_meta,
    write_devkit_class_list,
    write_devkit_meta,
)
from .layout import default_wnids, write_imagenet_layout
from .loader import DataLoader
from .official import official_preprocess
from .sample import check_sample, make_sample
from .synthetic import (
    CLASS_NAMES,
    SMALL_OBJECTS,
    Joined,
    SyntheticShapes,
    classification_sets,
    detection_set,
    localization_set,
    regressor_set,
)
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    TrainTransform,
    center_crop,
    compute_mean_std,
    crop,
    drop_degenerate,
    hflip,
    normalize,
    random_crop,
    resize_smallest,
    resized_crop,
)
from .voc import parse_voc_xml, write_voc_xml

__all__ = [
    "CLASS_NAMES",
    "ILSVRC2012_CLASS_FILE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SMALL_OBJECTS",
    "CorruptImageError",
    "DataLoader",
    "EvalTransform",
    "ImageFolderDataset",
    "Joined",
    "SyntheticShapes",
    "TrainTransform",
    "center_crop",
    "check_sample",
    "classification_sets",
    "compute_mean_std",
    "crop",
    "decode_rgb",
    "default_wnids",
    "detection_set",
    "devkit_classes",
    "drop_degenerate",
    "find_devkit_meta",
    "hflip",
    "ilsvrc2012_classes",
    "load_batch",
    "load_rgb",
    "localization_set",
    "make_sample",
    "normalize",
    "official_preprocess",
    "open_rgb",
    "parse_voc_xml",
    "random_crop",
    "read_devkit_meta",
    "regressor_set",
    "resize_smallest",
    "resized_crop",
    "write_devkit_class_list",
    "write_devkit_meta",
    "write_imagenet_layout",
    "write_voc_xml",
]
