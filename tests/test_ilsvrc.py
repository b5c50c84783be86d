"""ILSVRC-2012 as downloaded: devkit ground truth mapped through meta.mat, the shipped class list.

The fakes here are written the way the devkit's files are (meta.mat by scipy.io.savemat, a
struct array `synsets`), independently of the package's readers.
"""

import os

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from overfeat_np.data import ImageFolderDataset, write_imagenet_layout
from overfeat_np.data.imagenet_files import devkit_classes, read_devkit_meta, read_loc_solution

# Real ILSVRC-2012 wnids, deliberately not numbered in sorted order by the fake devkit below.
WNIDS = ["n01440764", "n01443537", "n02100735", "n02119789", "n03255030"]
NAMES = ["tench, Tinca tinca", "goldfish, Carassius auratus", "English setter",
         "kit fox, Vulpes macrotis", "dumbbell"]


def write_meta_mat(path, synsets):
    """synsets: [(ILSVRC2012_ID, wnid, words, num_children)], written in this row order."""
    rec = np.zeros((1, len(synsets)), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"),
                                             ("words", "O"), ("gloss", "O"),
                                             ("num_children", "O")])
    for r, (sid, wnid, words, children) in zip(rec[0], synsets):
        r["ILSVRC2012_ID"] = np.array([[sid]], np.float64)  # MATLAB doubles, as in the devkit
        r["WNID"], r["words"], r["gloss"] = wnid, words, "a gloss"
        r["num_children"] = np.array([[children]], np.float64)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    savemat(path, {"synsets": rec})


def _image(c, h=30, w=40):
    """A picture whose colour tells its class (0..4) apart after JPEG."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0], img[..., 1] = 50 * c, 255 - 50 * c
    return img


@pytest.fixture
def devkit_tree(tmp_path):
    """An ILSVRC-2012-shaped tree: train/<wnid>/, flat val/, the devkit, LOC_val_solution.csv.

    Returns (root, truth: {val file name: wnid}, id_of: {wnid: ILSVRC2012_ID}, gt path).
    """
    root = tmp_path / "ilsvrc"
    rng = np.random.default_rng(3)
    ids = rng.permutation(len(WNIDS)) + 1  # the devkit's numbering, unrelated to sorted order
    assert list(ids) != list(range(1, len(WNIDS) + 1))
    id_of = {w: int(i) for w, i in zip(WNIDS, ids)}
    synsets = [(id_of[w], w, n, 0) for w, n in zip(WNIDS, NAMES)]
    synsets += [(6, "n01317541", "domestic animal", 2), (7, "n00001740", "entity", 5)]
    order = rng.permutation(len(synsets))  # rows not in ID order either
    write_meta_mat(str(root / "ILSVRC2012_devkit_t12" / "data" / "meta.mat"),
                   [synsets[k] for k in order])
    for c, w in enumerate(WNIDS):
        (root / "train" / w).mkdir(parents=True)
        Image.fromarray(_image(c)).save(root / "train" / w / f"{w}_1.JPEG", quality=95)
    (root / "val").mkdir()
    val_classes = rng.integers(0, len(WNIDS), 12)
    truth, gt_lines, rows = {}, [], ["ImageId,PredictionString"]
    for k, c in enumerate(val_classes, 1):
        stem = f"ILSVRC2012_val_{k:08d}"
        Image.fromarray(_image(c)).save(root / "val" / f"{stem}.JPEG", quality=95)
        truth[stem + ".JPEG"] = WNIDS[c]
        gt_lines.append(f"{id_of[WNIDS[c]]}\n")
        rows.append(f"{stem},{WNIDS[c]} {k} 2 {k + 20} 25 ")  # 1-based xmin ymin xmax ymax
    gt = root / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("".join(gt_lines))
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return root, truth, id_of, gt


def test_ground_truth_ids_map_through_meta_mat(devkit_tree):
    root, truth, _, gt = devkit_tree
    ds = ImageFolderDataset(root, "val", val_labels=gt)
    assert ds.layout == "groundtruth" and ds.wnids == sorted(WNIDS)
    assert ds.classes == [NAMES[WNIDS.index(w)] for w in ds.wnids]  # names from meta.mat
    assert len(ds) == len(truth)
    for path, label in zip(ds.paths, ds.labels):
        assert ds.wnids[label] == truth[os.path.basename(path)]
    # the found-by-itself ground truth (no CSV) gives the same labels
    (root / "LOC_val_solution.csv").unlink()
    auto = ImageFolderDataset(root, "val")
    assert auto.layout == "groundtruth" and list(auto.labels) == list(ds.labels)
    train = ImageFolderDataset(root, "train")
    assert train.wnids == ds.wnids
    for i in range(len(train)):  # the image's colour names its class
        c = WNIDS.index(train.wnids[train[i]["label"]])
        assert abs(int(train[i]["image"][5, 5, 0]) - 50 * c) < 8


def test_csv_and_ground_truth_agree_and_csv_has_boxes(devkit_tree):
    root, truth, _, gt = devkit_tree
    csv_ds = ImageFolderDataset(root, "val")
    gt_ds = ImageFolderDataset(root, "val", val_labels=gt, with_boxes=False)
    assert csv_ds.layout == "csv" and csv_ds.paths == gt_ds.paths
    np.testing.assert_array_equal(csv_ds.labels, gt_ds.labels)
    table = read_loc_solution(root / "LOC_val_solution.csv")
    for i, path in enumerate(csv_ds.paths):
        s = csv_ds[i]
        assert csv_ds.wnids[s["label"]] == truth[os.path.basename(path)]
        k = int(os.path.basename(path)[15:23])
        np.testing.assert_array_equal(s["boxes"], [[k - 1, 1, k + 20, 25]])
        np.testing.assert_array_equal(s["boxes"], table[os.path.basename(path)[:-5]][1])
        assert list(s["box_labels"]) == [s["label"]]


def test_ground_truth_without_meta_is_refused(devkit_tree):
    root, _, _, gt = devkit_tree
    os.remove(root / "ILSVRC2012_devkit_t12" / "data" / "meta.mat")
    # a sorted-order mapping file is exactly what must NOT be used for ground-truth IDs
    (root / "LOC_synset_mapping.txt").write_text(
        "".join(f"{w} {n}\n" for w, n in sorted(zip(WNIDS, NAMES))))
    with pytest.raises(FileNotFoundError,
                       match=r"ILSVRC2012_IDs.*ILSVRC2012_devkit_t12/data/meta\.mat"):
        ImageFolderDataset(root, "val", val_labels=gt)


def test_meta_mat_elsewhere_and_explicit(devkit_tree, tmp_path):
    root, truth, _, gt = devkit_tree
    meta = root / "ILSVRC2012_devkit_t12" / "data" / "meta.mat"
    moved = tmp_path / "somewhere" / "meta.mat"
    moved.parent.mkdir()
    os.replace(meta, moved)
    ds = ImageFolderDataset(root, "val", val_labels=gt, devkit_meta=moved)
    assert [ds.wnids[c] for c in ds.labels] == [truth[os.path.basename(p)] for p in ds.paths]
    os.replace(moved, root / "meta.mat")  # root/meta.mat is found by itself
    ds2 = ImageFolderDataset(root, "val", val_labels=gt)
    np.testing.assert_array_equal(ds2.labels, ds.labels)
    with pytest.raises(FileNotFoundError, match="devkit_meta .*nope.mat does not exist"):
        ImageFolderDataset(root, "val", val_labels=gt, devkit_meta=tmp_path / "nope.mat")


def test_ground_truth_id_unknown_to_meta(devkit_tree):
    root, _, _, gt = devkit_tree
    ids = gt.read_text().split()
    gt.write_text("\n".join(ids[:-1] + ["9"]) + "\n")  # the last image: an ID meta.mat lacks
    with pytest.raises(ValueError, match=r"ILSVRC2012_IDs \[9\] that .*meta.mat does not define"):
        ImageFolderDataset(root, "val", val_labels=gt)


def test_class_subset_skips_other_classes(devkit_tree):
    root, truth, _, gt = devkit_tree
    keep = [WNIDS[3], WNIDS[0]]
    ds = ImageFolderDataset(root, "val", class_list=keep, val_labels=gt)
    expected = [n for n, w in sorted(truth.items()) if w in keep]
    assert [os.path.basename(p) for p in ds.paths] == expected
    assert [keep[c] for c in ds.labels] == [truth[n] for n in expected]


def test_read_devkit_meta_and_devkit_classes(devkit_tree, tmp_path):
    root, _, id_of, _ = devkit_tree
    meta_path = root / "ILSVRC2012_devkit_t12" / "data" / "meta.mat"
    meta = read_devkit_meta(meta_path)
    assert {i: w for i, (w, _, _) in meta.items() if i <= 5} == {i: w for w, i in id_of.items()}
    assert meta[7] == ("n00001740", "entity", 5)
    wnids, names = devkit_classes(meta_path)
    assert wnids == sorted(WNIDS, key=id_of.get)
    assert names == [NAMES[WNIDS.index(w)] for w in wnids]
    bad = tmp_path / "bad.mat"
    savemat(bad, {"something": np.zeros(3)})
    with pytest.raises(ValueError, match="struct array 'synsets'"):
        read_devkit_meta(bad)
    (tmp_path / "text.mat").write_text("not matlab")
    with pytest.raises(ValueError, match="cannot read as a MATLAB file"):
        read_devkit_meta(tmp_path / "text.mat")
    gap = tmp_path / "gap.mat"
    write_meta_mat(str(gap), [(1, "n1", "a", 0), (3, "n3", "c", 0), (2, "n2", "b", 4)])
    with pytest.raises(ValueError, match="leaf synsets .* should be IDs 1..K"):
        devkit_classes(gap)


def test_layout_writer_ground_truth_reads_back_with_identity_meta(tmp_path):
    """write_imagenet_layout's ground-truth file numbers classes in sorted order, which is what
    a meta.mat with ID k = k-th sorted wnid says."""
    from overfeat_np.data import SyntheticShapes, default_wnids

    src = SyntheticShapes(8, image_size=(24, 24), mode="classification", num_classes=3, seed=2)
    write_imagenet_layout(tmp_path, src, "train")
    written = write_imagenet_layout(tmp_path, src, "val", val_layout="groundtruth")
    write_meta_mat(str(tmp_path / "meta.mat"),
                   [(c + 1, w, w, 0) for c, w in enumerate(default_wnids(3))])
    ds = ImageFolderDataset(tmp_path, "val")
    assert ds.layout == "groundtruth"
    labels = {os.path.abspath(p): src[i]["label"] for p, i in written}
    assert [labels[p] for p in ds.paths] == list(ds.labels)


def test_class_file_generator_round_trip(devkit_tree, tmp_path):
    from overfeat_np.data.imagenet_files import read_class_list, write_devkit_class_list

    root, _, id_of, _ = devkit_tree
    out = tmp_path / "classes.txt"
    write_devkit_class_list(root / "ILSVRC2012_devkit_t12" / "data" / "meta.mat", out)
    wnids, names = read_class_list(out)
    assert wnids == sorted(WNIDS, key=id_of.get)  # ID order, leaves only
    assert names == [NAMES[WNIDS.index(w)] for w in wnids]
    assert out.read_text().startswith("# The 5 ILSVRC-2012 classes in ILSVRC2012_ID order")


def test_shipped_class_file_is_package_data():
    from overfeat_np.data.imagenet_files import ILSVRC2012_CLASS_FILE, ilsvrc2012_classes

    wnids, names = ilsvrc2012_classes()
    assert os.path.dirname(ILSVRC2012_CLASS_FILE).endswith(os.path.join("overfeat_np", "data"))
    assert len(wnids) == 1000 and wnids[0] == "n02119789" and names[999] == "dumbbell"
    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml")) as f:
        assert "data/ilsvrc2012_classes.txt" in f.read()  # so a wheel ships it


def test_write_devkit_meta_round_trip(tmp_path):
    from overfeat_np.data.imagenet_files import write_devkit_meta

    write_devkit_meta(tmp_path / "meta.mat", WNIDS, NAMES, ids=[3, 1, 5, 2, 4])
    meta = read_devkit_meta(tmp_path / "meta.mat")
    assert meta == {i: (w, n, 0) for i, w, n in zip([3, 1, 5, 2, 4], WNIDS, NAMES)}
    write_devkit_meta(tmp_path / "plain.mat", WNIDS)
    assert devkit_classes(tmp_path / "plain.mat") == (WNIDS, WNIDS)
