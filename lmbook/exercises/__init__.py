"""Checkers for the readers' own implementations, in the spirit of CS336's adapter tests.

Each ``check_*`` runs the reader's function (or class) on random inputs and edge cases (batch
size 1, non-square shapes, fully masked rows, float64, large values) and compares it with a
reference: lmbook's own implementation where there is one, else torch, transformers or peft.

Behaviour, the same for every checker: all cases pass -> one line is printed,
``✓ check_attention: 6 cases passed``, and the checker returns None; the first failing case
raises ``AssertionError`` whose message names the case and says what is wrong in plain words
(wrong shape, a mask that lets position 2 see position 3, the largest difference and where, and
which common mistake the result matches, e.g. attention without the 1/sqrt(d_k) scale). The
checkers seed torch themselves and restore the global RNG afterwards.

    from lmbook.exercises import check_attention
    def attention(q, k, v, mask=None): ...
    check_attention(attention)
"""
from lmbook.exercises.attention import check_attention, check_causal_mask, check_rms_norm, check_rope, check_softmax
from lmbook.exercises.language import (check_bigram_model, check_mlm_corruption, check_top_k_filter,
                                       check_top_p_filter)
from lmbook.exercises.memory import check_kv_cache_memory
from lmbook.exercises.tuning import check_dpo_loss, check_lora_layer, check_sft_loss

__all__ = ["check_softmax", "check_attention", "check_causal_mask", "check_rms_norm", "check_rope",
           "check_bigram_model", "check_mlm_corruption", "check_top_k_filter", "check_top_p_filter",
           "check_lora_layer", "check_sft_loss", "check_dpo_loss", "check_kv_cache_memory"]
