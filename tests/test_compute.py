"""lmbook.compute: FLOPs, tokens, time and memory of a training run, and their input errors."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lmbook import compute
from lmbook.models import GPT, GPTConfig, set_fast_attention


def test_six_nd_matches_the_reported_compute_of_gpt3():
    # GPT-3: 175B parameters, 300B tokens, 3.14e23 FLOPs in Table D.1 (Brown et al. 2020)
    assert compute.training_flops(175e9, 300e9) == pytest.approx(3.14e23, rel=0.01)


def test_six_nd_is_six_times_the_multiply_adds_of_one_training_step():
    # FLOPs of the matmuls with weights, counted by torch for one forward + backward pass, equal
    # 6 x (parameters used in matmuls) x tokens; attention adds its own matmuls on top
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
    model = GPT(cfg)
    set_fast_attention(model, False)  # the spelled-out attention is made of countable matmuls
    x = torch.randint(0, cfg.vocab_size, (3, 8))
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(x, labels=x).loss.backward()
    counts = {str(k).split(".")[-1]: v for k, v in counter.get_flop_counts()["Global"].items()}
    in_matmuls = compute.transformer_params(cfg.n_layer, cfg.n_embd) + cfg.vocab_size * cfg.n_embd
    assert counts["mm"] + counts["addmm"] == compute.training_flops(in_matmuls, x.numel())
    assert counts["bmm"] == 12 * cfg.n_layer * 8 * cfg.n_embd * x.numel()  # QK^T and AV, fwd + bwd


def test_functions_take_arrays_and_series():
    params = pd.Series([1e9, 70e9])
    tokens = pd.Series([20e9, 1.4e12])
    np.testing.assert_allclose(compute.tokens_per_parameter(params, tokens), [20, 20])
    np.testing.assert_allclose(compute.training_flops(np.array([1.0, 2.0]), 3.0), [18.0, 36.0])
    np.testing.assert_allclose(compute.chinchilla_tokens(np.array([1e9, 2e9])), [20e9, 40e9])


def test_chinchilla_optimal_inverts_six_nd_at_twenty_tokens_per_parameter():
    n, d = compute.chinchilla_optimal(compute.training_flops(70e9, 1.4e12))
    assert n == pytest.approx(70e9) and d == pytest.approx(1.4e12)
    n, d = compute.chinchilla_optimal(6e20, tokens_per_param=10)
    assert d == pytest.approx(10 * n) and 6 * n * d == pytest.approx(6e20)


def test_transformer_params_is_close_to_the_gpt_class_and_to_gpt3():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=3, n_head=4, n_embd=64))
    blocks = sum(p.numel() for p in model.transformer.h.parameters())
    est = compute.transformer_params(3, 64)
    assert est < blocks < est * 1.02  # the difference is biases and layer norms (13 d per layer)
    assert compute.transformer_params(96, 12288) == pytest.approx(175e9, rel=0.01)  # GPT-3


def test_training_seconds_and_its_utilisation_check():
    assert compute.training_seconds(1e18, 1e15, 0.5) == pytest.approx(2000.0)
    with pytest.raises(ValueError, match="pass 0.4"):
        compute.training_seconds(1e18, 1e15, 40)
    with pytest.raises(ValueError, match="positive"):
        compute.training_seconds(1e18, 1e15, 0)
    with pytest.raises(ValueError, match="peak_flops"):
        compute.training_seconds(1e18, -1, 0.5)


def test_bytes_per_parameter_follow_zero_accounting():
    assert compute.bytes_per_parameter("mixed", "adamw").total == 16  # 2 + 2 + 4 + 4 + 4 (ZeRO)
    assert compute.bytes_per_parameter("fp32", "adamw").total == 16  # 4 + 4 + 8
    assert compute.bytes_per_parameter("fp32", "sgd").total == 8
    assert compute.bytes_per_parameter("mixed", "adamw-8bit").total == 10  # 2 + 2 + 4 + 1 + 1
    assert compute.training_memory(1.5e9, "mixed", "adamw-8bit") == pytest.approx(15e9)
    assert compute.training_memory(1.5e9) == pytest.approx(24e9)  # ZeRO's GPT-2 example: 24 GB
    assert compute.max_parameters(16e9, "fp32", "adamw") == pytest.approx(1e9)
    assert compute.weight_memory(7e9, "bf16") == 14e9
    with pytest.raises(ValueError, match="unknown precision"):
        compute.bytes_per_parameter("fp8")
    with pytest.raises(ValueError, match="unknown optimizer"):
        compute.bytes_per_parameter("fp32", "lion")
    with pytest.raises(ValueError, match="unknown dtype"):
        compute.weight_memory(1e9, "fp64")


def test_measured_model_states_of_adamw_are_sixteen_bytes_per_parameter():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = compute.model_state_bytes(model, opt)
    assert before["gradients"] == 0 and before["optimizer_states"] == 0
    x = torch.randint(0, 11, (2, 8))
    model(x, labels=x).loss.backward()
    opt.step()
    got = compute.model_state_bytes(model, opt)
    n = got["parameters"]
    assert n == model.num_parameters()  # the tied embedding counts once
    assert got["weights"] == got["gradients"] == 4 * n
    # two fp32 moments per parameter, plus one scalar step counter per parameter tensor
    n_tensors = len(list(model.parameters()))
    assert got["optimizer_states"] == 8 * n + 4 * n_tensors
    with pytest.raises(TypeError, match="nn.Module"):
        compute.model_state_bytes("model")


@pytest.mark.parametrize("bad, error, message", [
    (-1, ValueError, "positive"), (0, ValueError, "positive"), (math.inf, ValueError, "finite"),
    (float("nan"), ValueError, "NaN"), ("7B", TypeError, "number"), (True, TypeError, "number"),
    ([], ValueError, "empty"),
])
def test_bad_counts_are_clear_errors(bad, error, message):
    with pytest.raises(error, match=message):
        compute.training_flops(bad, 1e9)
    with pytest.raises(error, match=message):
        compute.tokens_per_parameter(1e9, bad)


def test_nan_in_a_table_column_says_to_drop_it():
    with pytest.raises(ValueError, match="dropna"):
        compute.training_flops(pd.Series([1e9, np.nan]), 1e9)


def test_transformer_params_rejects_non_integers():
    with pytest.raises(ValueError, match="n_layer"):
        compute.transformer_params(0, 64)
    with pytest.raises(ValueError, match="d_model"):
        compute.transformer_params(2, 64.5)


def test_accelerators_and_durations():
    h100, t4 = compute.ACCELERATORS["H100"], compute.ACCELERATORS["T4"]
    assert h100.peak_flops > t4.peak_flops and h100.memory_bytes > t4.memory_bytes
    assert compute.format_duration(90) == "1.5 minutes"
    assert compute.format_duration(3 * 86400) == "3 days"
    assert compute.format_duration(200 * 365.25 * 86400) == "200 years"
    assert compute.format_duration(0.5) == "0.5 seconds"
    assert compute.format_duration(3600) == "1 hour" and compute.format_duration(1) == "1 second"


def test_mfu_of_llama_65b_from_its_reported_throughput():
    # LLaMA 65B: about 380 tokens/s/GPU on A100-80GB (Touvron et al. 2023, section 2.4);
    # 6 x 65.2e9 x 380 / 312e12 = 0.476
    a100 = compute.ACCELERATORS["A100"]
    assert a100.peak_flops == 312e12 and a100.memory_bytes == 80e9
    mfu = compute.model_flops_utilization(65.2e9, 380, a100.peak_flops)
    assert mfu == pytest.approx(6 * 65.2e9 * 380 / 312e12)
    assert 0.47 < mfu < 0.48
    # a utilisation computed this way gives back the time it came from
    t = compute.training_seconds(compute.training_flops(65.2e9, 1.4e12), a100.peak_flops * 2048, mfu)
    assert t / 86400 == pytest.approx(1.4e12 / (380 * 2048) / 86400)
    with pytest.raises(ValueError, match="FLOP/s of one device"):
        compute.model_flops_utilization(1e9, 100, 0)


def test_isoflop_optimum_finds_the_vertex_of_a_parabola_in_log_n():
    n = np.array([1e4, 3e4, 1e5, 3e5, 1e6])
    loss = 2.0 + 0.3 * (np.log10(n) - np.log10(5e4)) ** 2
    n_opt, l_opt = compute.isoflop_optimum(n, loss)
    assert n_opt == pytest.approx(5e4, rel=1e-6) and l_opt == pytest.approx(2.0)
    # noise moves the vertex, but not far
    rng = np.random.default_rng(0)
    n_noisy, _ = compute.isoflop_optimum(n, loss + rng.normal(0, 0.005, n.size))
    assert 3e4 < n_noisy < 8e4


def test_isoflop_optimum_errors_say_what_to_do():
    with pytest.raises(ValueError, match="at least three different sizes"):
        compute.isoflop_optimum([1e4, 1e5, 1e5], [2.0, 1.9, 1.8])
    with pytest.raises(ValueError, match="bracket the optimum"):
        compute.isoflop_optimum([1e4, 1e5, 1e6], [2.0, 2.2, 2.0])    # a maximum, not a minimum
    with pytest.raises(ValueError, match="differ in length"):
        compute.isoflop_optimum([1e4, 1e5, 1e6], [2.0, 1.9])
    with pytest.raises(ValueError, match="drop the failed runs"):
        compute.isoflop_optimum([1e4, 1e5, 1e6], [2.0, np.nan, 2.1])


def test_fit_isoflop_and_power_law_recover_a_known_exponent():
    # synthetic sweep whose optimum grows as C^0.5: N_opt = 0.1 C^0.5
    budgets = [1e11, 1e12, 1e13]
    rows = [(c, n, 2.0 - 0.1 * np.log10(c) + 0.2 * (np.log10(n) - np.log10(0.1 * c ** 0.5)) ** 2)
            for c in budgets for n in 0.1 * c ** 0.5 * np.array([0.1, 0.3, 1, 3, 10])]
    c, n, loss = map(np.array, zip(*rows))
    table = compute.fit_isoflop(c, n, loss)
    assert list(table.budget) == budgets and list(table.runs) == [5, 5, 5] and table.inside.all()
    np.testing.assert_allclose(table.N_opt, 0.1 * np.array(budgets) ** 0.5, rtol=1e-6)
    a, b = compute.power_law(table.budget, table.N_opt)
    assert b == pytest.approx(0.5) and a == pytest.approx(0.1)
    # an optimum outside the sizes trained is flagged
    sizes = np.array([1e4, 2e4, 4e4])
    outside = compute.fit_isoflop([1e11] * 3, sizes, 2 + 0.3 * (np.log10(sizes) - np.log10(4e5)) ** 2)
    assert outside.N_opt[0] == pytest.approx(4e5) and not outside.inside[0]
    with pytest.raises(ValueError, match="two different x"):
        compute.power_law([1e11, 1e11], [1e4, 2e4])


def test_the_packaged_isoflop_sweep_is_a_valid_sweep():
    runs = compute.isoflop_runs()
    assert runs.budget.nunique() >= 3 and (runs.groupby("budget").size() >= 4).all()
    # every run spent its budget (6 N D within 5%) and N is the parameters in weight products
    np.testing.assert_allclose(runs.flops / runs.budget, 1, atol=0.05)
    np.testing.assert_allclose(runs.flops, 6 * runs.params * runs.tokens)
    assert (runs.tokens == runs.steps * runs.batch_size * runs.block_size).all()
    for _, r in runs.iterrows():
        assert r.params == compute.transformer_params(int(r.n_layer), int(r.n_embd)) + 76 * r.n_embd
    assert runs.val_loss.between(1.0, 4.5).all()   # nats/char: below uniform over 76 symbols (4.33)
