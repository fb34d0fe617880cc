"""lmbook.tune: LoRA's low-rank update and merge; the DPO loss written out equals TRL's; presets;
the preference rule."""
from __future__ import annotations

import pytest
import torch

from lmbook.tune.dpo import dpo_loss, sequence_logprobs
from lmbook.tune.lora import count_parameters, lora_config, lora_updates, merge
from lmbook.tune.presets import TUNE_PRESETS, get_tune_preset
from lmbook.tune.tasks import reveals_secret, secret_pairs
from lmbook.tune.model import load_chat_tokenizer, tiny_llama


@pytest.fixture(scope="module")
def chat_tok():
    return load_chat_tokenizer()


def _lora_model(r=4, seed=0):
    from peft import get_peft_model

    base = tiny_llama(64, seed=seed).eval()
    cfg = lora_config(r=r, alpha=8, targets=("q_proj", "v_proj"))
    cfg.init_lora_weights = False  # random B as well as A, so the update is not zero
    torch.manual_seed(seed + 1)
    return get_peft_model(base, cfg).eval()


def test_lora_counts_and_update_rank():
    model = _lora_model(r=4)
    trainable, total = count_parameters(model)
    # q_proj 32 -> 32, v_proj 32 -> 16 (2 KV heads of 8): r * (d_in + d_out) each, 2 layers
    assert trainable == 2 * 4 * ((32 + 32) + (32 + 16))
    ups = lora_updates(model)
    assert len(ups) == 4 and all(u.rank == 4 <= min(u.shape) for u in ups)
    assert {u.shape for u in ups} == {(32, 32), (16, 32)}
    assert all(u.lora_params == 4 * sum(u.shape) and u.full_params == u.shape[0] * u.shape[1] for u in ups)


def test_lora_update_rank_is_at_most_r_even_when_r_is_large():
    ups = lora_updates(_lora_model(r=24))  # r above the 16-wide v_proj output: rank capped by the shape
    assert [u.rank for u in ups if u.shape == (16, 32)] == [16, 16]


def test_merge_gives_the_same_logits():
    model = _lora_model()
    x = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        adapted = model(input_ids=x).logits
        with model.disable_adapter():
            base = model(input_ids=x).logits
        merged_model = merge(model)
        merged = merged_model(input_ids=x).logits
    assert not torch.allclose(adapted, base, atol=1e-4)  # the adapter changes the function
    assert torch.allclose(adapted, merged, atol=1e-5)    # and merging keeps it
    assert not any("lora" in n for n, _ in merged_model.named_parameters())


def test_lora_updates_needs_a_peft_model():
    with pytest.raises(ValueError, match="no LoRA layers"):
        lora_updates(tiny_llama(64))
    with pytest.raises(ValueError, match="at least 1"):
        lora_config(r=0)


def test_dpo_loss_by_hand():
    # equal margins: log 2; a large positive margin: near 0; the reference shifts it
    z = torch.zeros(3)
    assert dpo_loss(z, z, z, z).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    c, r = torch.tensor([-1.0]), torch.tensor([-5.0])
    assert dpo_loss(c, r, z[:1], z[:1], beta=1.0).item() == pytest.approx(
        -torch.nn.functional.logsigmoid(torch.tensor(4.0)).item())
    assert dpo_loss(c, r, c, r, beta=1.0).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_dpo_loss_matches_trl(chat_tok, tmp_path):
    from trl import DPOConfig, DPOTrainer

    from lmbook.tune.dpo import to_preference_dataset

    tok = chat_tok
    pairs = secret_pairs(4, seed=0)
    policy, ref = tiny_llama(len(tok), seed=0), tiny_llama(len(tok), seed=1).eval()
    args = DPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, beta=0.3,
                     report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True,
                     gradient_checkpointing=False)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=to_preference_dataset(pairs),
                         processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    policy.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(policy, dict(batch))
        ids, att, cm = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        pol, rf = sequence_logprobs(policy, ids, att, cm), sequence_logprobs(ref, ids, att, cm)
        (pc, pr), (rc, rr) = pol.chunk(2), rf.chunk(2)  # TRL stacks [chosen; rejected]
        ours = dpo_loss(pc, pr, rc, rr, beta=0.3)
    assert ours.item() == pytest.approx(trl_loss.item(), rel=1e-5)
    assert abs(ours.item() - torch.log(torch.tensor(2.0)).item()) > 1e-3  # policy != reference
    # the rows TRL scores are the pairs' replies: the rejected ones state the secret
    text = tok.decode(ids[4][cm[4].bool()])
    assert any(reveals_secret(text, p.secret) for p in pairs)


def test_secret_pairs_follow_the_rule_and_differ_between_sets():
    train, held = secret_pairs(50, seed=0), secret_pairs(20, seed=0, offset=50)
    assert all(not reveals_secret(p.chosen, p.secret) and reveals_secret(p.rejected, p.secret) for p in train)
    assert all(p.secret in p.prompt[0]["content"] for p in train)
    assert not {p.secret for p in train} & {p.secret for p in held}
    assert secret_pairs(5, seed=0) == train[:5]


def test_reveals_secret_is_a_whole_word_rule():
    assert reveals_secret("Sure, it is Banana.", "banana")
    assert not reveals_secret("bananas are yellow", "banana")
    assert not reveals_secret("I can't share it.", "banana")


def test_tune_presets(monkeypatch):
    monkeypatch.setenv("LMBOOK_PRESET", "t4")
    assert get_tune_preset().name == "t4"
    assert get_tune_preset("cpu") is TUNE_PRESETS["cpu"] and TUNE_PRESETS["cpu"].source is None
    assert TUNE_PRESETS["large"].source == "HuggingFaceTB/SmolLM2-360M-Instruct"
    assert get_tune_preset("cpu").replace(sft_steps=3).sft_steps == 3
    with pytest.raises(ValueError, match="cpu, t4, large"):
        get_tune_preset("tpu")


def test_tune_preset_keeps_the_packaged_model_when_asked(monkeypatch):
    monkeypatch.delenv("LMBOOK_PACKAGED", raising=False)
    assert get_tune_preset("large").source == "HuggingFaceTB/SmolLM2-360M-Instruct"  # a GPU preset names the hub
    monkeypatch.setenv("LMBOOK_PACKAGED", "1")
    large = get_tune_preset("large")
    assert large.source is None and large.sft_steps == TUNE_PRESETS["large"].sft_steps  # only the model changes
    assert get_tune_preset(TUNE_PRESETS["large"]).source is None
    assert get_tune_preset("cpu") is TUNE_PRESETS["cpu"]


def test_sentiment_pairs_prefer_the_label_and_come_from_the_training_split():
    from lmbook.data import load_rotten_tomatoes
    from lmbook.tune.tasks import sentiment_pairs, sentiment_task

    pairs = sentiment_pairs(20, seed=0)
    ds = load_rotten_tomatoes(0, verbose=False)
    label_of = dict(zip(ds["train"]["text"], ds["train"]["label"]))
    names = ["negative", "positive"]
    assert [p.chosen for p in pairs].count("positive") == 10
    for p in pairs:  # chosen is the snippet's own label, rejected the other one
        assert p.chosen == names[label_of[p.prompt[1]["content"]]] and {p.chosen, p.rejected} == set(names)
    held = {e.prompt[1]["content"] for e in sentiment_task(20, seed=0).eval}
    assert not held & {p.prompt[1]["content"] for p in pairs}
    with pytest.raises(ValueError, match="even number"):
        sentiment_pairs(3)


def test_run_dpo_mixes_the_sentiment_pairs_into_its_training_pairs(monkeypatch, chat_tok):
    import lmbook.tune.dpo as dpo
    from lmbook.tune.recipes import run_dpo

    seen = []

    class Stop(Exception):
        pass

    def capture(model, tok, pairs, **kw):
        seen.append(pairs)
        raise Stop

    monkeypatch.setattr(dpo, "train_dpo", capture)
    pre = get_tune_preset("cpu").replace(dpo_pairs=8)
    for mix in (0, 4):
        with pytest.raises(Stop):
            run_dpo(pre, evaluate=False, model=tiny_llama(64), tok=chat_tok, mix=mix)
    plain, mixed = seen
    assert plain == secret_pairs(8, seed=0)  # without mixing: the secret pairs, in order
    assert len(mixed) == 12 and all(p in mixed for p in plain) and mixed[:8] != plain  # shuffled in
    assert sorted(p.chosen for p in mixed if not p.secret) == ["negative", "negative", "positive", "positive"]


def test_sentiment_task_draws_training_examples_apart_from_the_held_out_ones():
    from lmbook.tune.tasks import sentiment_task

    task = sentiment_task(10, n_train=16, seed=0)
    assert len(task.eval) == 20 and len(task.train) == 16
    assert sorted(e.label for e in task.train) == [0] * 8 + [1] * 8
    assert all(e.answer == task.labels[e.label] for e in task.train + task.eval)
    assert not {e.prompt[1]["content"] for e in task.train} & {e.prompt[1]["content"] for e in task.eval}
    assert task.eval == sentiment_task(10, seed=0).eval  # asking for training examples leaves eval as it was
