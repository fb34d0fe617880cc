"""lmbook.train: fit, presets, checkpoints (atomic, resumable), errors. Tiny models, CPU, fast."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.train import (PRESETS, History, NonFiniteLossError, Preset, evaluate, fit, get_preset,
                          load_checkpoint, lr_at, param_groups, resolve_precision, save_checkpoint)
from lmbook.train import checkpoint as ckpt

V = 16  # vocabulary of the toy task: predict (token + 1) mod V


@dataclass
class ToyConfig:
    vocab_size: int = V
    n_embd: int = 24
    dropout: float = 0.1


class Toy(nn.Module):
    """Embedding -> dropout -> linear head tied to the embedding: a model with a config, dropout
    (so RNG state matters) and tied weights (so checkpoints must store them once)."""

    def __init__(self, cfg: ToyConfig = ToyConfig()):
        super().__init__()
        self.config = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.ln = nn.LayerNorm(cfg.n_embd)
        self.mix = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, input_ids, labels=None):
        logits = self.head(self.drop(self.ln(self.mix(self.emb(input_ids)))))  # (B, T, V)
        loss = None if labels is None else F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1))
        return {"loss": loss, "logits": logits}


def toy_data(n=96, T=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (n, T), generator=g)
    return [{"input_ids": x[i], "labels": (x[i] + 1) % V} for i in range(n)]


def toy_model(seed=0, **cfg):
    torch.manual_seed(seed)
    return Toy(ToyConfig(**cfg))


QUIET = dict(progress=False, device="cpu", batch_size=8, lr=3e-2, warmup_steps=2)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


# ------------------------------------------------------------------------------------------
def test_fit_learns_and_records_history():
    model = toy_model()
    h = fit(model, toy_data(), val_data=toy_data(32, seed=1), steps=40, eval_every=10, **QUIET)
    assert isinstance(h, History)
    assert h.steps == list(range(1, 41))
    assert len(h.train_loss) == len(h.lr) == len(h.tokens) == len(h.examples) == len(h.time) == 40
    assert [s for s, _ in h.val] == [10, 20, 30, 40]
    assert h.train_loss[0] > math.log(V) - 0.7          # starts near chance
    assert h.final_train_loss < 0.5 * h.train_loss[0]  # and learns the rule
    assert h.best_val == min(v for _, v in h.val) < 1.0
    assert h.tokens[-1] == 40 * 8 * 8 and h.examples[-1] == 40 * 8
    assert all(b >= a for a, b in zip(h.time, h.time[1:]))
    assert not model.training  # fit returns the model in eval mode


def test_schedule_warmup_then_cosine_to_min():
    lrs = [lr_at(s, lr=1.0, steps=100, warmup_steps=10, min_lr_ratio=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    assert lrs[10] == pytest.approx(1.0)
    assert all(b <= a for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)
    h = fit(toy_model(), toy_data(), steps=20, warmup_steps=4, min_lr_ratio=0.5,
            **{k: v for k, v in QUIET.items() if k != "warmup_steps"})
    assert h.lr == [lr_at(s, lr=3e-2, steps=20, warmup_steps=4, min_lr_ratio=0.5) for s in range(20)]


def test_weight_decay_only_on_matrices():
    model = toy_model()
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    n = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())  # the tied weight counted once


def test_same_seed_same_run_other_seed_other_order():
    runs = []
    for seed in (0, 0, 1):
        model = toy_model()
        fit(model, toy_data(), steps=6, seed=seed, **QUIET)
        runs.append(weights(model))
    assert_same_weights(runs[0], runs[1])
    assert not torch.equal(runs[0]["mix.weight"], runs[2]["mix.weight"])


def test_gradient_accumulation_matches_the_big_batch():
    a, b = toy_model(dropout=0.0), toy_model(dropout=0.0)
    opts = {k: v for k, v in QUIET.items() if k != "batch_size"}
    ha = fit(a, toy_data(), steps=5, batch_size=8, accum_steps=1, **opts)
    hb = fit(b, toy_data(), steps=5, batch_size=4, accum_steps=2, **opts)
    assert ha.examples == hb.examples
    for k, v in weights(a).items():
        torch.testing.assert_close(v, weights(b)[k], atol=1e-6, rtol=1e-5)


def test_epochs_set_the_number_of_steps():
    h = fit(toy_model(), toy_data(96), epochs=2, **QUIET)  # 96 / 8 = 12 batches an epoch
    assert h.steps[-1] == 24


def test_dataloader_and_bf16_on_cpu():
    loader = torch.utils.data.DataLoader(toy_data(), batch_size=8, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    h = fit(toy_model(), loader, steps=5, precision="bf16", progress=False, device=torch.device("cpu"), lr=1e-2)
    assert h.info["precision"] == "bf16" and all(math.isfinite(x) for x in h.train_loss)


def test_huggingface_model_trains():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=2)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, V, (64, 6), generator=g)
    data = [{"input_ids": x[i], "attention_mask": torch.ones(6, dtype=torch.long),
             "labels": (x[i, 0] < V // 2).long()} for i in range(64)]
    h = fit(model, data, steps=30, batch_size=16, lr=3e-3, progress=False, device="cpu", warmup_steps=3)
    assert h.final_train_loss < h.train_loss[0]
    assert h.tokens[-1] == 30 * 16 * 6  # counted from attention_mask


def test_evaluate_is_the_example_weighted_mean():
    model = toy_model(dropout=0.0)
    data = toy_data(20)
    got = evaluate(model, data, batch_size=8)  # batches of 8, 8, 4
    with torch.no_grad():
        want = torch.stack([model(**{k: v[None] for k, v in ex.items()})["loss"] for ex in data]).mean()
    assert got == pytest.approx(float(want), rel=1e-5)
    assert evaluate(model, data, batch_size=8, max_batches=1) == evaluate(model, data, batch_size=8, max_batches=1)


# ------------------------------------------------------------------------------------------
# presets
def test_presets(monkeypatch):
    assert {"cpu", "t4", "large"} <= set(PRESETS)
    monkeypatch.setenv("LMBOOK_PRESET", "t4")
    assert get_preset().name == "t4"
    assert get_preset("large").name == "large"
    monkeypatch.delenv("LMBOOK_PRESET")
    if not torch.cuda.is_available():
        assert get_preset().name == "cpu"
    with pytest.raises(ValueError, match="unknown preset 'huge'.*cpu, t4, large"):
        get_preset("huge")
    small = get_preset("cpu").replace(batch_size=4, steps=3, lr=1e-2, eval_every=2, eval_batches=1)
    assert isinstance(small, Preset) and small.n_layer == PRESETS["cpu"].n_layer
    h = fit(toy_model(), toy_data(), val_data=toy_data(16), preset=small, progress=False, device="cpu")
    assert h.steps == [1, 2, 3] and h.examples[-1] == 12 and [s for s, _ in h.val] == [2, 3]
    assert h.info["batch_size"] == 4 and h.info["lr"] == 1e-2


# ------------------------------------------------------------------------------------------
# checkpoints
class CrashAfter(torch.utils.data.Dataset):
    """Raises after ``limit`` examples were read: a process killed part way through training."""

    def __init__(self, data, limit):
        self.data, self.limit, self.reads = data, limit, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.reads += 1
        if self.reads > self.limit:
            raise RuntimeError("simulated crash")
        return self.data[i]


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    data = toy_data(60)  # 7 batches an epoch: the runs cross epoch boundaries
    full = toy_model()
    h_full = fit(full, data, steps=20, **QUIET)

    crashing = toy_model()
    with pytest.raises(RuntimeError, match="simulated crash"):  # dies while reading step 14's batch
        fit(crashing, CrashAfter(data, limit=13 * 8 + 3), steps=20, checkpoint_dir=tmp_path,
            checkpoint_every=6, **QUIET)
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 12
    resumed = toy_model(seed=123)  # other initial weights: all state must come from the checkpoint
    h_res = fit(resumed, data, steps=20, checkpoint_dir=tmp_path, checkpoint_every=6, **QUIET)

    assert_same_weights(weights(full), weights(resumed))
    assert h_res.steps == h_full.steps and h_res.train_loss == h_full.train_loss
    assert h_res.info["resumed_from"] == 12
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 20
    # only the newest pair is kept, and no temporary files are left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "latest.json", "model-0000020.safetensors", "state-0000020.pt"]
    # resume=False starts again from the model's own weights
    fresh = toy_model()
    fit(fresh, data, steps=20, checkpoint_dir=tmp_path, resume=False, **QUIET)
    assert_same_weights(weights(full), weights(fresh))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = toy_model()
    save_checkpoint(tmp_path, model, step=1)
    before = weights(model)
    with torch.no_grad():
        model.mix.weight.add_(1.0)

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)  # dies after the weights file was written
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, model, step=2)
    monkeypatch.undo()
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    other = toy_model(seed=5)
    assert load_checkpoint(tmp_path, other)["step"] == 1
    assert_same_weights(before, weights(other))


def test_checkpoint_roundtrip_stores_tied_weights_once(tmp_path):
    from safetensors import safe_open

    model = toy_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(**{k: v[None] for k, v in toy_data(1)[0].items()})["loss"].backward()
    opt.step()
    path = save_checkpoint(tmp_path, model, opt, step=7, extra={"note": "x"})
    with safe_open(str(path), framework="pt") as f:
        assert len([k for k in f.keys() if k in ("emb.weight", "head.weight")]) == 1
    other = toy_model(seed=9)
    opt2 = torch.optim.AdamW(other.parameters(), lr=1e-3)
    state = load_checkpoint(tmp_path, other, opt2)
    assert state["step"] == 7 and state["extra"] == {"note": "x"}
    assert_same_weights(weights(model), weights(other))
    assert other.head.weight is other.emb.weight
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert load_checkpoint(path, toy_model(seed=3))["step"] == 7  # a weights file works too


def test_resume_on_another_device_keeps_the_optimizers_own_kernel(tmp_path):
    """A checkpoint written by a CPU run (AdamW without the fused kernel) resumed where fit builds
    a fused AdamW with an fp16 GradScaler (a T4). Simulated on the CPU, which has both."""
    model = toy_model()
    plain = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(**toy_data(1)[0])["loss"].backward()
    plain.step()
    save_checkpoint(tmp_path, model, plain, step=1)

    other = toy_model(seed=1)
    fused = torch.optim.AdamW(other.parameters(), lr=1e-3, fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)  # small: no overflow, the step is taken
    load_checkpoint(tmp_path, other, fused, scaler=scaler)
    assert all(g["fused"] for g in fused.param_groups)
    torch.testing.assert_close(fused.state[other.mix.weight]["exp_avg"], plain.state[model.mix.weight]["exp_avg"])
    with torch.autocast("cpu", dtype=torch.float16):
        loss = other(**toy_data(1)[0])["loss"]
    scaler.scale(loss).backward()
    scaler.unscale_(fused)  # fit unscales before clipping
    scaler.step(fused)  # the scaler hands the fused kernel its scale and inf flag
    scaler.update()
    assert fused.state[other.mix.weight]["step"].item() == 2

    back = torch.optim.AdamW(toy_model().parameters(), lr=1e-3)  # and the other way round
    save_checkpoint(tmp_path, other, fused, step=2)
    load_checkpoint(tmp_path, toy_model(), back)
    assert not any(g["fused"] for g in back.param_groups)


def test_checkpoint_of_another_config_names_the_mismatch(tmp_path):
    save_checkpoint(tmp_path, toy_model(n_embd=24), step=1)
    with pytest.raises(ValueError, match=r"n_embd: checkpoint 24, model 32.*mix.weight"):
        load_checkpoint(tmp_path, toy_model(n_embd=32))
    with pytest.raises(ValueError, match="n_embd: checkpoint 24, model 32"):
        fit(toy_model(n_embd=32), toy_data(), steps=2, checkpoint_dir=tmp_path, **QUIET)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing", toy_model())


# ------------------------------------------------------------------------------------------
# errors
class NaNAfter(nn.Module):
    def __init__(self, step):
        super().__init__()
        self.lin, self.calls, self.step = nn.Linear(4, 1), 0, step

    def forward(self, x, labels):
        self.calls += 1
        loss = F.mse_loss(self.lin(x).squeeze(-1), labels)
        return loss * float("nan") if self.calls >= self.step else loss


def regression_data(n=32):
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    return [{"x": x[i], "labels": x[i].sum()} for i in range(n)]


def test_nonfinite_loss_stops_with_step_and_causes():
    with pytest.raises(NonFiniteLossError, match=r"nan at step 3 .*learning rate is too high.*fp16.*bad data"):
        fit(NaNAfter(3), regression_data(), steps=10, **QUIET)


def test_errors():
    data = toy_data()
    with pytest.raises(ValueError, match="unknown preset"):
        fit(toy_model(), data, steps=1, preset="gigantic", progress=False)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        fit(toy_model(), data, steps=1, device="tpu", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            fit(toy_model(), data, steps=1, device="cuda", progress=False)
    with pytest.raises(ValueError, match="returned no loss.*labels"):
        fit(toy_model(), [{"input_ids": ex["input_ids"]} for ex in data], steps=1, **QUIET)
    with pytest.raises(ValueError, match="dataset is empty"):
        fit(toy_model(), [], steps=1, **QUIET)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        fit(toy_model(), data, steps=1, batch_size=0, progress=False, device="cpu")
    with pytest.raises(TypeError, match="batches must be dicts"):
        fit(toy_model(), [(ex["input_ids"], ex["labels"]) for ex in data], steps=1, **QUIET)
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA GPU"):
        fit(toy_model(), data, steps=1, precision="fp16", **QUIET)
    with pytest.raises(ValueError, match="steps or epochs, not both"):
        fit(toy_model(), data, steps=1, epochs=1, **QUIET)


# ------------------------------------------------------------------------------------------
def test_history_json_and_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    h = fit(toy_model(), toy_data(), val_data=toy_data(16, seed=2), steps=12, eval_every=4, **QUIET)
    back = History.from_json(h.to_json(tmp_path / "h.json"))
    assert back.train_loss == h.train_loss and back.val == h.val and back.best_val == h.best_val
    assert History.from_json(tmp_path / "h.json").steps == h.steps
    assert json.loads(h.to_json())["summary"]["final_train_loss"] == pytest.approx(h.final_train_loss)
    ax = h.plot(logy=True)
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "optimizer step"
    labels = [line.get_label() for line in ax.get_lines()]
    assert "validation" in labels and any(lbl.startswith("train") for lbl in labels)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_failed_compilation_falls_back_to_eager_only_in_auto_mode(monkeypatch):
    import lmbook.train.loop as loop

    def broken_compile(module):
        def call(**batch):
            raise RuntimeError("inductor: no C++ compiler")
        return call

    monkeypatch.setattr(loop, "resolve_compile", lambda setting, device: True)  # as on a GPU
    monkeypatch.setattr(loop.torch, "compile", broken_compile)
    opts = {k: v for k, v in QUIET.items()}
    with pytest.warns(UserWarning, match="torch.compile failed.*no C\\+\\+ compiler"):
        h = fit(toy_model(), toy_data(), steps=3, compile="auto", **opts)
    assert h.info["compile"] is False and len(h.train_loss) == 3
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        fit(toy_model(), toy_data(), steps=3, compile=True, **opts)


def test_fp16_gradient_scaler_path_simulated_on_cpu(monkeypatch, tmp_path):
    """fit's fp16 path (a T4): fp16 autocast, a GradScaler, unscaling before clipping, the fused
    AdamW that takes the scaler's inf flag, the scaler's state in checkpoints. The CPU has all of
    these, so the path runs here with the CUDA-only choices swapped for their CPU twins."""
    import lmbook.train.loop as loop

    scalers = []

    def cpu_scaler(enabled):
        scalers.append(torch.amp.GradScaler("cpu", enabled=enabled))
        return scalers[-1]

    monkeypatch.setattr(loop, "resolve_precision", lambda precision, device: "fp16")
    monkeypatch.setattr(loop, "_grad_scaler", cpu_scaler)
    monkeypatch.setattr(loop, "make_optimizer", lambda model, lr, wd, betas: torch.optim.AdamW(
        param_groups(model, wd), lr=lr, betas=betas, fused=True))
    clipped = []
    real_clip = loop.nn.utils.clip_grad_norm_

    def clip(params, max_norm):
        params = list(params)
        norm = real_clip(params, max_norm)
        clipped.append((float(norm), float(torch.stack([p.grad.norm() for p in params]).norm())))
        return norm

    monkeypatch.setattr(loop.nn.utils, "clip_grad_norm_", clip)
    model = toy_model(dropout=0.0)
    h = fit(model, toy_data(), steps=30, checkpoint_dir=tmp_path, **{**QUIET, "lr": 1e-2})
    scaler = scalers[0]
    assert scaler.is_enabled() and h.info["precision"] == "fp16"
    assert all(math.isfinite(x) for x in h.train_loss) and h.final_train_loss < 0.7 * h.train_loss[0]
    assert scaler.get_scale() < 2.0**16  # it backed off after fp16 overflows (inf gradients)
    assert not math.isfinite(clipped[0][0])  # the first steps overflow: skipped, not applied
    # clipping sees the true gradients (unscaled first; scaled ones would be ~1e4 times larger)
    # and leaves their norm at grad_clip
    finite = [(before, after) for before, after in clipped if math.isfinite(before)]
    assert len(finite) > 20 and all(before < 100 and after <= 1.0 + 1e-3 for before, after in finite)
    state = torch.load(tmp_path / "state-0000030.pt", weights_only=True)
    assert state["scaler"]["scale"] == scaler.get_scale()
    h2 = fit(toy_model(dropout=0.0), toy_data(), steps=31, checkpoint_dir=tmp_path, **{**QUIET, "lr": 1e-2})
    assert h2.info["resumed_from"] == 30 and len(h2.train_loss) == 31
    assert scalers[1].get_scale() <= scaler.get_scale()  # the scale was restored, not 2**16 again


@pytest.mark.parametrize("gpu, capability, memory_gb, preset, precision", [
    ("Tesla T4", (7, 5), 15, "t4", "fp16"),          # no bf16: fp16 autocast + gradient scaler
    ("NVIDIA A100-SXM4-40GB", (8, 0), 40, "large", "bf16"),
    ("NVIDIA GeForce RTX 3060", (8, 6), 12, "t4", "bf16"),  # bf16, but small memory
])
def test_hardware_choices_on_simulated_gpus(monkeypatch, gpu, capability, memory_gb, preset, precision):
    from types import SimpleNamespace

    from lmbook.train import presets
    from lmbook.train.loop import resolve_compile

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: gpu)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: SimpleNamespace(total_memory=memory_gb * 2**30))
    monkeypatch.delenv("LMBOOK_PRESET", raising=False)
    assert presets.auto_preset_name() == preset == get_preset().name
    cuda = torch.device("cuda")
    assert resolve_precision("auto", cuda) == precision
    assert resolve_precision("fp32", cuda) == "fp32" and resolve_precision("fp16", cuda) == "fp16"
    if capability < (8, 0):
        with pytest.raises(ValueError, match=f"{gpu} has no bf16 support.*fp16"):
            resolve_precision("bf16", cuda)
    assert resolve_compile(False, cuda) is False and resolve_compile("on", cuda) is True
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        resolve_precision("half", cuda)


# ------------------------------------------------------------------------------------------
# uneven numbers of targets (padding, MLM): accumulation and evaluation weigh by targets
def uneven_data(n=96, seed=0):
    """Odd examples have one target (labels -100 elsewhere), even ones all eight."""
    data = toy_data(n, seed=seed)
    for i, ex in enumerate(data[1::2]):
        keep = i % 8
        ex["labels"] = torch.full_like(ex["labels"], -100)
        ex["labels"][keep] = (ex["input_ids"][keep] + 1) % V
    return data


def record_gradients():
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    grads = []

    def hook(optimizer, args, kwargs):
        grads.append([p.grad.detach().clone() for g in optimizer.param_groups for p in g["params"]])

    return grads, register_optimizer_step_pre_hook(hook)


def first_batch(data, batch_size, seed=0):
    """The examples of fit's first batch (its seeded shuffle), stacked."""
    order = list(torch.utils.data.DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=seed))
    examples = [data[i] for i in order[:batch_size]]
    return {k: torch.stack([ex[k] for ex in examples]) for k in examples[0]}


def test_accumulation_with_uneven_targets_gives_the_big_batch_gradient():
    opts = {**{k: v for k, v in QUIET.items() if k != "batch_size"}, "grad_clip": None}
    runs = []
    for batch_size, accum in ((8, 1), (2, 4)):
        grads, handle = record_gradients()
        model = toy_model(dropout=0.0)
        try:
            h = fit(model, uneven_data(), steps=4, batch_size=batch_size, accum_steps=accum, **opts)
        finally:
            handle.remove()
        runs.append((grads, h, weights(model)))
    (big, h_big, w_big), (acc, h_acc, w_acc) = runs
    for step, (a, b) in enumerate(zip(acc, big)):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5, msg=lambda m: f"step {step + 1}: {m}")
    assert h_acc.train_loss == pytest.approx(h_big.train_loss, rel=1e-5)  # the big batch's loss
    for k in w_big:
        torch.testing.assert_close(w_acc[k], w_big[k], atol=1e-5, rtol=1e-4)


def test_one_micro_batch_trains_on_the_models_own_mean_loss_bit_for_bit():
    """accum_steps=1 on one process: fit's loss and gradient are exactly the model's mean loss
    and its gradient (the stored chapter outputs depend on it)."""
    data = uneven_data()
    grads, handle = record_gradients()
    try:
        h = fit(toy_model(dropout=0.0), data, steps=1, grad_clip=None, **QUIET)
    finally:
        handle.remove()
    model = toy_model(dropout=0.0)
    loss = model(**first_batch(data, QUIET["batch_size"]))["loss"]
    loss.backward()
    assert h.train_loss[0] == loss.item()
    assert all(torch.equal(g, p.grad) for g, p in zip(grads[0], [p for grp in param_groups(model, 0.1)
                                                                  for p in grp["params"]]))


def test_micro_batch_without_targets_adds_nothing():
    data = uneven_data(16)
    empty = [{"input_ids": ex["input_ids"], "labels": torch.full_like(ex["labels"], -100)} for ex in toy_data(16)]
    opts = {**QUIET, "grad_clip": None, "shuffle": False}
    a, b = toy_model(dropout=0.0), toy_model(dropout=0.0)
    fit(a, data[:8], steps=1, accum_steps=1, **opts)
    h = fit(b, data[:8] + empty[:8], steps=1, accum_steps=2, **opts)  # the second micro-batch has no target
    assert math.isfinite(h.train_loss[0])
    assert_same_weights(weights(a), weights(b))


def test_evaluate_is_the_target_weighted_mean():
    model = toy_model(dropout=0.0)
    data = uneven_data(20)
    got = evaluate(model, data, batch_size=8)  # batches of 8, 8, 4 with different numbers of targets
    with torch.no_grad():
        losses = [model(**{k: v[None] for k, v in ex.items()})["loss"].double() for ex in data]
        n = [int((ex["labels"] != -100).sum()) for ex in data]
    want = sum(loss * k for loss, k in zip(losses, n)) / sum(n)
    assert got == pytest.approx(float(want), rel=1e-6)
    assert evaluate(model, data, batch_size=8, max_batches=1) == evaluate(model, data, batch_size=8, max_batches=1)


def test_evaluate_skips_batches_without_targets_and_raises_on_nonfinite_loss():
    model = toy_model(dropout=0.0)
    data = toy_data(8)
    empty = [{"input_ids": ex["input_ids"], "labels": torch.full_like(ex["labels"], -100)} for ex in toy_data(8, seed=3)]
    loader = torch.utils.data.DataLoader(data + empty, batch_size=8)  # batch 2: no target, mean 0/0
    assert evaluate(model, loader) == pytest.approx(evaluate(model, data, batch_size=8), rel=1e-12)
    with pytest.raises(ValueError, match="no batch with a target"):
        evaluate(model, empty, batch_size=4)
    with torch.no_grad():
        model.mix.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"validation loss is nan.*lower lr"):
        evaluate(model, data, batch_size=4)


def test_evaluate_uses_fits_precision_by_default(monkeypatch):
    import lmbook.train.loop as loop

    asked = []
    real = loop.resolve_precision

    def spy(precision, device):
        asked.append(precision)
        return real(precision, device)

    monkeypatch.setattr(loop, "resolve_precision", spy)
    evaluate(toy_model(), toy_data(8), batch_size=8)
    assert asked == ["auto"]  # bf16 or fp16 on a GPU, as in fit; fp32 here


def test_best_val_ignores_nan_wherever_it_falls():
    for val in ([(1, float("nan")), (2, 2.0), (3, 1.5)], [(1, 2.0), (2, float("nan")), (3, 1.5)],
                [(1, 2.0), (2, 1.5), (3, float("nan"))]):
        assert History(val=val).best_val == 1.5
    assert History(val=[(1, float("nan"))]).best_val is None


# ------------------------------------------------------------------------------------------
# compile="auto": fall back only where eager code works
def fake_compile(fails):
    """A torch.compile whose compiled module raises when ``fails(module, call_number)``."""
    def compile(module):
        calls = [0]

        def call(*args, **kwargs):
            calls[0] += 1
            if fails(module, calls[0]):
                raise RuntimeError("inductor: recompilation failed")
            return module(*args, **kwargs)
        return call
    return compile


@pytest.fixture
def compiling(monkeypatch):
    import lmbook.train.loop as loop

    def use(fails):
        monkeypatch.setattr(loop, "resolve_compile", lambda setting, device: True)  # as on a GPU
        monkeypatch.setattr(loop.torch, "compile", fake_compile(fails))
    return use


def test_failed_recompilation_and_eval_graph_fall_back(compiling):
    opts = {**QUIET, "eval_every": 2}
    ref = toy_model(dropout=0.0)
    h_ref = fit(ref, toy_data(), val_data=toy_data(16, seed=1), steps=6, compile=False, **opts)
    for fails in (lambda m, n: n >= 4,            # a recompilation at step 4
                  lambda m, n: not m.training):   # the evaluation graph
        compiling(fails)
        model = toy_model(dropout=0.0)
        with pytest.warns(UserWarning, match="torch.compile failed.*recompilation failed"):
            h = fit(model, toy_data(), val_data=toy_data(16, seed=1), steps=6, compile="auto", **opts)
        assert h.info["compile"] is False
        assert h.train_loss == h_ref.train_loss and h.val == h_ref.val
        assert_same_weights(weights(model), weights(ref))


def test_model_errors_and_out_of_memory_are_not_reported_as_compile_failures(compiling):
    import warnings

    class Broken(Toy):
        def forward(self, input_ids, labels=None):
            raise ValueError("labels must have shape (8, 8)")

    compiling(lambda m, n: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "torch.compile failed" warning
        with pytest.raises(ValueError, match=r"labels must have shape \(8, 8\)"):
            fit(Broken(ToyConfig()), toy_data(), steps=2, compile="auto", **QUIET)

    import lmbook.train.loop as loop

    def oom_compile(module):
        def call(*args, **kwargs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return call

    loop.torch.compile = oom_compile  # undone by the fixture's monkeypatch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(torch.cuda.OutOfMemoryError, match="out of memory"):
            fit(toy_model(), toy_data(), steps=2, compile="auto", **QUIET)


# ------------------------------------------------------------------------------------------
# RNG states in checkpoints
def test_each_rank_restores_its_own_rng_state():
    states = []
    for r in range(2):
        torch.manual_seed(10 + r)
        states.append(ckpt.rng_state())
    ckpt.restore_rng_state({"rng": states[0], "rng_ranks": states}, rank=1)
    torch.manual_seed(11)
    want = torch.rand(3)
    ckpt.restore_rng_state({"rng": states[0], "rng_ranks": states}, rank=1)
    assert torch.equal(torch.rand(3), want)
    with pytest.warns(UserWarning, match="RNG states of 2 process.*none for rank 2"):
        ckpt.restore_rng_state({"rng": states[0], "rng_ranks": states}, rank=2)


def test_cuda_rng_of_another_gpu_count_is_restored_in_part_with_a_warning(monkeypatch):
    """Simulated: a checkpoint written on 2 GPUs resumed on 1 (and on as many)."""
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: restored.__setitem__(i, s))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda ss: restored.update(enumerate(ss)))
    monkeypatch.setattr(ckpt, "rng_state", lambda: {**real_rng_state(), "cuda": [torch.tensor([i]) for i in range(2)]})
    state = ckpt.rng_state()
    with pytest.warns(UserWarning, match=r"CUDA RNG states for 2 GPU\(s\), this machine has 1.*differ"):
        ckpt.set_rng_state(state)
    assert list(restored) == [0] and torch.equal(restored[0], torch.tensor([0]))
    restored.clear()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt.set_rng_state({**state, "cuda": state["cuda"][:1]})
    assert list(restored) == [0]


real_rng_state = ckpt.rng_state
