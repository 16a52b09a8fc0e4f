"""Plain PyTorch reference of the SP conv: the layer's depthwise ``nn.Conv3d`` modules (conv_q/k/v of runtime/ttt_layer.py).

cat of the neighbours, replicate padding in (h, w), ``F.conv3d`` with one group per channel, no bias.
The Triton version is checked against it. Inputs are assumed validated (``kernels.ops``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sp_conv(
    prev: torch.Tensor,  # [3, h*w, C] q', k', v' of the frame group before cur
    cur: torch.Tensor,  # [3, k, h*w, C]
    nxt: torch.Tensor,  # [3, h*w, C] the frame group after cur
    weight: torch.Tensor,  # [3, C, 27] taps of conv_q, conv_k, conv_v; tap = dt*9 + di*3 + dj
    hw: tuple[int, int],
) -> torch.Tensor:  # [3, k, h*w, C] contiguous, cur.dtype
    """The SP conv with the conv modules' weights given as ``weight`` (cast to cur's dtype,
    which the modules' weights already have: F.conv3d needs input and weight of one dtype)."""
    h, w = hw
    k = cur.shape[1]
    C = cur.shape[3]
    frames = torch.cat((prev[:, None], cur, nxt[:, None]), dim=1)  # [3, k+2, h*w, C]
    out = []
    for i in range(3):
        taps = weight[i].reshape(C, 1, 3, 3, 3).to(cur.dtype)
        vol = frames[i].reshape(k + 2, h, w, -1).permute(3, 0, 1, 2)[None]  # [1, C, k+2, h, w]
        vol = F.pad(vol, (1, 1, 1, 1, 0, 0), mode="replicate")
        y = F.conv3d(vol, taps, groups=vol.shape[1])  # [1, C, k, h, w]
        out.append(y[0].permute(1, 2, 3, 0).reshape(k, h * w, -1))
    return torch.stack(out)
