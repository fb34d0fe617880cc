"""Checkers for fine-tuning (chapters 4 and 8): a LoRA layer, the SFT loss masked to the answer,
and the DPO loss. References: peft's LoRA ``Linear``, transformers' ``ForCausalLMLoss``, and the
DPO formula of Rafailov et al. (2023), eq. 7, written out here (lmbook has no tuning module yet;
trl computes it inside ``DPOTrainer``)."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.exercises._report import call, checker, expect_close, expect_tensor, run_cases

__all__ = ["check_lora_layer", "check_sft_loss", "check_dpo_loss"]


def _peft_lora(base: nn.Linear, r: int, alpha: float):
    """peft's LoRA around a copy of ``base`` -> (layer, A weight, B weight)."""
    from peft import LoraConfig, get_peft_model

    holder = nn.Module()
    holder.layer = copy.deepcopy(base)
    model = get_peft_model(holder, LoraConfig(r=r, lora_alpha=alpha, target_modules=["layer"], lora_dropout=0.0))
    layer = model.base_model.model.layer
    return layer, layer.lora_A["default"].weight, layer.lora_B["default"].weight


@checker
def check_lora_layer(cls) -> None:
    """``cls(base, r, alpha)`` wraps a pretrained ``nn.Linear`` (d_in -> d_out): the base weights are
    frozen; attributes ``lora_A`` (nn.Linear d_in -> r, no bias) and ``lora_B`` (nn.Linear r -> d_out,
    no bias, zero at the start); ``forward(x) = base(x) + (alpha / r) * lora_B(lora_A(x))``
    (Hu et al. 2021). Reference: peft's LoRA layer with the same A and B."""
    def case(d_in, d_out, r, alpha, x_shape, bias=True):
        def run():
            base = nn.Linear(d_in, d_out, bias=bias)
            layer = call(cls, copy.deepcopy(base), r, alpha)
            for name, shape in (("lora_A", (r, d_in)), ("lora_B", (d_out, r))):
                w = getattr(getattr(layer, name, None), "weight", None)
                if w is None or tuple(w.shape) != shape:
                    got = None if w is None else tuple(w.shape)
                    raise AssertionError(f"{name} should be an nn.Linear with weight of shape {shape}, got {got}")
            trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
            if trainable != r * (d_in + d_out):
                raise AssertionError(f"{trainable} trainable parameters, expected r (d_in + d_out) = "
                                     f"{r * (d_in + d_out)}: freeze the base layer, and no bias in A or B")
            x = torch.randn(*x_shape, d_in)
            expect_close(call(layer, x), base(x), what="outputs at initialisation (LoRA must start as the "
                         "pretrained layer: initialise lora_B to zeros)")
            ref, A, B = _peft_lora(base, r, alpha)
            with torch.no_grad():
                A.normal_(), B.normal_()
                layer.lora_A.weight.copy_(A), layer.lora_B.weight.copy_(B)
            got = expect_tensor(call(layer, x), (*x_shape, d_out))
            delta = x @ A.T @ B.T  # B A x, unscaled
            expect_close(got, ref(x), what="outputs", mistakes={
                f"base(x) + B A x without the alpha/r = {alpha / r:g} scale": lambda: base(x) + delta,
                "base(x) + alpha * B A x (scale by alpha / r, not alpha)": lambda: base(x) + alpha * delta,
                "base(x) + (r / alpha) B A x (the scale is alpha / r)": lambda: base(x) + r / alpha * delta})
        return run
    return run_cases("check_lora_layer", [
        ("d_in=16, d_out=12, r=4, alpha=8, x (2, 5, 16)", case(16, 12, 4, 8, (2, 5))),
        ("r=1, alpha=1, batch size 1", case(8, 8, 1, 1, (1,))),
        ("base without bias, r=2, alpha=16", case(10, 6, 2, 16, (3,), bias=False))])


@checker
def check_sft_loss(fn) -> None:
    """``fn(logits, input_ids, answer_mask)`` -> scalar: the mean next-token cross-entropy over the
    answer tokens only. logits (B, T, V) at position t predict input_ids[:, t + 1]; answer_mask
    (B, T) is True on answer tokens (False on prompt and padding). Reference: transformers'
    ``ForCausalLMLoss`` with labels -100 outside the answer (averaged over all answer tokens)."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    def case(B, T, V, answer_starts, lengths, dtype=torch.float32):
        def run():
            logits, ids = torch.randn(B, T, V, dtype=dtype), torch.randint(V, (B, T))
            pos = torch.arange(T)
            answer = (pos >= torch.tensor(answer_starts)[:, None]) & (pos < torch.tensor(lengths)[:, None])
            got = expect_tensor(call(fn, logits, ids, answer), ())
            labels = ids.masked_fill(~answer, -100)
            ref = ForCausalLMLoss(logits.float(), labels, V).to(dtype)
            flat = lambda lg, y: F.cross_entropy(lg.reshape(-1, V), y.reshape(-1), ignore_index=-100)  # noqa: E731
            per_seq = torch.stack([flat(logits[b, :-1], labels[b, 1:]) for b in range(B)]).mean()
            expect_close(got, ref, what="loss", mistakes={
                "the loss over every token (the prompt is not masked)": lambda: flat(logits[:, :-1], ids[:, 1:]),
                "the loss without the shift (logits at t scored against token t)": lambda: flat(logits, labels),
                "the mean of per-sequence means (average over all answer tokens at once)": per_seq})
        return run
    return run_cases("check_sft_loss", [
        ("B=2, answers of different lengths", case(2, 10, 7, [4, 6], [10, 8])),
        ("batch size 1, padding after the answer", case(1, 12, 5, [3], [9])),
        ("B=3, float64", case(3, 6, 11, [2, 3, 1], [6, 6, 4], torch.float64))])


@checker
def check_dpo_loss(fn) -> None:
    """``fn(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)``
    -> scalar: mean over the batch of -log sigmoid(beta ((pc - rc) - (pr - rr))), each argument a
    (B,) tensor of summed log-probabilities of a whole response (Rafailov et al. 2023, eq. 7)."""
    def case(B, beta, scale=1.0, dtype=torch.float32):
        def run():
            pc, pr, rc, rr = (torch.randn(B, dtype=dtype) * scale - 20 for _ in range(4))
            got = expect_tensor(call(fn, pc, pr, rc, rr, beta), ())
            dpo = lambda margin: -F.logsigmoid(margin).mean()  # noqa: E731
            m = (pc - rc) - (pr - rr)
            expect_close(got, dpo(beta * m), what="loss", mistakes={
                "the loss with chosen and rejected swapped (the sign is flipped)": dpo(-beta * m),
                "the loss without beta": dpo(m),
                "the loss without the reference model": dpo(beta * (pc - pr)),
                "the sum over the batch instead of the mean": -F.logsigmoid(beta * m).sum()})
        return run
    return run_cases("check_dpo_loss", [
        ("B=8, beta=0.1", case(8, 0.1)), ("batch size 1, beta=0.5", case(1, 0.5)),
        ("large margins (log sigmoid must not underflow)", case(6, 1.0, scale=300.0)),
        ("float64", case(5, 0.2, dtype=torch.float64))])
