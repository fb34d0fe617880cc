"""lmbook.tune: the SFT loss written out equals TRL's SFTTrainer loss on one batch; the task data."""
from __future__ import annotations

import pytest
import torch

from lmbook.llm_eval import prompt_ids as render
from lmbook.tune.model import load_chat_tokenizer, tiny_llama
from lmbook.tune.sft import sft_loss
from lmbook.tune.tasks import ChatExample, few_shot, spam_task


@pytest.fixture(scope="module")
def chat_tok():
    return load_chat_tokenizer()


def test_sft_loss_by_hand():
    # uniform logits: every token costs log V, whatever the mask picks
    V = 7
    logits = torch.zeros(2, 5, V)
    ids = torch.randint(0, V, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])
    assert sft_loss(logits, ids, mask).item() == pytest.approx(torch.log(torch.tensor(7.0)).item())
    # only the answer tokens count: changing the logits that predict prompt tokens changes nothing
    logits = torch.randn(2, 5, V)
    before = sft_loss(logits, ids, mask)
    logits[0, 0, ids[0, 1]] += 5.0  # predicts token 1 of row 0, a prompt token
    assert torch.allclose(before, sft_loss(logits, ids, mask))
    logits[0, 2, ids[0, 3]] += 5.0  # predicts token 3 of row 0, an answer token
    assert not torch.allclose(before, sft_loss(logits, ids, mask))


def test_sft_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        sft_loss(torch.zeros(2, 5), torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 5))


def test_sft_loss_matches_trl(chat_tok, tmp_path):
    from trl import SFTTrainer

    from lmbook.tune.sft import sft_config
    from lmbook.tune.tasks import to_prompt_completion

    tok = chat_tok
    examples = [ChatExample([{"role": "system", "content": "Answer spam or ham."},
                             {"role": "user", "content": text}], answer, int(answer == "spam"))
                for text, answer in [("Win a FREE prize now, call 0800", "spam"), ("see you at 6?", "ham"),
                                     ("URGENT your account", "spam"), ("ok lor", "ham")]]
    model = tiny_llama(len(tok))
    args = sft_config(str(tmp_path), steps=1, batch_size=4, lr=1e-3, save=False, progress=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=to_prompt_completion(examples), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    model.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(model, dict(batch))
        # our own completion mask: the tokens after the rendered prompt, pads excluded
        ids, att = batch["input_ids"], batch["attention_mask"]
        mask = torch.zeros_like(ids)
        for i in range(len(ids)):
            n_prompt = next(len(render(tok, e.prompt)) for e in examples
                            if ids[i, :len(render(tok, e.prompt))].tolist() == render(tok, e.prompt))
            mask[i, n_prompt:int(att[i].sum())] = 1
        assert torch.equal(mask.bool(), batch["labels"] != -100)  # TRL learns the same tokens we do
        ours = sft_loss(model(input_ids=ids, attention_mask=att).logits, ids, mask)
    assert ours.item() == pytest.approx(trl_loss.item(), rel=1e-5)
    # and the answer tokens are the answer and the end-of-turn marker
    first = tok.decode(ids[0][mask[0].bool()])
    assert first.split("<|im_end|>")[0] in ("spam", "ham")


def test_spam_task_is_balanced_fixed_and_held_out():
    a, b = spam_task(n_train=20, n_eval=10, seed=0), spam_task(n_train=20, n_eval=10, seed=0)
    assert a.train == b.train and a.eval == b.eval  # deterministic
    assert [e.label for e in a.train].count(1) == 10 and [e.label for e in a.eval].count(1) == 10
    train_texts = {e.prompt[1]["content"] for e in a.train}
    assert not train_texts & {e.prompt[1]["content"] for e in a.eval}
    assert all(e.answer == a.labels[e.label] for e in a.train + a.eval)
    assert spam_task(n_train=20, n_eval=10, seed=1).train != a.train
    with pytest.raises(ValueError, match="even"):
        spam_task(n_train=3)
    with pytest.raises(ValueError, match="fewer"):
        spam_task(n_train=20, n_eval=10_000)


def test_few_shot_puts_solved_examples_first():
    task = spam_task(n_train=20, n_eval=4)
    shots = few_shot(task, 2)
    e = shots[0]
    assert [m["role"] for m in e.prompt] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert {e.prompt[2]["content"], e.prompt[4]["content"]} == {"spam", "ham"}
    assert e.prompt[-1] == task.eval[0].prompt[-1] and e.answer == task.eval[0].answer


def test_messages_are_cut_to_max_tokens(chat_tok):
    task = spam_task(n_train=40, n_eval=20, tokenizer=chat_tok, max_message_tokens=10)
    lengths = [len(chat_tok(e.prompt[1]["content"], add_special_tokens=False)["input_ids"]) for e in task.train]
    assert max(lengths) <= 10 + 3  # the cut text plus " ..."


def test_label_accuracy_is_the_argmax_of_one_forward_per_label(chat_tok):
    from lmbook.tune.evaluate import label_accuracy

    model = tiny_llama(len(chat_tok)).eval()
    task = spam_task(n_train=20, n_eval=6, tokenizer=chat_tok, max_message_tokens=12)
    labels = ["ham", "spam", "not spam at all"]  # one, two and several tokens
    want = torch.empty(len(task.eval), len(labels))
    with torch.no_grad():
        for i, e in enumerate(task.eval):
            p = render(chat_tok, e.prompt)
            for k, lab in enumerate(labels):
                li = chat_tok(lab, add_special_tokens=False)["input_ids"]
                logp = model(input_ids=torch.tensor([p + li])).logits[0].log_softmax(-1)  # (T, V)
                want[i, k] = logp[len(p) - 1:-1].gather(-1, torch.tensor(li)[:, None]).sum()
    gold = torch.tensor([e.label for e in task.eval])
    expected = (want.argmax(-1) == gold).float().mean().item()
    got = label_accuracy(model, chat_tok, task.eval, labels, batch_size=4, progress=False)  # padded batches
    assert got == pytest.approx(expected)
    # the same examples with the gold label moved: the accuracy follows the scores, not a constant
    moved = [type(e)(e.prompt, e.answer, (e.label + 1) % 3) for e in task.eval]
    expected_moved = (want.argmax(-1) == (gold + 1) % 3).float().mean().item()
    assert label_accuracy(model, chat_tok, moved, labels, batch_size=4, progress=False) == pytest.approx(expected_moved)


def test_precision_is_bf16_only_on_a_cuda_gpu_that_has_it(monkeypatch):
    from lmbook.tune.model import trainer_precision

    assert trainer_precision() == {"bf16": False, "fp16": False}  # this CPU machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert trainer_precision() == {"bf16": True, "fp16": False}   # an A100/H100
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert trainer_precision() == {"bf16": False, "fp16": False}  # a T4: float32, not fp16


def test_trained_model_comes_back_without_bf16_autocast(chat_tok, tmp_path):
    """A run in bfloat16 autocast (as on a GPU) must hand back a model whose forward is plain
    float32: the logits equal the class's own forward, not a bfloat16-rounded copy."""
    from transformers import LlamaForCausalLM

    from lmbook.tune.sft import train_sft

    task = spam_task(n_train=8, n_eval=2, tokenizer=chat_tok, max_message_tokens=8)
    model = tiny_llama(len(chat_tok))
    res = train_sft(model, chat_tok, task.train, steps=1, batch_size=4, lr=1e-3, save=False,
                    progress=False, output_dir=str(tmp_path), bf16=True)  # CPU autocast, like a GPU run
    tuned = res.trainer.model
    ids = torch.tensor([render(chat_tok, task.eval[0].prompt)])
    with torch.no_grad():
        got = tuned(input_ids=ids).logits
        plain = LlamaForCausalLM.forward(tuned, input_ids=ids).logits
    assert got.dtype == torch.float32
    assert torch.equal(got, plain)
    assert not tuned.training
