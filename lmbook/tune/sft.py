"""Supervised fine-tuning (instruction tuning) of a chat model.

The loss is next-token cross-entropy counted only on the answer's tokens: the prompt is context,
not something to learn to write. In a few lines of torch::

    logp = logits[:, :-1].log_softmax(-1)                       # (B, T-1, V) predicts token t+1
    tok_logp = logp.gather(-1, input_ids[:, 1:, None])[..., 0]  # (B, T-1)
    loss = -(tok_logp * mask[:, 1:]).sum() / mask[:, 1:].sum()  # mean over answer tokens

``train_sft`` runs the same thing the way most readers will at work: TRL's ``SFTTrainer`` (a
transformers ``Trainer``) on prompt/completion chats, with ``completion_only_loss=True`` and,
by default, a peft LoRA adapter. Checkpoints are safetensors files.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lmbook.tune.model import timed_train, trainer_precision

__all__ = ["sft_loss", "sft_config", "train_sft", "SFTResult"]


def sft_loss(logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the tokens where ``completion_mask`` is 1 (the answers), each
    predicted from the positions before it. logits (B, T, V); input_ids, completion_mask (B, T)."""
    if logits.dim() != 3 or logits.shape[:2] != input_ids.shape or input_ids.shape != completion_mask.shape:
        raise ValueError(f"shapes differ: logits {tuple(logits.shape)}, input_ids {tuple(input_ids.shape)}, "
                         f"completion_mask {tuple(completion_mask.shape)}: logits must be (B, T, V), the rest (B, T)")
    logp = logits[:, :-1].float().log_softmax(-1)                    # (B, T-1, V)
    tok_logp = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    mask = completion_mask[:, 1:].to(tok_logp.dtype)                 # (B, T-1)
    return -(tok_logp * mask).sum() / mask.sum().clamp(min=1)


def sft_config(output_dir: str, *, steps: int, batch_size: int, lr: float, seed: int = 0,
               warmup_ratio: float = 0.1, max_length: int = 256, save: bool = True, progress: bool = True,
               **overrides):
    """TRL's ``SFTConfig`` for a short run: loss on the completion only, a fixed step count, linear
    decay after warm-up, no dataset shuffling beyond the sampler's seed, no external loggers,
    and one safetensors checkpoint at the end (``save=False``: none)."""
    from trl import SFTConfig

    args = dict(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch_size,
                learning_rate=lr, lr_scheduler_type="linear", warmup_steps=max(1, round(warmup_ratio * steps)),
                weight_decay=0.0, seed=seed, data_seed=seed, completion_only_loss=True, max_length=max_length,
                logging_steps=max(1, steps // 8), save_strategy="steps" if save else "no", save_steps=steps,
                save_only_model=True, report_to="none", disable_tqdm=not progress, dataloader_num_workers=0,
                use_cpu=not torch.cuda.is_available(), **trainer_precision(),
                gradient_checkpointing=False)  # TRL turns it on to save memory; here time is short, not memory
    args.update(overrides)
    return SFTConfig(**args)


@dataclass
class SFTResult:
    trainer: object                      # the TRL SFTTrainer (its .model is the tuned model)
    seconds: float                       # wall-clock time of trainer.train()
    cpu_seconds: float                   # CPU time of this process during training
    steps: int
    trainable: int                       # trainable parameters
    total: int                           # all parameters
    losses: list[float] = field(default_factory=list)   # logged training losses
    peak_rss_gib: float | None = None    # the process's peak resident memory after training (Linux)

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(1, self.steps)


def _peak_rss_gib() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def train_sft(model, tok, examples, *, steps: int, batch_size: int, lr: float, lora=None,
              output_dir: str = "runs/sft", seed: int = 0, save: bool = True, progress: bool = True,
              **config) -> SFTResult:
    """Fine-tune ``model`` on ``examples`` (``ChatExample``s) with TRL's SFTTrainer. ``lora``: a
    peft ``LoraConfig`` (see ``lmbook.tune.lora.lora_config``), or None for full fine-tuning.
    The trained model is ``result.trainer.model`` (a ``PeftModel`` with ``lora``), in eval mode."""
    from trl import SFTTrainer

    from lmbook.tune.tasks import to_prompt_completion

    if not examples:
        raise ValueError("no training examples: pass a non-empty list of ChatExample")
    args = sft_config(output_dir, steps=steps, batch_size=batch_size, lr=lr, seed=seed, save=save,
                      progress=progress, **config)
    trainer = SFTTrainer(model=model, args=args, train_dataset=to_prompt_completion(examples),
                         processing_class=tok, peft_config=lora)
    trained = trainer.model
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trained.parameters())
    seconds, cpu, losses = timed_train(trainer)
    if trainer.is_world_process_zero():  # one line under torchrun, not one per process
        micro, accum, ranks = batch_size, args.gradient_accumulation_steps, args.world_size
        batch = f"{micro * accum * ranks}" + (f" ({' x '.join(str(n) for n in (micro, accum, ranks) if n > 1)})"
                                              if accum * ranks > 1 else "")
        print(f"SFT: {steps} steps of {batch} in {seconds:.0f} s ({cpu:.0f} s of CPU time), "
          f"{trainable:,} of {total:,} parameters trained, loss {losses[0]:.3f} -> {losses[-1]:.3f}"
          if losses else f"SFT: {steps} steps in {seconds:.0f} s")
    return SFTResult(trainer, seconds, cpu, steps, trainable, total, losses, _peak_rss_gib())
