"""lmbook.generate: filtering, sampling, greedy decoding."""
from __future__ import annotations

import pytest
import torch

from lmbook.generate import generate, greedy_decode, top_k_filter, top_p_filter
from lmbook.models import GPT, GPTConfig


class FixedLM(torch.nn.Module):
    """A causal LM stand-in whose next-token distribution is always ``probs``."""

    def __init__(self, probs, block_size=None):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(probs).log())
        self.config = type("Config", (), {"block_size": block_size})()
        self.seen_lengths = []

    def forward(self, input_ids):
        self.seen_lengths.append(input_ids.shape[1])
        B, T = input_ids.shape
        return type("Out", (), {"logits": self.logits.expand(B, T, -1)})()


def tiny_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=16))


# --------------------------------------------------------------------------------------------
# filters
def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = top_k_filter(logits, 2)
    assert torch.equal(torch.isfinite(out), torch.tensor([[False, True, False, True, False]]))
    assert torch.equal(out[torch.isfinite(out)], torch.tensor([5.0, 4.0]))
    assert torch.equal(top_k_filter(logits, 10), logits)


def test_top_p_keeps_the_smallest_set_with_enough_mass():
    probs = torch.tensor([0.1, 0.4, 0.2, 0.3])  # sorted: 0.4, 0.3, 0.2, 0.1
    logits = probs.log()[None]
    kept = lambda p: torch.isfinite(top_p_filter(logits, p))[0].tolist()  # noqa: E731
    assert kept(0.3) == [False, True, False, False]   # 0.4 >= 0.3 already
    assert kept(0.4) == [False, True, False, False]   # exactly enough
    assert kept(0.5) == [False, True, False, True]    # 0.4 + 0.3 = 0.7 >= 0.5
    assert kept(0.75) == [False, True, True, True]    # 0.4 + 0.3 + 0.2 = 0.9
    assert kept(0.95) == [True, True, True, True]
    assert kept(1.0) == [True, True, True, True]
    assert kept(1e-6) == [False, True, False, False]  # the most probable token always stays
    # the kept tokens' renormalised probabilities are the original ones rescaled
    renorm = top_p_filter(logits, 0.5).softmax(-1)[0]
    torch.testing.assert_close(renorm, torch.tensor([0.0, 0.4 / 0.7, 0.0, 0.3 / 0.7]))


def test_filters_reject_bad_arguments():
    logits = torch.zeros(1, 4)
    for p in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
            top_p_filter(logits, p)
    for k in (0, -1, 1.5):
        with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
            top_k_filter(logits, k)


# --------------------------------------------------------------------------------------------
# generate
def test_generate_shape_reproducibility_and_training_mode_restored():
    model = tiny_gpt().train()
    start = torch.tensor([[1, 2, 3], [4, 5, 6]])
    a = generate(model, start, 10, seed=123, top_k=10)
    b = generate(model, start, 10, seed=123, top_k=10)
    c = generate(model, start, 10, seed=124, top_k=10)
    assert a.shape == (2, 13) and a.dtype == torch.long
    assert torch.equal(a[:, :3], start)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training
    assert torch.is_grad_enabled()  # grad mode untouched outside generate
    model(a[:, -9:-1], labels=a[:, -8:]).loss.backward()  # generated ids can feed a training step


def test_generate_seed_does_not_touch_the_global_rng():
    model = tiny_gpt()
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    generate(model, torch.tensor([[1]]), 5, seed=0)
    assert torch.equal(torch.rand(1), expected)


def test_greedy_is_argmax_and_crops_to_block_size():
    model = tiny_gpt().eval()
    start = torch.tensor([[7, 8, 9]])
    out = generate(model, start, 12, greedy=True)  # 15 tokens > block_size=8: context is cropped
    assert out.shape == (1, 15)
    ids = start
    for _ in range(12):
        nxt = model(ids[:, -8:]).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
    assert torch.equal(out, ids)
    fixed = FixedLM([0.1, 0.2, 0.7], block_size=4)
    generate(fixed, torch.tensor([[0, 1]]), 6, seed=0)
    assert fixed.seen_lengths == [2, 3, 4, 4, 4, 4]


def test_sampling_follows_the_distribution_and_filters():
    fixed = FixedLM([0.1, 0.2, 0.3, 0.4])
    start = torch.zeros(2000, 1, dtype=torch.long)
    freq = lambda out: torch.bincount(out[:, 1], minlength=4).float() / out.shape[0]  # noqa: E731
    plain = freq(generate(fixed, start, 1, seed=0))
    torch.testing.assert_close(plain, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.04, rtol=0)
    assert set(generate(fixed, start, 1, seed=0, top_k=2)[:, 1].tolist()) == {2, 3}
    assert set(generate(fixed, start, 1, seed=0, top_p=0.6)[:, 1].tolist()) == {2, 3}
    cold = freq(generate(fixed, start, 1, seed=0, temperature=0.25))  # p^4, renormalised
    sharp = torch.tensor([0.1, 0.2, 0.3, 0.4]) ** 4
    torch.testing.assert_close(cold, sharp / sharp.sum(), atol=0.04, rtol=0)
    assert generate(fixed, start[:3], 4, greedy=True)[:, 1:].eq(3).all()


def test_generate_stops_at_eos_and_pads_finished_rows():
    fixed = FixedLM([0.05, 0.9, 0.05])  # token 1 is eos and very likely
    out = generate(fixed, torch.zeros(3, 2, dtype=torch.long), 50, seed=0, eos_id=1)
    assert out.shape[1] < 52
    for row in out[:, 2:]:
        first = int((row == 1).nonzero()[0])
        assert row[first:].eq(1).all()


def test_generate_works_with_transformers_gpt2():
    transformers = pytest.importorskip("transformers")
    from lmbook.models import to_hf

    model = tiny_gpt().eval()
    hf = to_hf(model)
    start = torch.tensor([[1, 2], [3, 4]])
    assert torch.equal(generate(hf, start, 9, greedy=True), generate(model, start, 9, greedy=True))
    assert torch.equal(generate(hf, start, 9, seed=3, top_p=0.9), generate(model, start, 9, seed=3, top_p=0.9))
    assert isinstance(hf, transformers.GPT2LMHeadModel)


def test_generate_argument_errors():
    model = tiny_gpt()
    x = torch.tensor([[1, 2]])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        generate(model, x, 3, temperature=0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        generate(model, x, 3, top_p=0)
    with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
        generate(model, x, 3, top_k=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, x, -1)
    with pytest.raises(ValueError, match=r"ids\[None\]"):
        generate(model, torch.tensor([1, 2]), 3)
    with pytest.raises(TypeError, match=r"got a list; e.g. torch.tensor\(\[tokenizer.encode"):
        generate(model, [[1, 2]], 3)
    with pytest.raises(ValueError, match="empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(TypeError, match="encode"):
        greedy_decode(model, x, 5, bos_id=1, eos_id=2)

