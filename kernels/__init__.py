"""Fast-weight maths for Spatial-TTT (installed as ``spatial_ttt_ros.kernels``); see README.md.

Every op takes ``backend="auto" | "torch" | "triton"``: "auto" is Triton on CUDA when it is
importable and the PyTorch reference elsewhere.
"""

from .backend import select_backend, triton_available
from .fast_weight import FastWeightState, fw_update, init_fast_weight_state, row_norms, row_renorm
from .ops import fw_apply, fw_grad, newton_schulz5

__all__ = [
    "FastWeightState",
    "fw_apply",
    "fw_grad",
    "fw_update",
    "init_fast_weight_state",
    "newton_schulz5",
    "row_norms",
    "row_renorm",
    "select_backend",
    "triton_available",
]
