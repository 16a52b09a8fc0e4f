"""What a user watches and keeps from a run (rank 0 only): a tqdm bar with loss, lr and tokens/s,
`metrics.jsonl` (one JSON row per logged step, appended across resumes), TensorBoard scalars
under `tb/` when `tensorboard` is installed, and `loss.png` (matplotlib, when importable; else a
one-line note that the curve is in metrics.jsonl)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tqdm import tqdm

METRICS = "metrics.jsonl"


class Progress:
    def __init__(self, run_dir: Path, *, enabled: bool, total_steps: int, start_step: int,
                 bar: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True,
                        file=sys.stderr, disable=not (enabled and bar))
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.note("tensorboard not installed: metrics go to metrics.jsonl only")
            else:
                self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step)

    def note(self, text: str) -> None:
        if self.enabled:
            tqdm.write(f"[train] {text}", file=sys.stderr)

    def step(self, row: dict, *, log: bool) -> None:
        """Advance the bar by one optimiser step; write the row when `log`."""
        if not self.enabled:
            return
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", tok_s=f"{row['tokens_per_s']:.0f}")
        if log:
            with open(self.run_dir / METRICS, "a") as f:
                f.write(json.dumps(row) + "\n")
            if self.tb is not None:
                for key, value in row.items():
                    if key != "step" and isinstance(value, int | float):
                        self.tb.add_scalar(f"train/{key}", value, row["step"])

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.close()
        if self.tb is not None:
            self.tb.close()
        png = plot_loss(self.run_dir)
        self.note(f"loss curve: {png}" if png else "matplotlib not installed: no loss.png "
                  f"(the curve is in {self.run_dir / METRICS})")


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    # a resumed run re-logs steps after the checkpoint it restarted from: keep the newest row per step
    by_step = {r["step"]: r for r in rows}
    return [by_step[s] for s in sorted(by_step)]


def plot_loss(run_dir: Path) -> Path | None:
    """loss.png of the run (loss and lr against step); None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = read_metrics(run_dir)
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["loss"] for r in rows], label="loss (token CE)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["lr"] for r in rows], color="tab:orange", alpha=0.6, label="lr")
    ax2.set_ylabel("base lr")
    ax.set_title(Path(run_dir).name)
    fig.legend(loc="upper right")
    fig.tight_layout()
    out = Path(run_dir) / "loss.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
