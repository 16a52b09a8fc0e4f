"""The training loop end to end on the tiny preset (CPU, fp32): overfitting, resume, export into
the streaming engine, and real `torchrun --nproc-per-node 2` (gloo) DDP and FSDP2 runs equal to
one process with gradient accumulation over the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.train.checkpoint import export

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import RandomSource, final_params, run, tiny_recipe  # noqa: E402

pytestmark = pytest.mark.unit
QUESTION = "How many are in this room: lamp?"


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_tiny_preset_overfits_a_handful_of_samples(tmp_path):
    # 4 samples whose answer digit depends on the question: 2 label tokens each (digit + <|im_end|>).
    # Learning only <|im_end|> and the answer prior leaves ln(4)/2 = 0.69; telling only pairs
    # apart ln(2)/2 = 0.35; below 0.3 the model tells the samples apart.
    # LR 5e-3 for 80 steps: at 1e-2 / 50 steps the run sat at the edge of stability (a loss spike
    # near step 40 in some runs), so a change of summation order alone decided pass or fail.
    recipe = tiny_recipe(80, lr=5e-3, batch_size=4)
    from spatial_ttt_ros.train import loop

    result = loop.train(recipe, tmp_path, progress_bar=False,
                        source_factory=lambda c, t, lay: RandomSource(c, t, lay, distinct=4))
    losses = list(result.losses.values())
    assert losses[0] > 5.0
    assert min(losses[-5:]) < 0.3, losses
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 81))
    assert {"loss", "lr", "tokens_per_s", "grad_norm", "window"} <= set(rows[0])


def test_resume_continues_exactly(tmp_path):
    recipe = tiny_recipe(5, lr=3e-3, warmup=0.2, grad_accum=2)
    whole = run(recipe, tmp_path / "whole", "single")
    first = run(recipe, tmp_path / "split", "single", max_steps=2)
    assert first.step == 2 and first.stopped == "max_steps"
    second = run(recipe, tmp_path / "split", "single")
    assert second.step == 5 and sorted(second.losses) == [3, 4, 5]
    for step in (3, 4, 5):
        assert second.losses[step] == pytest.approx(whole.losses[step], rel=1e-6, abs=1e-7), step
    a, b = final_params(tmp_path / "whole"), final_params(tmp_path / "split")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-6, atol=1e-7, msg=name)
    state = json.loads((tmp_path / "split" / "latest.json").read_text())
    assert state["step"] == 5


def test_loader_workers_build_the_same_samples_ahead_and_resume(tmp_path):
    """Samples built in forked worker processes train exactly as those built in the loop, also
    across a resume (the workers start at the resumed step)."""
    recipe = tiny_recipe(4, lr=3e-3, batch_size=2)
    plain = run(recipe, tmp_path / "plain", "single")
    ahead = tiny_recipe(4, lr=3e-3, batch_size=2, loader_workers=2)
    run(ahead, tmp_path / "ahead", "single", max_steps=2)
    second = run(ahead, tmp_path / "ahead", "single")
    assert sorted(second.losses) == [3, 4]
    for step in (3, 4):
        assert second.losses[step] == pytest.approx(plain.losses[step], rel=1e-6, abs=1e-7), step


@pytest.mark.parametrize("workers", [0, 2])
def test_the_loop_makes_positions_ahead_and_trains_the_same(tmp_path, monkeypatch, workers):
    """The loop's loader gives every sample its mRoPE positions (forward.rope_positions, in the
    workers when there are any), so the step's forward never makes them (its fallback is broken
    here), and the training is the one whose forward makes them itself."""
    from spatial_ttt_ros.train import forward

    recipe = tiny_recipe(2, lr=3e-3, batch_size=2, loader_workers=workers)
    own = forward._final_hidden

    def forward_without_positions(model, config, samples, *args):  # noqa: ANN001, ANN202
        bare = [replace(s, position_ids=None) for s in samples]
        return own(model, config, bare, *args)

    monkeypatch.setattr(forward, "_final_hidden", forward_without_positions)
    itself = run(recipe, tmp_path / "itself", "single")
    monkeypatch.setattr(forward, "_final_hidden", own)

    def no_fallback(*_: object) -> None:
        raise AssertionError("the forward made positions the loader should have made")

    monkeypatch.setattr(forward, "rope_positions", no_fallback)
    ahead = run(recipe, tmp_path / "ahead", "single")
    assert sorted(ahead.losses) == [1, 2]
    for step in (1, 2):
        assert ahead.losses[step] == itself.losses[step], step


def test_per_sample_loss_norm_is_the_same_under_accumulation(tmp_path):
    """loss_norm samples: batch 2 in one pass and 2 x accumulation of batch 1 train the same; the
    logged loss is the mean of the samples' token means, not the token mean."""
    whole = run(tiny_recipe(2, lr=1e-2, batch_size=2, loss_norm="samples"), tmp_path / "whole", "single",
                long_answers=True)
    split = run(tiny_recipe(2, lr=1e-2, grad_accum=2, loss_norm="samples"), tmp_path / "split", "single",
                long_answers=True)
    tokens = run(tiny_recipe(2, lr=1e-2, batch_size=2), tmp_path / "tokens", "single", long_answers=True)
    assert split.losses == pytest.approx(whole.losses, rel=1e-5, abs=1e-6)
    assert whole.losses[2] != pytest.approx(tokens.losses[2], rel=1e-4)
    rows = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("whole", "split")}
    for got, want in zip(rows["split"], rows["whole"]):  # the same gradients
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-4), got["step"]


def test_layer_checkpointing_gives_the_same_training(tmp_path):
    plain = run(tiny_recipe(2, lr=1e-2), tmp_path / "plain", "single")
    recomputed = run(tiny_recipe(2, lr=1e-2, checkpoint_layers=True, checkpoint_chunks=True), tmp_path / "ckpt", "single")
    assert recomputed.losses == pytest.approx(plain.losses, rel=1e-6)
    layers = recomputed.model.model.language_model.layers
    assert all(layer.gradient_checkpointing for layer in layers)


def _engine_logits(engine: StreamingEngine) -> torch.Tensor:
    rng = np.random.default_rng(7)
    for i in range(6):
        engine.push_frame(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), 0.5 * i)
    return engine.ask(QUESTION, max_new_tokens=3, return_logits=True).logits


@pytest.mark.parametrize("dtype,tol", [("preset", 0.0), ("float16", 2e-2)])
def test_export_loads_into_the_engine_with_the_same_logits(tmp_path, dtype, tol):
    result = run(tiny_recipe(2, lr=1e-2), tmp_path / "run", "single")
    path = export(tmp_path / "run", tmp_path / "out", dtype=dtype)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        stored = {f.get_tensor(k).dtype for k in f.keys()} - {torch.int64}
    assert stored == {torch.float16 if dtype == "float16" else torch.float32}
    assert meta["preset"] == "tiny" and meta["use_muon"] == "false" and meta["prenorm"] == "false"
    assert (meta["chunk_size"], meta["window_size"], meta["frame_height"], meta["step"]) == ("24", "40", "64", "2")
    loaded = StreamingEngine.from_preset(str(tmp_path / "out" / "tiny.yaml"), checkpoint=str(tmp_path / "out"),
                                         device="cpu")
    trained = StreamingEngine(loaded.config, result.model, loaded.tokenizer)
    fresh = StreamingEngine.from_preset("tiny", device="cpu")
    want, got = _engine_logits(trained), _engine_logits(loaded)
    torch.testing.assert_close(got, want, rtol=0.0 if not tol else tol, atol=tol)
    assert (want - _engine_logits(fresh)).abs().max() > 1e-3  # training changed the model
    # the exported YAML names the weights beside it: the preset alone loads them too
    alone = StreamingEngine.from_preset(str(tmp_path / "out" / "tiny.yaml"), device="cpu")
    torch.testing.assert_close(_engine_logits(alone), got, rtol=0, atol=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_ddp_and_fsdp2_equal_one_process_with_accumulation(tmp_path):
    # Same global batch (2 samples per step): 1 process x grad_accum 2 vs 2 ranks x grad_accum 1.
    single = run(tiny_recipe(3, grad_accum=2), tmp_path / "single", "single")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           str(Path(__file__).parent / "train_helpers.py"), str(tmp_path), "ddp", "fsdp2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    want = final_params(tmp_path / "single")
    want_rows = {r["step"]: r for r in map(json.loads, (tmp_path / "single" / "metrics.jsonl").read_text().splitlines())}
    for strategy in ("ddp", "fsdp2"):
        losses = json.loads((tmp_path / f"{strategy}.json").read_text())["losses"]
        for step, loss in single.losses.items():
            assert losses[str(step)] == pytest.approx(loss, rel=1e-5), (strategy, step)
        # Adam hides a uniform gradient scale from the parameters; the logged (pre-clip) norms do not
        rows = {r["step"]: r for r in map(json.loads, (tmp_path / strategy / "metrics.jsonl").read_text().splitlines())}
        for step, row in want_rows.items():
            assert rows[step]["grad_norm"] == pytest.approx(row["grad_norm"], rel=1e-4), (strategy, step)
            assert (rows[step]["tokens"], rows[step]["label_tokens"]) == (row["tokens"], row["label_tokens"])
        got = final_params(tmp_path / strategy)
        assert set(got) == set(want)
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=f"{strategy} {name}")
        assert json.loads((tmp_path / strategy / "run.json").read_text())["world"] == 2
    assert json.loads((tmp_path / "fsdp2.json").read_text())["fsdp_layer_units"] is True


def test_dry_run_prints_sample_counts_and_token_budget():
    from spatial_ttt_ros.train.dryrun import dry_run

    text = dry_run(tiny_recipe(6, batch_size=2, grad_accum=3), world=2, probe=3,
                   source_factory=lambda c, t, lay: RandomSource(c, t, lay, distinct=50))
    assert "6 optimiser steps, global batch 12 = 2 process(es) x batch 2 x accumulation 3" in text
    assert "samples: 72 in all (1.44 passes over 50 items)" in text
    assert "token budget:" in text and "label tokens" in text


def test_cli_errors_name_the_field(tmp_path, capsys):
    from spatial_ttt_ros.train.cli import cli_train

    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\ndata: {stages: [{name: qa, steps: 3, mix: {qa: 1.0}}]}\ntrain: {batch_size: -2}\n")
    assert cli_train(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "train.batch_size must be >= 1, got -2" in capsys.readouterr().err
    assert cli_train(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not a training run directory" in capsys.readouterr().err


def test_cli_run_dry_run_and_export_on_real_shards(tmp_path, capsys):
    # A synthetic episode rendered straight into a shard (demo_data, as `synth` + `annotate` + `bake`),
    # sampled by the real dataset and curriculum: two QA stages, the first with an annealed window
    # (QA only: the byte tokenizer makes a description thousands of label tokens).
    from spatial_ttt_ros.runtime.config import load_config
    from spatial_ttt_ros.train.cli import cli_train
    from spatial_ttt_ros.train.demo_data import synth_episode
    from spatial_ttt_ros.train.shards import write_episode

    rgb, stamps, poses, info = synth_episode(3, load_config("tiny", weights=""), frames=40, stride=5, tour="oneway",
                                             window=8)
    write_episode(tmp_path / "shards" / info["episode"], rgb, stamps, poses, info)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""preset: tiny
data:
  shards: ["{tmp_path}/shards/*"]
  max_frames: 8
  stages:
    - {{name: anneal, steps: 2, mix: {{qa: 1.0}}, window: {{start: 400}}}}
    - {{name: qa, steps: 1, mix: {{qa: 1.0}}}}
optim: {{lr: 1.0e-3, ttt_lr: 1.0e-2, warmup: 0.3}}
train: {{batch_size: 2, precision: fp32, checkpoint_chunks: false, save_every: 2, log_every: 1}}
""")
    assert cli_train(["run", str(recipe), "--out", str(tmp_path / "run"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "3 optimiser steps, global batch 2" in text and "samples: 6 in all" in text and "token budget" in text
    assert cli_train(["run", str(recipe), "--out", str(tmp_path / "run"), "--no-bar"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["stage"]) for r in rows] == [(1, "anneal"), (2, "anneal"), (3, "qa")]
    # annealed from 400 down to C = 24, then the preset's window W = 40
    assert [r["window"] for r in rows] == [400, 24, 40]
    assert rows[0]["lr"] == 0.0 and rows[1]["lr"] == pytest.approx(1e-3)
    assert all(r["label_tokens"] > 0 and r["tokens"] > r["label_tokens"] for r in rows)
    assert cli_train(["export", str(tmp_path / "run"), "--out", str(tmp_path / "release")]) == 0
    assert (tmp_path / "release" / "model.safetensors").is_file() and (tmp_path / "release" / "tiny.yaml").is_file()
