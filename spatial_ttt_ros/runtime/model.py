"""Build the wrapped HF Qwen3-VL model and load Spatial-TTT checkpoints (safetensors only).

The backbone is the real `transformers` `Qwen3VLForConditionalGeneration`; `wrap_ttt_layers`
swaps `self_attn` of the configured decoder layers for `TTTAttention` (which keeps the original
as `attn_layer`). Checkpoints use the released layout: the full state dict of the wrapped model
in one `model.safetensors` (REFERENCE_SPEC §8). Loading verifies keys instead of `strict=False`:
a missing TTT parameter of any TTT layer is an error listing the names.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

from .config import SpatialTTTConfig
from .tokens import SPECIAL_TOKENS
from .ttt_layer import TTTAttention
from .vision_attention import use_packed_vision_attention

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def torch_dtype(name: str) -> torch.dtype:
    return _DTYPES[name]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
    return dev


def tiny_qwen3_vl_config(config: SpatialTTTConfig) -> Qwen3VLConfig:
    text = dict(config.tiny_text)
    rope = {"rope_type": "default", "rope_theta": float(text.pop("rope_theta", 5e6)),
            "mrope_section": list(text.pop("mrope_section", [2, 3, 3])), "mrope_interleaved": True}
    vision = {"patch_size": 16, "temporal_patch_size": 2, "spatial_merge_size": 2,
              "out_hidden_size": text["hidden_size"], **config.tiny_vision}
    # The special-token ids of the byte tokenizer (build_byte_tokenizer), so that the HF config and
    # the tokenizer agree on which ids are visual (the training forward finds the video by its id).
    special = {tok: 256 + i for i, tok in enumerate(SPECIAL_TOKENS)}
    return Qwen3VLConfig(text_config={**text, "rope_parameters": rope}, vision_config=vision,
                         image_token_id=special["<|image_pad|>"], video_token_id=special["<|video_pad|>"],
                         vision_start_token_id=special["<|vision_start|>"],
                         vision_end_token_id=special["<|vision_end|>"])


def wrap_ttt_layers(model: Qwen3VLForConditionalGeneration, config: SpatialTTTConfig) -> None:
    layers = model.model.language_model.layers
    bad = [i for i in config.ttt_layers if i >= len(layers)]
    if bad:
        raise ValueError(f"ttt_layers {bad} out of range for a {len(layers)}-layer model")
    text_config = model.config.text_config
    param = next(model.parameters())
    for i in config.ttt_layers:
        if isinstance(layers[i].self_attn, TTTAttention):
            continue
        layers[i].self_attn = TTTAttention(layers[i].self_attn, config, text_config).to(param.device, param.dtype)


def _randomize_ttt_for_tests(model: nn.Module, seed: int) -> None:
    """Tiny backbone only: give every TTT parameter a non-trivial random value (seeded), so that the
    gate, conv taps, rates and momentum all influence the output and tests can see mistakes."""
    gen = torch.Generator().manual_seed(seed + 1)
    for name, p in model.named_parameters():
        if ".self_attn." not in name or ".attn_layer." in name:
            continue
        with torch.no_grad():
            noise = torch.randn(p.shape, generator=gen).to(p.device, p.dtype)
            if name.endswith(("conv_q.weight", "conv_k.weight", "conv_v.weight")):
                p.copy_(noise * 0.2 + torch.nn.init.dirac_(torch.empty_like(p)))
            elif "lr_proj.bias" in name:
                p.fill_(5.0)  # rates around 5: updates visibly change the weights
            elif not name.endswith(("w0", "w1", "w2")):
                p.add_(noise * 0.3)


def build_model(config: SpatialTTTConfig, device: torch.device) -> tuple[nn.Module, object]:
    """The wrapped model (eval mode) and its tokenizer, from local files only."""
    dtype = torch_dtype(config.dtype)
    if config.backbone == "tiny":
        from .tokens import build_byte_tokenizer

        torch.manual_seed(config.seed)
        hf_config = tiny_qwen3_vl_config(config)
        hf_config._attn_implementation = "sdpa"
        with torch.device(device):  # large random models (benchmarks) initialise on the GPU
            model = Qwen3VLForConditionalGeneration(hf_config)
        wrap_ttt_layers(model, config)
        _randomize_ttt_for_tests(model, config.seed)
        tokenizer = build_byte_tokenizer(hf_config.text_config.vocab_size)
    else:
        from transformers import AutoTokenizer

        base = Path(config.base_model) if config.base_model else None
        if base is None or not (base / "config.json").is_file():
            raise FileNotFoundError(
                f"base_model must be a local Qwen3-VL-2B-Instruct directory with config.json, got {config.base_model!r}")
        model = Qwen3VLForConditionalGeneration.from_pretrained(
            base, dtype=dtype, attn_implementation="sdpa", local_files_only=True, use_safetensors=True)
        wrap_ttt_layers(model, config)
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    use_packed_vision_attention(model)
    return model, tokenizer


def ttt_parameter_names(model: nn.Module) -> list[str]:
    """State-dict names of every parameter TTT layers add (not the shared attn_layer weights)."""
    return [n for n, _ in model.named_parameters() if ".self_attn." in n and ".attn_layer." not in n
            and isinstance(model.get_submodule(n.rsplit(".self_attn.", 1)[0] + ".self_attn"), TTTAttention)]


def checkpoint_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {str(path)!r} (expected a model.safetensors file or its directory)")
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoints load only from safetensors, got {str(path)!r}")
    return path


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, allow_unexpected: bool = False) -> dict[str, int]:
    """Load a released-layout checkpoint into the wrapped model.

    Every TTT parameter of every TTT layer must be present (ValueError listing the missing names);
    backbone tensors may be absent (they come from the base model). Unexpected keys are an error
    unless `allow_unexpected`. Returns counts of loaded / backbone-kept / unexpected tensors.
    """
    file = checkpoint_file(path)
    try:
        tensors = load_file(str(file), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ValueError(f"cannot read checkpoint {str(file)!r}: {exc}") from exc
    own = model.state_dict()
    missing_ttt = sorted(set(ttt_parameter_names(model)) - set(tensors))
    if missing_ttt:
        shown = ", ".join(missing_ttt[:20]) + (f", ... ({len(missing_ttt)} in all)" if len(missing_ttt) > 20 else "")
        raise ValueError(f"checkpoint {str(file)!r} lacks TTT parameters: {shown}")
    unexpected = sorted(set(tensors) - set(own))
    if unexpected and not allow_unexpected:
        raise ValueError(f"checkpoint {str(file)!r} has unexpected keys: {', '.join(unexpected[:20])}")
    for name, tensor in tensors.items():
        if name in own and tuple(own[name].shape) != tuple(tensor.shape):
            raise ValueError(f"checkpoint tensor {name} has shape {tuple(tensor.shape)}, "
                             f"the model expects {tuple(own[name].shape)}")
    model.load_state_dict({k: v for k, v in tensors.items() if k in own}, strict=False)
    return {"loaded": len(set(tensors) & set(own)), "kept_from_base": len(set(own) - set(tensors)),
            "unexpected": len(unexpected)}


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, metadata: dict[str, str] | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write the wrapped model's state dict in the released layout (one model.safetensors).
    `dtype` stores floating tensors in that dtype (load_checkpoint casts back to the model's);
    `metadata` (str -> str) joins {"format": "pt"} in the file header."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path.mkdir(parents=True, exist_ok=True)
        path = path / "model.safetensors"
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    # Tied embeddings share storage; safetensors refuses shared tensors, so store copies.
    seen: set[int] = set()
    for k, v in state.items():
        if v.data_ptr() in seen:
            state[k] = v.clone()
        seen.add(state[k].data_ptr())
    save_file(state, str(path), metadata={**(metadata or {}), "format": "pt"})
    return path
