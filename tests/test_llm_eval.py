"""lmbook.llm_eval: batched greedy answers with their confidence, label scoring, answer matching
and the chrF / ROUGE wrappers. Generation is checked on a tiny random Llama with the packaged
SmolLM2 tokenizer (batched = one at a time, scores = a plain forward pass), and once on the real
model."""
from __future__ import annotations

import math

import pytest
import sacrebleu
import torch
import transformers
from rouge_score import rouge_scorer

from lmbook import llm_eval, pretrained


@pytest.fixture(scope="module")
def real():
    return pretrained.load_llm(verbose=False)


@pytest.fixture(scope="module")
def tiny(real):
    tok = real.tokenizer
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=512, tie_word_embeddings=False,
                                   bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model = transformers.LlamaForCausalLM(cfg).eval()
    return tok, model


PROMPTS = ["Hi", "What is the capital of France? Answer in one sentence.",
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}],
           "Tell me something about the history of the printing press in Europe, please."]


def _forward_logprobs(model, tok, chat, answer_ids):
    """Log-probability of each answer token after the chat prompt, from one unpadded forward pass."""
    ids = llm_eval.prompt_ids(tok, chat)
    x = torch.tensor([ids + answer_ids])
    with torch.no_grad():
        logp = model(input_ids=x).logits.log_softmax(-1)[0]
    return torch.stack([logp[len(ids) - 1 + t, a] for t, a in enumerate(answer_ids)])


def test_batched_generation_equals_one_at_a_time_and_keeps_the_order(tiny):
    tok, model = tiny
    batched = llm_eval.generate_batched(model, tok, PROMPTS, max_new_tokens=6, batch_size=3)
    single = [llm_eval.generate_batched(model, tok, [p], max_new_tokens=6)[0] for p in PROMPTS]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.tokens for g in batched] == [g.tokens for g in single]
    for b, s in zip(batched, single):
        assert b.tokens <= 6
        assert b.mean_logprob == pytest.approx(s.mean_logprob, abs=1e-4)
    assert len({g.text for g in batched}) > 1  # different prompts, different outputs: order matters


def test_mean_logprob_is_the_mean_log_probability_of_the_chosen_tokens(tiny):
    tok, model = tiny
    chat = [{"role": "user", "content": PROMPTS[1]}]
    g = llm_eval.generate_batched(model, tok, [chat], max_new_tokens=5)[0]
    b = pretrained.encode_chat(tok, chat, max_new_tokens=5)
    seq = model.generate(**b, max_new_tokens=5, do_sample=False, pad_token_id=2)[0, b["input_ids"].shape[1]:]
    answer = seq.tolist()[:g.tokens]
    ref = _forward_logprobs(model, tok, chat, answer)
    assert g.mean_logprob == pytest.approx(ref.mean().item(), abs=1e-4)
    assert 0 < g.confidence < 1 and g.confidence == pytest.approx(math.exp(g.mean_logprob))
    # greedy: every chosen token is the most probable one, so its log-probability is the row's max
    assert (ref <= 0).all()


def test_system_message_is_added_only_where_missing(tiny):
    tok, model = tiny
    with_sys = llm_eval.generate_batched(model, tok, ["Hi"], max_new_tokens=3, system="Be brief.")
    explicit = llm_eval.generate_batched(
        model, tok, [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]],
        max_new_tokens=3)
    assert with_sys[0].text == explicit[0].text
    assert with_sys[0].mean_logprob == pytest.approx(explicit[0].mean_logprob, abs=1e-5)


def test_generate_batched_rejects_bad_input(tiny):
    tok, model = tiny
    with pytest.raises(TypeError, match="wrap it"):
        llm_eval.generate_batched(model, tok, "Hi")
    with pytest.raises(ValueError, match="no prompts"):
        llm_eval.generate_batched(model, tok, [])
    with pytest.raises(ValueError, match="batch_size"):
        llm_eval.generate_batched(model, tok, ["Hi"], batch_size=0)
    with pytest.raises(ValueError, match="role"):
        llm_eval.generate_batched(model, tok, [[{"text": "Hi"}]])
    with pytest.raises(ValueError, match="context window"):
        llm_eval.generate_batched(model, tok, ["word " * 9000], max_new_tokens=1)


def test_label_log_probs_equal_a_forward_pass_for_multi_token_labels(tiny):
    tok, model = tiny
    labels = ["positive", "negative review"]  # different token counts
    assert len(tok("negative review", add_special_tokens=False)["input_ids"]) > 1
    scores = llm_eval.label_log_probs(model, tok, PROMPTS, labels, batch_size=3)
    assert scores.shape == (len(PROMPTS), 2)
    for n, p in enumerate(PROMPTS):
        chat = llm_eval._chats([p])[0]
        for j, lab in enumerate(labels):
            ids = tok(lab, add_special_tokens=False)["input_ids"]
            assert scores[n, j].item() == pytest.approx(_forward_logprobs(model, tok, chat, ids).sum().item(),
                                                        abs=1e-4)
    single = ["positive", "negative"]  # one token each: scored from one forward pass per prompt
    assert all(len(tok(w, add_special_tokens=False)["input_ids"]) == 1 for w in single)
    fast = llm_eval.label_log_probs(model, tok, PROMPTS, single, batch_size=3)
    for n, p in enumerate(PROMPTS):
        chat = llm_eval._chats([p])[0]
        for j, lab in enumerate(single):
            ids = tok(lab, add_special_tokens=False)["input_ids"]
            assert fast[n, j].item() == pytest.approx(_forward_logprobs(model, tok, chat, ids).item(), abs=1e-4)
    with pytest.raises(ValueError, match="at least two"):
        llm_eval.label_log_probs(model, tok, PROMPTS, ["positive"])


def test_answer_matching_follows_squad_normalisation():
    assert llm_eval.normalize_answer("The  Andromeda Galaxy!") == "andromeda galaxy"
    assert llm_eval.exact_match("the Andromeda galaxy.", "Andromeda Galaxy")
    assert not llm_eval.exact_match("Andromeda", "Andromeda Galaxy")
    assert llm_eval.contains_answer("It was in 1963, I think.", "1963")
    assert not llm_eval.contains_answer("1963", "1")                 # word-bounded
    assert not llm_eval.contains_answer("Galaxy of Andromeda", "Andromeda Galaxy")  # contiguous, in order
    assert llm_eval.token_f1("Richard Nixon was president", "Richard Nixon") == pytest.approx(2 / 3)
    assert llm_eval.token_f1("Sputnik", "Sputnik 1") == pytest.approx(2 / 3)
    assert llm_eval.token_f1("Paris", "Rome") == 0.0
    with pytest.raises(ValueError, match="empty"):
        llm_eval.contains_answer("anything", "The")


def test_chrf_and_rouge_are_the_libraries_numbers():
    hyps = ["the cat sat on the mat", "a dog barked loudly", "hello"]
    refs = ["the cat is on the mat", "the dog barked", "goodbye"]
    assert llm_eval.chrf(hyps, refs) == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert llm_eval.chrf(refs, refs) == pytest.approx(100.0)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    want = sum(scorer.score(r, h)["rouge1"].fmeasure for h, r in zip(hyps, refs)) / 3
    got = llm_eval.rouge(hyps, refs, types=("rouge1", "rougeL"))
    assert got["rouge1"] == pytest.approx(want) and set(got) == {"rouge1", "rougeL"}
    assert llm_eval.rouge(refs, refs) == pytest.approx({"rouge1": 1.0, "rouge2": 2 / 3, "rougeL": 1.0})
    # ("goodbye" has no word pair, so its ROUGE-2 is 0 even against itself)
    assert llm_eval.rouge(["cats sitting"], ["cat sits"])["rouge1"] == pytest.approx(1.0)  # stemmed
    with pytest.raises(ValueError, match="one reference per item"):
        llm_eval.chrf(hyps, refs[:2])
    with pytest.raises(TypeError, match="lists"):
        llm_eval.rouge("a", "a")
    with pytest.raises(ValueError, match="no items"):
        llm_eval.chrf([], [])


@pytest.mark.slow
def test_the_real_model_answers_and_ends_its_turn(real):
    tok, model = real
    q = "What is the capital of France? Answer in one sentence."
    g = llm_eval.generate_batched(model, tok, [q, "Hi"], max_new_tokens=24, batch_size=2)[0]
    assert llm_eval.contains_answer(g.text, "Paris"), g.text
    assert g.finished and g.tokens < 24
    assert g.confidence > 0.5  # a fact it knows, said with high probability
    scores = llm_eval.label_log_probs(model, tok, [q], ["The capital of France is Paris.",
                                                        "The capital of France is Rome."])
    assert scores[0, 0] > scores[0, 1]
    assert scores[0, 0].item() == pytest.approx(g.mean_logprob * g.tokens, abs=1e-3)  # its own answer
