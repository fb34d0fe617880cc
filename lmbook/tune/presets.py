"""Tuning presets: how much SFT and DPO training a machine gets, keyed by the training preset's
name (``lmbook.train.presets.get_preset().name``: "cpu", "t4", "large").

    cpu    SmolLM2-135M-Instruct (packaged), LoRA r=8 on q_proj/v_proj, a few dozen steps: each
           chapter's training stays within about 4 minutes on one thread
    t4     the same model, longer runs and all attention and MLP projections
    large  SmolLM2-360M-Instruct from the hub (named, so loaded from the hub), longer runs
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

__all__ = ["TunePreset", "TUNE_PRESETS", "get_tune_preset"]


@dataclass(frozen=True)
class TunePreset:
    name: str
    source: str | None          # None: the packaged SmolLM2-135M-Instruct; else a hub name
    # the instruction-tuning task (lmbook.tune.tasks.spam_task)
    n_train: int                # training examples (half spam, half ham)
    n_eval: int                 # held-out examples per class
    max_message_tokens: int     # longer messages are cut to this many tokens
    # SFT (LoRA)
    sft_steps: int
    sft_batch_size: int
    sft_lr: float
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    lora_dropout: float = 0.0
    full_ft_lr: float = 2e-5    # full fine-tuning: every weight trains, so a far smaller step
    # DPO (LoRA)
    dpo_pairs: int = 64
    dpo_steps: int = 16
    dpo_batch_size: int = 4
    dpo_lr: float = 5e-4
    dpo_beta: float = 0.1
    dpo_eval_prompts: int = 40
    warmup_ratio: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> "TunePreset":
        """A copy with some fields changed, e.g. ``get_tune_preset("cpu").replace(sft_steps=5)``."""
        return replace(self, **changes)


TUNE_PRESETS: dict[str, TunePreset] = {
    "cpu": TunePreset(name="cpu", source=None, n_train=256, n_eval=100, max_message_tokens=48,
                      sft_steps=32, sft_batch_size=8, sft_lr=1e-3),
    "t4": TunePreset(name="t4", source=None, n_train=800, n_eval=100, max_message_tokens=96,
                     sft_steps=200, sft_batch_size=16, sft_lr=5e-4, lora_r=16, lora_alpha=32,
                     lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                   "down_proj"),
                     dpo_pairs=256, dpo_steps=64, dpo_batch_size=8, dpo_eval_prompts=100),
    "large": TunePreset(name="large", source="HuggingFaceTB/SmolLM2-360M-Instruct", n_train=800,
                        n_eval=100, max_message_tokens=128, sft_steps=200, sft_batch_size=32,
                        sft_lr=3e-4, lora_r=16, lora_alpha=32,
                        lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                      "up_proj", "down_proj"),
                        dpo_pairs=256, dpo_steps=64, dpo_batch_size=16, dpo_eval_prompts=100),
}


def get_tune_preset(name: str | TunePreset | None = None) -> TunePreset:
    """The tuning preset called ``name``, else the one named like the training preset
    (``$LMBOOK_PRESET`` or the hardware's, see ``lmbook.train.get_preset``). With
    ``$LMBOOK_PACKAGED=1`` its model is the packaged one (``source=None``), as for every loader."""
    from lmbook.train.presets import get_preset, packaged_only

    if isinstance(name, TunePreset):
        preset = name
    else:
        name = (name or get_preset().name).strip().lower()
        if name not in TUNE_PRESETS:
            raise ValueError(f"unknown tuning preset {name!r}: use one of {', '.join(TUNE_PRESETS)}")
        preset = TUNE_PRESETS[name]
    return preset.replace(source=None) if packaged_only() and preset.source is not None else preset
