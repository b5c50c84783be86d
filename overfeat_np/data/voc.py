"""PASCAL-VOC XML box annotations, the format of ImageNet's `Annotation/<wnid>/<image>.xml`.

Coordinate convention: VOC stores 1-based inclusive pixel indices (xmin=1 is the first column,
xmax=W the last). This package uses 0-based boxes with exclusive right/bottom, so
(left, top, right, bottom) = (xmin - 1, ymin - 1, xmax, ymax). Reading and writing apply the
same rule, so a round trip is exact; a 0 in a file (some ImageNet XMLs have it) clips to 0.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import numpy as np


def _number(node, tag: str, path):
    text = node.findtext(tag)
    if text is None or not text.strip():
        raise ValueError(f"malformed VOC XML {path}: <{tag}> missing in <{node.tag}>")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"malformed VOC XML {path}: <{tag}> is {text!r}, not a number") from None


def parse_voc_xml(path):
    """Read a VOC XML file.

    Returns boxes float32 (k, 4) as (left, top, right, bottom), 0-based, right/bottom exclusive;
    names, a list of k object names (wnids for ImageNet); size (W, H) from <size>, or None when
    the file has no usable <size>. Objects without <bndbox> are skipped; <pose>, <truncated>,
    <difficult>, <folder>, <filename> are optional. Raises ValueError naming the file when the
    XML is malformed or a box coordinate is missing or not a number.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"malformed VOC XML {path}: {err}") from None
    size = None
    size_node = root.find("size")
    if size_node is not None:
        try:
            w, h = int(float(size_node.findtext("width"))), int(float(size_node.findtext("height")))
            size = (w, h) if w > 0 and h > 0 else None
        except (TypeError, ValueError):
            size = None  # <size> is optional; a broken one is treated as absent
    boxes, names = [], []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        x1, y1, x2, y2 = (_number(bb, t, path) for t in ("xmin", "ymin", "xmax", "ymax"))
        # 1-based in the file; a 0 (some ImageNet XMLs) means the first pixel, a negative value
        # lies outside the image and stays so (the dataset counts and clips or drops it)
        boxes.append((x1 - 1.0 if x1 >= 1 or x1 < 0 else 0.0, y1 - 1.0 if y1 >= 1 or y1 < 0 else 0.0, x2, y2))
        names.append((obj.findtext("name") or "").strip())
    return np.array(boxes, np.float32).reshape(-1, 4), names, size


def write_voc_xml(path, boxes, names, size, filename: str = "", folder: str = "") -> None:
    """Write boxes (k, 4) (left, top, right, bottom; 0-based, exclusive) with names (k,) and
    size (W, H) as a VOC XML file, creating parent folders."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    s = ET.SubElement(root, "size")
    ET.SubElement(s, "width").text = str(int(size[0]))
    ET.SubElement(s, "height").text = str(int(size[1]))
    ET.SubElement(s, "depth").text = "3"
    for box, name in zip(np.asarray(boxes, np.float64).reshape(-1, 4), names):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = str(name)
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        vals = (box[0] + 1, box[1] + 1, box[2], box[3])
        for tag, val in zip(("xmin", "ymin", "xmax", "ymax"), vals):
            ET.SubElement(bb, tag).text = f"{val:g}"
    ET.indent(root)
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=False)
