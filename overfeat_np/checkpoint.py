"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is one uncompressed .npz (no pickle, so loading never runs code from the file):
    "param/<key>"         every parameter, keyed like `model.params` ("features.0.W", ...)
    "<section>/<path>"    every other array found in the state, e.g. the optimizer velocities
                          "optimizer/velocity/features.0.W"
    "__checkpoint__"      a JSON string with the rest: model config, train config, optimizer
                          hyper-parameters, schedule, epoch and step within the epoch, the
                          bit-generator state of every dropout layer, class names, ...
    "__format__"          the format version
Arrays inside the JSON part are replaced by {"__array__": "<npz key>"} and put back on load.

The file is written with `serialization.atomic_savez` (temp file, fsync, rename): a crash during
a save leaves the previous checkpoint intact. The data loader needs no saved state: its order and
augmentation are functions of (seed, epoch, index), so (epoch, step within epoch) is its state.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .backend import get_array_module, to_numpy
from .models import OverFeat, OverFeatConfig
from .serialization import atomic_savez, describe_architecture, read_npz

FORMAT_VERSION = 1
_META_KEY, _FORMAT_KEY = "__checkpoint__", "__format__"


def _is_array(v) -> bool:
    return isinstance(v, np.ndarray) or type(v).__module__.startswith("cupy")


def _join(prefix: str, key) -> str:
    return f"{prefix}/{key}" if prefix else str(key)


def _split_arrays(obj, prefix: str, arrays: dict):
    """JSON-able copy of nested dicts/lists `obj`, its arrays moved into `arrays` (host copies)."""
    if _is_array(obj):
        arrays[prefix] = to_numpy(obj)
        return {"__array__": prefix}
    if isinstance(obj, dict):
        return {str(k): _split_arrays(v, _join(prefix, k), arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_arrays(v, _join(prefix, i), arrays) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _join_arrays(obj, z):
    """Inverse of `_split_arrays`: put the arrays of the npz `z` back in place."""
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return z[obj["__array__"]]
        return {k: _join_arrays(v, z) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_arrays(v, z) for v in obj]
    return obj


def rng_states(model: OverFeat) -> list:
    """Bit-generator states (plain dicts) of the model's dropout layers, in layer order."""
    return [layer.rng.bit_generator.state for layer in model.dropout_layers]


def set_rng_states(model: OverFeat, states: list):
    """Restore the dropout layers' bit generators from `rng_states` output."""
    layers = model.dropout_layers
    if len(states) != len(layers):
        raise ValueError(f"checkpoint has {len(states)} dropout RNG states, the model has {len(layers)} "
                         "dropout layers; the checkpoint is from another architecture")
    for layer, state in zip(layers, states):
        layer.rng.bit_generator.state = state


def save_checkpoint(path, model: OverFeat, optimizer=None, schedule=None, state: dict | None = None,
                    train_config: dict | None = None, classes=None):
    """Write a checkpoint of a run to `path` (.npz), atomically.

    optimizer / schedule: objects with `state_dict()` (optim.SGD, optim.StepSchedule) or None.
    state: loop position, e.g. {"epoch": 2, "batch": 17, "global_step": 117}. train_config: a
    JSON-able dict (`dataclasses.asdict(TrainConfig)`). classes: class names, index = label.
    """
    arrays = {f"param/{k}": to_numpy(v) for k, v in model.params.items()}
    meta = {
        "model_config": model.config.to_dict(),
        "rng": rng_states(model),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "schedule": None if schedule is None else schedule.state_dict(),
        "state": state or {},
        "train_config": train_config,
        "classes": None if classes is None else [str(c) for c in classes],
    }
    meta = _split_arrays(meta, "", arrays)
    arrays[_META_KEY] = np.array(json.dumps(meta))
    arrays[_FORMAT_KEY] = np.array(FORMAT_VERSION)
    atomic_savez(path, **arrays)


def load_checkpoint(path) -> dict:
    """Read a checkpoint into a dict: params {key: array}, model_config (OverFeatConfig), rng,
    optimizer, schedule, state, train_config, classes (the fields given to `save_checkpoint`)."""
    path = os.fspath(path)
    hint = "a checkpoint is written by `overfeat-np train` (latest.npz in its --out folder)"
    z = read_npz(path, "checkpoint", hint)
    if _META_KEY not in z:
        if "__config__" in z:
            raise ValueError(f"{path!r} is a weights file, not a checkpoint; pass it as --weights "
                             "(or load it with serialization.load_weights)")
        raise ValueError(f"{path!r} is not an overfeat-np checkpoint (no {_META_KEY}); {hint}")
    version = int(z[_FORMAT_KEY])
    meta = _join_arrays(json.loads(str(z[_META_KEY])), z)
    params = {k[len("param/"):]: v for k, v in z.items() if k.startswith("param/")}
    if version > FORMAT_VERSION:
        raise ValueError(f"{path!r} has checkpoint format {version}, newer than this overfeat-np reads "
                         f"({FORMAT_VERSION}); upgrade overfeat-np")
    meta["params"] = params
    meta["model_config"] = OverFeatConfig.from_dict(meta["model_config"])
    meta["path"] = path
    return meta


def restore_checkpoint(ckpt: dict, model: OverFeat, optimizer=None, schedule=None):
    """Copy a loaded checkpoint into `model` (in place, on its backend), `optimizer`, `schedule`.

    Raises ValueError naming both architectures when the checkpoint is from another model.
    """
    saved: OverFeatConfig = ckpt["model_config"]
    if saved.to_dict() != model.config.to_dict() or set(ckpt["params"]) != set(model.params):
        raise ValueError(
            f"checkpoint {ckpt.get('path', '')!r} is from another architecture: checkpoint "
            f"{describe_architecture(saved)}, model {describe_architecture(model.config)}; build the "
            "model from the checkpoint (model_from_checkpoint) or start a new run in another --out folder")
    for key, dst in model.params.items():
        src = ckpt["params"][key]
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(f"checkpoint parameter {key!r} has shape {src.shape}, model {dst.shape}")
        # In place, so an optimizer already holding these arrays keeps updating the model.
        dst[...] = get_array_module(dst).asarray(src, dtype=dst.dtype)
    set_rng_states(model, ckpt["rng"])
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if schedule is not None and ckpt.get("schedule") is not None:
        schedule.load_state_dict(ckpt["schedule"])
    return model


def model_from_checkpoint(ckpt, backend="numpy") -> OverFeat:
    """Build the checkpoint's own model (a path or a `load_checkpoint` dict) with its weights, on
    `backend`: "numpy", "cupy" or the array module itself (the CLI passes the one it resolved)."""
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    model = OverFeat(ckpt["model_config"], backend=backend)
    return restore_checkpoint(ckpt, model)
