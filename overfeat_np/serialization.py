"""Saving and loading weights (.npz) and atomic file writes.

A weights file is an uncompressed .npz holding
    every parameter, keyed like `model.params` ("features.0.W", ...), as host float32
    "__config__"  the model's OverFeatConfig as a JSON string (so the file rebuilds its own model)
    "__format__"  the format version (an integer), checked on load
and nothing that needs pickle, so loading never runs code from the file.

Every write goes through `atomic_write`: the bytes go to a temporary file in the target's
directory, are flushed and fsync'ed, and only then `os.replace`d over the target. A process
killed at any moment leaves either the old file or the new one, never a half-written one, which
is what checkpoints need (the training loop reuses `atomic_savez`).
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from .backend import get_array_module, to_numpy
from .models import OverFeat, OverFeatConfig

FORMAT_VERSION = 1
_CONFIG_KEY, _FORMAT_KEY = "__config__", "__format__"


def atomic_write(path, write_fn):
    """Call write_fn(f) on a binary temp file next to `path`, then atomically rename it to `path`.

    If write_fn raises (or the process dies) the previous file at `path` is untouched and the
    temporary file is removed (on a crash it is left as a hidden ".<name>.*.tmp" file).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path!r}: directory {directory!r} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_directory(directory)  # make the rename itself durable


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_savez(path, **arrays):
    """np.savez(path, **arrays) written atomically; `path` is used as given (no ".npz" appended)."""
    host = {k: to_numpy(v) for k, v in arrays.items()}
    atomic_write(path, lambda f: np.savez(f, **host))


def save_weights(model: OverFeat, path):
    """Write the model's parameters (host float32), config and format version to `path` (.npz)."""
    arrays = {k: to_numpy(v).astype(np.float32, copy=False) for k, v in model.params.items()}
    arrays[_CONFIG_KEY] = np.array(json.dumps(model.config.to_dict()))
    arrays[_FORMAT_KEY] = np.array(FORMAT_VERSION)
    atomic_savez(path, **arrays)


def load_weights(path, model: OverFeat | None = None, backend="numpy") -> OverFeat:
    """Load a file written by `save_weights`.

    model None: build the network from the stored config on `backend` ("numpy", "cupy" or an
    array module) and return it.
    model given: check the file holds the same architecture (config, keys and shapes; else a
    ValueError naming both and the first mismatch) and copy the weights INTO the model's existing
    arrays, on the model's backend, so optimizers holding those arrays stay valid. Returns model.
    """
    config, weights = _read(path)
    if model is None:
        model = OverFeat(config, backend=backend, init="none")
    else:
        _check_same_architecture(path, config, weights, model)
    for key, dst in model.params.items():
        src = weights[key]
        dst[...] = get_array_module(dst).asarray(src, dtype=dst.dtype)
    return model


def read_npz(path, what: str, hint: str) -> dict:
    """Every array of an .npz archive, read eagerly and without pickle, with errors that name the
    file and the `what` it should be ("weights file", "checkpoint", ...): missing
    (FileNotFoundError), unreadable, a single .npy, or a member cut short (ValueError ending with
    `hint`, which says how such a file is made)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {what} at {path!r}")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:  # BadZipFile, pickled or text data, empty file, ...
        raise ValueError(f"{path!r} is not a readable .npz {what} ({type(exc).__name__}: {exc}); {hint}") from exc
    if not hasattr(z, "files"):  # np.load gave a bare array: an .npy file
        raise ValueError(f"{path!r} is a single .npy array, not an .npz {what}; {hint}")
    with z:
        try:
            return {k: z[k] for k in z.files}
        except Exception as exc:  # a member cut short or corrupt: zlib/zip/EOF/format errors
            raise ValueError(f"{path!r} is a corrupt or truncated {what} ({type(exc).__name__}: "
                             f"{exc}); {hint}") from exc


def _read(path):
    """(config, {key: float32 array}) from a weights file, with clear errors for bad files."""
    path = os.fspath(path)
    hint = "write it with overfeat_np.serialization.save_weights"
    weights = read_npz(path, "weights file", hint)
    if _CONFIG_KEY not in weights or _FORMAT_KEY not in weights:
        raise ValueError(f"{path!r} is an .npz file but not an overfeat-np weights file (no "
                         f"{_CONFIG_KEY}/{_FORMAT_KEY}); {hint}, or for the original OverFeat "
                         "release files use overfeat_np.weights.load_official")
    version = int(weights.pop(_FORMAT_KEY))
    config = OverFeatConfig.from_dict(json.loads(str(weights.pop(_CONFIG_KEY))))
    if version > FORMAT_VERSION:
        raise ValueError(f"{path!r} has weights format {version}, newer than this overfeat-np reads "
                         f"({FORMAT_VERSION}); upgrade overfeat-np")
    return config, weights


def describe_architecture(config: OverFeatConfig) -> str:
    """One line naming an architecture, e.g. "fast (input 231, maps 96-256-512-1024-1024, full 3072-4096-1000)"."""
    maps = "-".join(str(c.out_channels) for c in config.convs)
    full = "-".join(str(h) for h in (*config.hidden, config.num_classes))
    return f"{config.name} (input {config.input_size}, maps {maps}, full {full})"


def _check_same_architecture(path, config, weights, model):
    want = model.params
    first = None
    for key, w in want.items():
        if key not in weights:
            first = f"parameter {key!r} is missing from the file"
        elif tuple(weights[key].shape) != tuple(w.shape):
            first = f"{key!r} has shape {tuple(weights[key].shape)} in the file, {tuple(w.shape)} in the model"
        if first:
            break
    if first is None:
        extra = [k for k in weights if k not in want]
        if extra:
            first = f"the file has parameter {extra[0]!r} that the model lacks"
    if first is None and config.to_dict() != model.config.to_dict():
        a, b = config.to_dict(), model.config.to_dict()
        field = next(k for k in b if a.get(k) != b.get(k))
        first = f"config field {field!r} is {a.get(field)!r} in the file, {b.get(field)!r} in the model"
    if first:
        raise ValueError(
            f"{os.fspath(path)!r} holds weights of another architecture: file {describe_architecture(config)}, "
            f"model {describe_architecture(model.config)}; first difference: {first}. Load it with "
            "load_weights(path) (model=None) to build the file's own architecture")


SMALL_SHAPES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "small_shapes.npz")


def small_shapes_classifier(backend="numpy") -> OverFeat:
    """A small OverFeat trained on the six synthetic shape classes (`data.CLASS_NAMES`), shipped
    with the package so lessons and examples start from a trained model without training one.

    Made by `lessons/make_weights.py` (4 epochs on 1,600 images, about a minute; validation top-1
    0.85 on 300 held-out images). Input 64x64, classes in `SyntheticShapes` order.
    """
    return load_weights(SMALL_SHAPES, backend=backend)

