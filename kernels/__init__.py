"""Fast-weight maths for Spatial-TTT (installed as ``spatial_ttt_ros.kernels``); see README.md.

Every op takes ``backend="auto" | "torch" | "triton"``: "auto" is Triton on CUDA when it is
importable and the PyTorch reference elsewhere.
"""

from .backend import select_backend, triton_available
from .fast_weight import FastWeightState, fw_update, init_fast_weight_state, row_norms, row_renorm
from .ops import (
    fast_qkv_prep,
    fw_apply,
    fw_grad,
    lr_momentum,
    newton_schulz5,
    rms_norm,
    sp_conv,
    ttt_gate_output,
)

__all__ = [
    "FastWeightState",
    "fast_qkv_prep",
    "fw_apply",
    "fw_grad",
    "fw_update",
    "init_fast_weight_state",
    "lr_momentum",
    "newton_schulz5",
    "rms_norm",
    "row_norms",
    "row_renorm",
    "select_backend",
    "sp_conv",
    "triton_available",
    "ttt_gate_output",
]
