"""The fair peer: stock HF Qwen3-VL streamed into its own KV cache, questions answered from the cache.

What a user without Spatial-TTT would run for a live camera: the unmodified
`Qwen3VLForConditionalGeneration` (full attention in every layer), frames pushed in passes of
`pairs_per_pass` frame pairs (one forward each, appending to a `DynamicCache`), a question prefilled
on top of the cache and answered greedily, then the cache cropped back to the video so the next
question (or more frames) continues from the video alone. The token layout is the engine's (chat
prefix, per frame pair a timestamp, vision start, the visual tokens, vision end; runtime/tokens.py),
and the rope positions of a pass are HF's own `get_rope_index` over that pass, shifted to where the
stream stands (mRoPE positions of a segment only depend on where it starts), so the cache holds what
one forward over the whole video would.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import DynamicCache

from spatial_ttt_ros.runtime.tokens import ChatLayout, patchify_pairs, resize_frame, timestamp_text


class KVCachePeer:
    """Stock Qwen3-VL with a growing KV cache: push_frame / ask (see the module docstring)."""

    def __init__(self, model: nn.Module, tokenizer: object, layout: ChatLayout, frame_hw: tuple[int, int],
                 pairs_per_pass: int = 32) -> None:
        if pairs_per_pass < 1:
            raise ValueError(f"pairs_per_pass must be >= 1, got {pairs_per_pass!r}")
        self.model, self.tokenizer, self.layout = model, tokenizer, layout
        self.frame_hw, self.pairs_per_pass = frame_hw, pairs_per_pass
        self.device = next(model.parameters()).device
        self.cache = DynamicCache(config=model.config.text_config)
        self.ids: list[int] = []          # every token in the cache, in order
        self.next_position = 0            # rope position of the next token
        self.pending: list[tuple[np.ndarray, float]] = []
        self.first_stamp: float | None = None
        self.frames = 0

    # ------------------------------------------------------------ the video
    def push_frame(self, image: np.ndarray, stamp_s: float) -> None:
        """One HxWx3 uint8 frame; a pass runs whenever `pairs_per_pass` pairs are waiting."""
        if self.first_stamp is None:
            self.first_stamp = float(stamp_s)
        self.pending.append((resize_frame(image, *self.frame_hw), float(stamp_s)))
        self.frames += 1
        if len(self.pending) >= 2 * self.pairs_per_pass:
            self.flush()

    @torch.no_grad()
    def flush(self) -> None:
        """Feed the waiting frames (a lone last frame paired with itself, as the processor pads)."""
        frames, self.pending = self.pending, []
        if not frames:
            return
        if len(frames) % 2:
            frames.append(frames[-1])
        ids = [] if self.ids else list(self.layout.prefix)
        # the pixels converted on the device, as our engine does (a fair comparison of the models)
        pixels, grid = patchify_pairs(torch.from_numpy(np.stack([f for f, _ in frames])).to(self.device))
        for g in range(0, len(frames), 2):
            t_rel = ((frames[g][1] - self.first_stamp) + (frames[g + 1][1] - self.first_stamp)) / 2
            ids += self.tokenizer.encode(timestamp_text(t_rel), add_special_tokens=False) + [self.layout.vision_start]
            ids += [self.layout.video_pad] * (grid[1] * grid[2] // 4) + [self.layout.vision_end]
        input_ids = torch.tensor([ids], device=self.device)
        token_type = (input_ids == self.layout.video_pad).int() * 2
        video_grid = torch.tensor([list(grid)], device=self.device)
        positions, _ = self.model.model.get_rope_index(input_ids, token_type, video_grid_thw=video_grid)
        positions = positions + self.next_position
        visual = self.model.model.visual
        self.model(input_ids=input_ids, pixel_values_videos=pixels.to(visual.dtype),
                   video_grid_thw=video_grid, mm_token_type_ids=token_type, position_ids=positions,
                   past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.ids += ids
        self.next_position = int(positions.max()) + 1

    # ------------------------------------------------------------ questions
    def _text(self, ids: list[int]) -> torch.Tensor:
        """Feed text tokens on top of the cache; logits [vocab] fp32 of the last one."""
        n = len(ids)
        positions = torch.arange(self.next_position, self.next_position + n, device=self.device).view(1, 1, n)
        out = self.model(input_ids=torch.tensor([ids], device=self.device), position_ids=positions.expand(3, 1, n),
                         past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.ids += ids
        self.next_position += n
        return out.logits[0, -1].float()

    @torch.no_grad()
    def ask(self, question_ids: list[int], max_new_tokens: int) -> tuple[list[int], torch.Tensor]:
        """Greedy answer to `question_ids` (user text after the video; the chat suffix is added):
        (token ids, logits [tokens, vocab]). The cache is cropped back to the video afterwards."""
        self.flush()
        if not self.ids:
            raise ValueError("no frames in the cache yet: push frames before asking")
        video_len, video_position = len(self.ids), self.next_position
        logits = [self._text(list(question_ids) + list(self.layout.suffix))]
        tokens = [int(logits[-1].argmax())]
        while tokens[-1] != self.layout.eos and len(tokens) < max_new_tokens:
            logits.append(self._text([tokens[-1]]))
            tokens.append(int(logits[-1].argmax()))
        # a negative crop removes that many tokens (transformers 5.17 and 5.23 alike)
        self.cache.crop(-(len(self.ids) - video_len))
        del self.ids[video_len:]
        self.next_position = video_position
        return tokens, torch.stack(logits)
