"""What a training run recorded: losses, learning rates, tokens seen, wall time."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class History:
    """One entry per optimizer step in ``steps``, ``train_loss``, ``lr``, ``tokens``, ``examples``
    and ``time``; ``val`` holds ``(step, loss)`` pairs from the periodic evaluations.

    ``train_loss`` is the step's loss (mean over its micro-batches and, under DDP, over ranks);
    ``tokens``/``examples`` are cumulative over all ranks; ``time`` is wall seconds since the
    start of training (a resumed run continues the clock of the checkpoint). On a GPU ``fit``
    reads the losses every 10 steps (each read waits for the GPU), and steps read together share
    one time.
    """
    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    examples: list[int] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    val: list[tuple[int, float]] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # device, precision, batch sizes... set by fit()

    # ---- summaries
    @property
    def final_train_loss(self) -> float | None:
        """Mean train loss over the last 10% of steps (at least 1, at most 50): a smoothed end value."""
        if not self.train_loss:
            return None
        k = max(1, min(50, len(self.train_loss) // 10))
        return sum(self.train_loss[-k:]) / k

    @property
    def best_val(self) -> float | None:
        """Lowest validation loss seen (NaN entries ignored), or None without evaluations."""
        return min((loss for _, loss in self.val if not math.isnan(loss)), default=None)

    @property
    def final_val(self) -> float | None:
        return self.val[-1][1] if self.val else None

    @property
    def wall_time(self) -> float:
        return self.time[-1] if self.time else 0.0

    @property
    def tokens_per_second(self) -> float | None:
        if not self.time or self.time[-1] <= 0:
            return None
        return self.tokens[-1] / self.time[-1]

    def __repr__(self) -> str:
        parts = [f"steps={len(self.steps)}"]
        if self.train_loss:
            parts.append(f"final_train_loss={self.final_train_loss:.4f}")
        if self.best_val is not None:
            parts.append(f"best_val={self.best_val:.4f}")
        return f"History({', '.join(parts)})"

    # ---- (de)serialisation
    def to_dict(self) -> dict:
        d = asdict(self)
        d["val"] = [[int(s), float(v)] for s, v in self.val]
        d["summary"] = {"final_train_loss": self.final_train_loss, "best_val": self.best_val,
                        "wall_time": self.wall_time}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        keys = ("steps", "train_loss", "lr", "tokens", "examples", "time")
        h = cls(**{k: list(d.get(k, [])) for k in keys}, info=dict(d.get("info", {})))
        h.val = [(int(s), float(v)) for s, v in d.get("val", [])]
        return h

    def to_json(self, path: str | Path | None = None, indent: int | None = None) -> str:
        """The history as JSON text; also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=True)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "History":
        p = Path(text_or_path)
        text = p.read_text() if not str(text_or_path).lstrip().startswith("{") else str(text_or_path)
        return cls.from_dict(json.loads(text))

    # ---- plotting
    def plot(self, ax=None, logy: bool = False, smooth: int | None = None, title: str | None = None):
        """Train and validation loss against the optimizer step; returns the matplotlib axes.

        ``smooth``: also draw a running mean of the train loss over this many steps
        (default: about 1/50 of the run when it has more than 100 steps).
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        if self.train_loss:
            raw_alpha = 1.0
            if smooth is None:
                smooth = max(1, len(self.train_loss) // 50) if len(self.train_loss) > 100 else 1
            if smooth > 1:
                raw_alpha = 0.3
            ax.plot(self.steps, self.train_loss, color="C0", alpha=raw_alpha, lw=1,
                    label="train" if smooth <= 1 else "train (per step)")
            if smooth > 1:
                xs, ys = _running_mean(self.steps, self.train_loss, smooth)
                ax.plot(xs, ys, color="C0", lw=1.5, label=f"train (mean of {smooth} steps)")
        if self.val:
            s, v = zip(*self.val)
            ax.plot(s, v, "o-", color="C1", ms=3, lw=1.5, label="validation")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss (cross-entropy, nats)")
        ax.set_title(title or "Training and validation loss")
        ax.grid(alpha=0.3)
        if self.train_loss or self.val:
            ax.legend()
        return ax


def _running_mean(xs, ys, k):
    out_x, out_y, acc = [], [], 0.0
    finite = [y if math.isfinite(y) else float("nan") for y in ys]
    for i, y in enumerate(finite):
        acc += y
        if i >= k:
            acc -= finite[i - k]
        if i >= k - 1:
            out_x.append(xs[i])
            out_y.append(acc / k)
    return out_x, out_y
