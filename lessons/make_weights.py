"""Write the trained small classifier that lessons 05 and 07 start from (no training in them).

    python lessons/make_weights.py        # about a minute on one CPU core

The run is lesson 07's former first cell: the small OverFeat (Section 3's recipe) on 1,600
synthetic 72x72 shape images for 4 epochs, seed 0, one BLAS thread (so the file is the same on
any machine with the same BLAS kernel). Output: overfeat_np/data/small_shapes.npz, shipped as
package data and read with `overfeat_np.data.small_shapes_classifier()`.
"""

import pathlib

from overfeat_np.data import SyntheticShapes
from overfeat_np.serialization import save_weights
from overfeat_np.train import TrainConfig, train

OUT = pathlib.Path(__file__).resolve().parent.parent / "overfeat_np" / "data" / "small_shapes.npz"

if __name__ == "__main__":
    data = SyntheticShapes(1600, image_size=72, seed=0, cache=True, num_classes=6)
    val = SyntheticShapes(300, image_size=72, seed=1000, cache=True, num_classes=6)
    history = train(TrainConfig(model="small", epochs=4, batch_size=32, lr=0.05, milestones=(100,), out_dir=None,
                                progress=False, blas_threads=1), data, val)
    save_weights(history.model, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB): validation top-1 {history.final['val_top1']:.3f}")
