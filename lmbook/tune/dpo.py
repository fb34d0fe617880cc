"""Direct preference optimisation (DPO, Rafailov et al. 2023).

For a prompt x with a preferred reply y_c and a dispreferred one y_r, with π the model being tuned
and π_ref the frozen model it started from (log-probabilities summed over the reply's tokens)::

    loss = -log σ( β · [ (log π(y_c|x) - log π_ref(y_c|x)) - (log π(y_r|x) - log π_ref(y_r|x)) ] )

β · (log π - log π_ref) is the "implicit reward" of a reply; the loss pushes the chosen reply's
reward above the rejected one's, while the reference term keeps π near π_ref. ``train_dpo`` runs
TRL's ``DPOTrainer`` with a peft LoRA adapter (the reference is the model with the adapter off).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lmbook.tune.model import timed_train, trainer_precision

__all__ = ["dpo_loss", "sequence_logprobs", "implicit_rewards", "to_preference_dataset", "train_dpo",
           "DPOResult"]


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """Mean DPO loss of a batch; each argument is (B,) summed reply log-probabilities."""
    margin = (chosen - ref_chosen) - (rejected - ref_rejected)   # (B,)
    return -F.logsigmoid(beta * margin).mean()


def sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      completion_mask: torch.Tensor) -> torch.Tensor:
    """(B,): log p(reply | prompt) of each row, summed over the tokens where completion_mask is 1."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits   # (B, T, V)
    logp = logits[:, :-1].float().log_softmax(-1)                               # (B, T-1, V)
    tok = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)                   # (B, T-1)
    return (tok * completion_mask[:, 1:]).sum(-1)


@torch.no_grad()
def implicit_rewards(model, reference, tok, pairs, beta: float = 0.1, batch_size: int = 8):
    """(chosen, rejected): β · (log π - log π_ref) of each pair's two replies, as (N,) tensors.
    ``reference``: the frozen starting model (for a peft model, pass the same model and the adapter
    is switched off for the reference pass)."""
    from lmbook.llm_eval import prompt_ids
    from lmbook.tune.evaluate import _pad

    rows, masks = [], []
    for p in pairs:
        prompt = prompt_ids(tok, p.prompt)
        for reply in (p.chosen, p.rejected):
            ids = tok(reply + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
            rows.append(prompt + ids)
            masks.append([0] * len(prompt) + [1] * len(ids))
    out, dev = [], next(model.parameters()).device
    for s in range(0, len(rows), batch_size):
        ids, att = _pad(rows[s:s + batch_size], tok.pad_token_id)
        cm, _ = _pad(masks[s:s + batch_size], 0)
        ids, att, cm = ids.to(dev), att.to(dev), cm.to(dev)
        pol = sequence_logprobs(model, ids, att, cm)
        if reference is model and hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                ref = sequence_logprobs(model, ids, att, cm)
        else:
            ref = sequence_logprobs(reference, ids, att, cm)
        out.append(beta * (pol - ref).cpu())
    r = torch.cat(out).view(-1, 2)
    return r[:, 0], r[:, 1]


def to_preference_dataset(pairs):
    """A ``datasets.Dataset`` with TRL's conversational prompt/chosen/rejected columns."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
                               "rejected": [{"role": "assistant", "content": p.rejected}]} for p in pairs])


@dataclass
class DPOResult:
    trainer: object
    seconds: float
    cpu_seconds: float
    steps: int
    losses: list[float] = field(default_factory=list)


def train_dpo(model, tok, pairs, *, steps: int, batch_size: int, lr: float, beta: float = 0.1, lora=None,
              ref_model=None, output_dir: str = "runs/dpo", seed: int = 0, save: bool = True,
              progress: bool = True, **config) -> DPOResult:
    """Tune ``model`` on ``PreferencePair``s with TRL's DPOTrainer. With ``lora`` (a peft
    LoraConfig) the reference is the same model with the adapter off; without, pass
    ``ref_model`` or TRL copies the model."""
    from trl import DPOConfig, DPOTrainer

    if not pairs:
        raise ValueError("no preference pairs: pass a non-empty list of PreferencePair")
    args = DPOConfig(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch_size,
                     learning_rate=lr, beta=beta, lr_scheduler_type="linear",
                     warmup_steps=max(1, steps // 10), seed=seed, data_seed=seed,
                     logging_steps=max(1, steps // 8), save_strategy="steps" if save else "no",
                     save_steps=steps, save_only_model=True, report_to="none", disable_tqdm=not progress,
                     use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, max_length=256,
                     gradient_checkpointing=False,  # TRL turns it on to save memory; here time is short
                     **{**trainer_precision(), **config})
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=to_preference_dataset(pairs),
                         processing_class=tok, peft_config=lora)
    seconds, cpu, losses = timed_train(trainer)
    if trainer.is_world_process_zero():  # one line under torchrun, not one per process
        print(f"DPO: {steps} steps of {batch_size} pairs in {seconds:.0f} s ({cpu:.0f} s of CPU time), "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else f"DPO: {steps} steps in {seconds:.0f} s")
    return DPOResult(trainer, seconds, cpu, steps, losses)
