"""The prompt the engine streams, checked against HF's own Qwen3-VL processor.

The processor's text side (per-group timestamp rule, `<t seconds><|vision_start|>` + pads +
`<|vision_end|>` expansion, odd frame counts padded, tokenisation) runs for real with the tiny byte
tokenizer. Its video side needs torchvision, which this package does not depend on, so the video
processor is replaced by one returning the package's own patchify output (checked against HF's
`patchify` in test_runtime_engine.py) and the processor's constructor type check is bypassed.

Layout rule (REFERENCE_SPEC §5.1): the video is the per-group expansion and nothing else, which is
what the transformers 4.57 processor (Qwen3-VL's release) made of the chat template's
`<|vision_start|><|video_pad|><|vision_end|>`: it replaced all three. transformers >= 5.12 replaces
only the `<|video_pad|>` and keeps the outer pair (vllm issue #46817 compares the two), so the
processor here is given a bare `<|video_pad|>`, for which both generations produce the same text.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BatchFeature, Qwen3VLProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from transformers.processing_utils import ProcessorMixin
from transformers.video_utils import VideoMetadata

from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.runtime.reference import build_sequence
from spatial_ttt_ros.runtime.tokens import patchify_pair


class _PatchifyVideoProcessor(Qwen3VLVideoProcessor):
    """HF's video processor settings (patch 16, temporal patch 2, merge 2) with our patchify."""

    def __call__(self, videos: list[np.ndarray], video_metadata: list[VideoMetadata] | None = None,
                 **_: object) -> BatchFeature:
        (video,) = videos
        if len(video) % 2:
            video = np.concatenate([video, video[-1:]])
        rows = [patchify_pair(video[i:i + 2]) for i in range(0, len(video), 2)]
        _, gh, gw = rows[0][1]
        return BatchFeature({"pixel_values_videos": torch.cat([r for r, _ in rows]),
                             "video_grid_thw": torch.tensor([[len(rows), gh, gw]]), "video_metadata": video_metadata})


@pytest.fixture(scope="module")
def engine() -> StreamingEngine:
    return StreamingEngine.from_preset("tiny", device="cpu")


@pytest.fixture
def processor(engine: StreamingEngine, monkeypatch: pytest.MonkeyPatch) -> Qwen3VLProcessor:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    monkeypatch.setattr(ProcessorMixin, "check_argument_for_proper_class", lambda *_: None)
    return Qwen3VLProcessor(image_processor=Qwen2VLImageProcessorPil(), tokenizer=engine.tokenizer,
                            video_processor=_PatchifyVideoProcessor())


@pytest.mark.parametrize("frames, fps", [(5, 5.0), (8, 2.0), (2, 30.0)])
def test_streamed_prompt_is_what_the_hf_processor_makes(engine, processor, frames, fps):
    cfg, layout = engine.config, engine.layout
    video = np.random.default_rng(frames).integers(0, 256, (frames, cfg.frame_height, cfg.frame_width, 3),
                                                   dtype=np.uint8)
    question = "How many chairs are in the room?"
    prompt = (f"<|im_start|>system\n{cfg.system_prompt}<|im_end|>\n<|im_start|>user\n<|video_pad|>"
              f"{question}<|im_end|>\n<|im_start|>assistant\n")
    meta = VideoMetadata(total_num_frames=frames, fps=fps, frames_indices=list(range(frames)))
    hf = processor(text=[prompt], videos=[video], video_metadata=[meta], return_tensors="pt")

    text_ids = engine.tokenizer.encode(question, add_special_tokens=False) + list(layout.suffix)
    ids, _, video_mask, grids, _, _ = build_sequence(engine, [[(f, i / fps) for i, f in enumerate(video)]], text_ids)
    assert engine.tokenizer.decode(ids) == engine.tokenizer.decode(hf["input_ids"][0])
    assert torch.equal(ids, hf["input_ids"][0])
    assert torch.equal(video_mask, hf["mm_token_type_ids"][0] == 2)
    assert grids == [tuple(hf["video_grid_thw"][0].tolist())]
    # one timestamp per frame group, as the mean time of its two frames (a lone last frame is paired
    # with itself)
    groups = (frames + 1) // 2
    assert engine.tokenizer.decode(ids).count("seconds>") == groups
    last = [min(2 * groups - 2, frames - 1), min(2 * groups - 1, frames - 1)]
    assert f"<{sum(last) / 2 / fps:.1f} seconds>" in engine.tokenizer.decode(ids)
