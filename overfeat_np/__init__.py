"""overfeat-np: OverFeat (Sermanet et al., ICLR 2014) from scratch in NumPy/CuPy."""

from .backend import get_array_module, get_backend, to_device, to_numpy
from .blas import apply_policy
from .layers import Conv2D, Dropout, Flatten, Linear, MaxPool2D, ReLU, Sequential

__version__ = "0.1.0"

apply_policy()  # one BLAS thread per process unless asked otherwise (see overfeat_np.blas)

__all__ = [
    "Conv2D", "Dropout", "Flatten", "Linear", "MaxPool2D", "ReLU", "Sequential",
    "get_array_module", "get_backend", "to_device", "to_numpy",
]
