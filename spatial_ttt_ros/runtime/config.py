"""Every model and runtime switch of Spatial-TTT in one frozen dataclass, with named presets.

Presets live in ``models/<name>.yaml`` (installed to ``share/spatial_ttt_ros/models``):
``spatial_ttt_2b`` reproduces the released evaluation (REFERENCE_SPEC §6.1, §10.1: no Muon,
post-norm, fp32 fast-weight maths, C = W = 2648, SP conv on), ``spatial_ttt_2b_train`` the
trained semantics (Muon + pre-norm), ``tiny`` a small random Qwen3-VL for tests and the demo.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

RELEASED_TTT_LAYERS = (0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18, 20, 21, 22, 24, 25, 26)
DECODE_MODES = ("auto", "graph", "static", "off")  # decode_graph values (runtime/decode_graph.py)
DECODE_UPDATE_RULES = ("block", "official")  # decode_update_rule values (runtime/streaming.py)
MANY_ROOMS_SENTENCE = (
    " There maybe many rooms in the video, sum the counts from all rooms/scenes to produce the final total."
)


@dataclass(frozen=True)
class SpatialTTTConfig:
    name: str = "custom"
    # Backbone: "qwen3_vl" loads a local Qwen3-VL directory (base_model); "tiny" builds a small
    # random Qwen3-VL from tiny_text / tiny_vision (seeded), with a byte-level tokenizer.
    backbone: str = "qwen3_vl"
    base_model: str = ""
    tiny_text: dict = field(default_factory=dict)
    tiny_vision: dict = field(default_factory=dict)
    seed: int = 0
    # Trained weights of the preset itself (a model.safetensors), relative to the preset file's
    # directory; loaded by StreamingEngine.from_preset when no checkpoint is given. "" = none.
    weights: str = ""
    dtype: str = "bfloat16"               # model weights/activations; fast-weight state is fp32
    # TTT layer map and fast-weight network (REFERENCE_SPEC §1.2, §2)
    ttt_layers: tuple[int, ...] = RELEASED_TTT_LAYERS
    num_fw_heads: int = 4
    inter_multi: float = 1.0
    window_size: int = 2648               # sliding-window attention keys, incl. the query itself
    chunk_size: int = 2648                # fast-weight update block (tokens)
    base_lr: float = 0.001                # softplus offset: a zero lr_proj gives exactly this rate
    use_momentum: bool = True
    use_muon: bool = False
    # Muon's Newton-Schulz precision: "bf16" as the official code (REFERENCE_SPEC §3.4), or "fp32"
    # (five steep iterations amplify bf16 rounding to ~1e-2 of the update). Rounding only, like
    # kernel_backend: not part of state_signature (a saved memory continues under either).
    muon_precision: str = "bf16"
    prenorm: bool = False
    use_conv: bool = True                 # SP depthwise 3-D conv on video-token q/k/v
    qkv_silu: bool = True
    no_v_silu: bool = False
    kernel_backend: str = "auto"          # auto | torch | triton
    # Fast-weight activations: "fp32" = the reference inference numerics (q/k/v and all fast-weight
    # matmuls in fp32); "bf16" = bf16 activations and GEMM inputs with the fp32 state (the fast
    # Triton route on GPUs; REFERENCE_SPEC §3.6 describes both).
    fw_precision: str = "fp32"
    # Video layout (REFERENCE_SPEC §5.1, §6.6)
    frame_height: int = 352
    frame_width: int = 480
    system_prompt: str = "You are a helpful assistant."
    # Frame groups (pairs) fed to the decoder together. 1 = every pair enters memory as it completes;
    # k > 1 amortises per-layer overhead over k pairs (bulk ingest on GPUs) with identical results:
    # pairs still waiting are fed by ask()/flush() on their way.
    ingest_batch_groups: int = 1
    append_many_rooms: bool = True        # the evaluation's appended sentence (spec §6.6, §10.2)
    max_new_tokens: int = 16
    # Answer tokens after the first: "graph" = one CUDA graph replay per token, "static" = the same
    # static-buffer step uncaptured (any device; for tests), "off" = layer by layer from Python,
    # "auto" (default) = graph on CUDA, off elsewhere (runtime/decode_graph.py): a CPU engine decodes
    # eagerly as before (benchmarks/bench_decode.py measures the graph against eager on a GPU).
    decode_graph: str = "auto"
    # Anchor-KV budget (runtime/anchor_budget.py): tokens each anchor layer keeps at most, the chat
    # prefix plus the most recent whole frame groups; older groups are evicted from the middle.
    # 0 = unbounded (the anchor KV grows with the stream).
    anchor_kv_budget_tokens: int = 0
    # Ablation and reference switches (the demo model's memory evaluation, train/evaluate.py):
    # ttt_updates False = fast weights stay at their trained initial values (apply only, no chunk
    # update ever happens); anchor_window_only True = anchor layers attend over the last
    # window_size tokens only, like the SWA branch (window-only memory). Both run the eager decode
    # (decode_graph is ignored).
    ttt_updates: bool = True
    anchor_window_only: bool = False
    # The pose channel (runtime/tokens.py group_text): each frame group's timestamp line also
    # carries the camera pose in the map frame, "<12.5 seconds x=1.2 y=-0.4 yaw=90>", the pose of
    # the group's second frame. Every frame then needs a pose. Off for the released presets (their
    # layout is the official one); on for a pose-aware model trained with it.
    pose_text: bool = False
    # Fast-weight updates while answering: "block" = answer tokens join the pending chunk (an
    # update only when it reaches C tokens; engine.py); "official" = the reference implementation
    # (REFERENCE_SPEC §6.4, §10.3): a block ending exactly at the prompt's end is not updated in
    # the prefill, and the first decode step updates with the last C prompt tokens (again, where
    # the prefill consumed some), after its own output. Eager decode only.
    decode_update_rule: str = "block"

    def __post_init__(self) -> None:
        if self.backbone not in ("qwen3_vl", "tiny"):
            raise ValueError(f"backbone must be 'qwen3_vl' or 'tiny', got {self.backbone!r}")
        if self.dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"dtype must be bfloat16, float16 or float32, got {self.dtype!r}")
        if self.kernel_backend not in ("auto", "torch", "triton"):
            raise ValueError(f"kernel_backend must be auto, torch or triton, got {self.kernel_backend!r}")
        if self.decode_graph not in DECODE_MODES:
            raise ValueError(f"decode_graph must be one of {DECODE_MODES}, got {self.decode_graph!r}")
        if self.decode_update_rule not in DECODE_UPDATE_RULES:
            raise ValueError(f"decode_update_rule must be one of {DECODE_UPDATE_RULES}, got {self.decode_update_rule!r}")
        if self.fw_precision not in ("fp32", "bf16"):
            raise ValueError(f"fw_precision must be fp32 or bf16, got {self.fw_precision!r}")
        if self.muon_precision not in ("fp32", "bf16"):
            raise ValueError(f"muon_precision must be fp32 or bf16, got {self.muon_precision!r}")
        for name in ("ingest_batch_groups", "window_size", "chunk_size", "num_fw_heads", "frame_height", "frame_width", "max_new_tokens"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if isinstance(self.anchor_kv_budget_tokens, bool) or not isinstance(self.anchor_kv_budget_tokens, int) \
                or self.anchor_kv_budget_tokens < 0:
            raise ValueError(f"anchor_kv_budget_tokens must be a non-negative integer (0 = unbounded), "
                             f"got {self.anchor_kv_budget_tokens!r}")
        if not isinstance(self.pose_text, bool):
            raise ValueError(f"pose_text must be true or false, got {self.pose_text!r}")
        if self.frame_height % 32 or self.frame_width % 32:
            raise ValueError(f"frame size must be a multiple of 32 (patch 16 x merge 2), "
                             f"got {self.frame_height}x{self.frame_width}")
        if len(set(self.ttt_layers)) != len(self.ttt_layers) or any(i < 0 for i in self.ttt_layers):
            raise ValueError(f"ttt_layers must be distinct non-negative indices, got {self.ttt_layers!r}")
        object.__setattr__(self, "ttt_layers", tuple(int(i) for i in self.ttt_layers))

    def replace(self, **changes: Any) -> SpatialTTTConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ttt_layers"] = list(self.ttt_layers)
        return out

    def state_signature(self) -> dict[str, Any]:
        """The fields a saved memory state depends on (a state is only valid for these)."""
        keys = ("backbone", "base_model", "tiny_text", "tiny_vision", "seed", "ttt_layers", "num_fw_heads",
                "inter_multi", "window_size", "chunk_size", "use_momentum", "use_muon", "prenorm", "use_conv",
                "fw_precision", "frame_height", "frame_width", "system_prompt", "ttt_updates", "anchor_window_only",
                "decode_update_rule", "pose_text")
        return json.loads(json.dumps({k: self.to_dict()[k] for k in keys}))


def presets_dir() -> Path:
    """models/ in a source checkout, else share/spatial_ttt_ros/models of the install prefix."""
    candidates = []
    if os.environ.get("SPATIAL_TTT_MODELS"):
        candidates.append(Path(os.environ["SPATIAL_TTT_MODELS"]))
    candidates.append(Path(__file__).resolve().parents[2] / "models")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "spatial_ttt_ros" / "models")
    candidates.append(Path(sys.prefix) / "share" / "spatial_ttt_ros" / "models")
    for path in candidates:
        if path.is_dir() and any(path.glob("*.yaml")):
            return path
    raise FileNotFoundError(f"no model presets found (looked in {[str(c) for c in candidates]})")


def available_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def load_config(preset: str | os.PathLike = "tiny", **overrides: Any) -> SpatialTTTConfig:
    """A config from a preset name (models/<name>.yaml) or a YAML path, with field overrides."""
    path = Path(preset)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = presets_dir() / f"{preset}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown model preset {str(preset)!r}; available: {available_presets()}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"preset {str(path)!r} must be a mapping of config fields")
    data.update(overrides)
    known = {f.name for f in dataclasses.fields(SpatialTTTConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown config fields {unknown} in {str(path)!r}; known: {sorted(known)}")
    if "ttt_layers" in data:
        data["ttt_layers"] = tuple(data["ttt_layers"])
    weights = data.get("weights") or ""
    if weights and not Path(weights).is_absolute():
        data["weights"] = str((path.parent / weights).resolve())
    return SpatialTTTConfig(**data)
