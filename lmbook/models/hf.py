"""Moving weights between lmbook models and Hugging Face transformers, so that a model trained in
the book can be saved with ``save_pretrained`` and used anywhere in the HF ecosystem, and a
pretrained HF model can be read with the book's code.

    GPT                           <-> transformers.GPT2LMHeadModel
    BertModel                     <-> transformers.BertModel
    BertForMaskedLM               <-> transformers.BertForMaskedLM
    BertForSequenceClassification <-> transformers.BertForSequenceClassification
    Llama                         <-> transformers.LlamaForCausalLM

``to_hf(model)`` and ``from_hf(hf_model)`` pick the right pair. The BERT classes share HF's
parameter names, and so does Llama, so their weights copy over one to one. GPT-2 stores its projections in a
``Conv1D`` whose weight is (in, out), the transpose of ``nn.Linear``'s (out, in), so those four
matrices per block are transposed on the way.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lmbook.models.bert import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel
from lmbook.models.gpt import GPT, GPTConfig
from lmbook.models.llama import Llama, LlamaConfig, RotaryEmbedding

_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _place_like(target: nn.Module, source: nn.Module) -> nn.Module:
    p = next(source.parameters())
    target.to(device=p.device, dtype=p.dtype)
    return target.train(source.training)


def _load(target: nn.Module, state: dict, what: str) -> None:
    missing, unexpected = target.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"cannot convert {what}: weights missing {missing[:5]}, unexpected {unexpected[:5]}")


# --------------------------------------------------------------------------------------------
# GPT <-> GPT2LMHeadModel
def gpt_to_hf(model: GPT):
    """lmbook ``GPT`` -> ``transformers.GPT2LMHeadModel`` with the same weights and outputs."""
    import transformers

    c = model.config
    special = 50256 if c.vocab_size > 50256 else None  # GPT-2's <|endoftext|> when it exists
    hf_config = transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
        n_head=c.n_head, n_inner=None, activation_function="gelu_new", layer_norm_epsilon=1e-5,
        resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout,
        bos_token_id=special, eos_token_id=special, tie_word_embeddings=True)
    hf = transformers.GPT2LMHeadModel(hf_config)
    state = {}
    for name, t in model.state_dict().items():
        state[name] = t.t() if name.endswith(_CONV1D) else t
    # GPT(bias=False) has no biases: GPT-2 always has them, and zeros compute the same function
    for name, t in hf.state_dict().items():
        if name not in state and name.endswith("bias") and not name.endswith(".attn.bias"):
            state[name] = torch.zeros_like(t)
    _load(hf, state, "GPT to GPT2LMHeadModel")
    return _place_like(hf, model)


def gpt_from_hf(hf_model) -> GPT:
    """``transformers.GPT2LMHeadModel`` -> lmbook ``GPT`` with the same weights and outputs."""
    h = hf_model.config
    if h.model_type != "gpt2":
        raise TypeError(f"gpt_from_hf expects a GPT2LMHeadModel, got model_type {h.model_type!r}")
    if h.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"lmbook's GPT uses GPT-2's tanh GELU; this model uses {h.activation_function!r}")
    if h.n_inner not in (None, 4 * h.n_embd):
        raise ValueError(f"lmbook's GPT has an MLP of width 4*n_embd={4 * h.n_embd}; this model has n_inner={h.n_inner}")
    if abs(h.layer_norm_epsilon - 1e-5) > 1e-12:
        raise ValueError(f"lmbook's GPT uses LayerNorm eps 1e-5; this model uses {h.layer_norm_epsilon}")
    if getattr(h, "scale_attn_by_inverse_layer_idx", False) or not getattr(h, "scale_attn_weights", True):
        raise ValueError("lmbook's GPT scales attention scores by 1/sqrt(d_k) only, as GPT-2 does by default")
    sd = hf_model.state_dict()
    if not torch.equal(sd["lm_head.weight"], sd["transformer.wte.weight"]):
        raise ValueError("lmbook's GPT ties lm_head to the token embeddings; this model's lm_head differs")
    config = GPTConfig(vocab_size=h.vocab_size, block_size=h.n_positions, n_layer=h.n_layer, n_head=h.n_head,
                       n_embd=h.n_embd, dropout=h.resid_pdrop, bias=True)
    model = GPT(config)
    state = {name: (t.t() if name.endswith(_CONV1D) else t) for name, t in sd.items()
             if not name.endswith((".attn.bias", ".attn.masked_bias"))}  # old versions' mask buffers
    _load(model, state, "GPT2LMHeadModel to GPT")
    return _place_like(model, hf_model)


# --------------------------------------------------------------------------------------------
# BERT <-> transformers' BERT classes (identical names)
_BERT_PAIRS = {BertModel: "BertModel", BertForMaskedLM: "BertForMaskedLM",
               BertForSequenceClassification: "BertForSequenceClassification"}


def bert_to_hf(model, attn_implementation: str | None = None):
    """lmbook ``BertModel`` / ``BertForMaskedLM`` / ``BertForSequenceClassification`` -> the
    transformers class of the same name, same weights and outputs. ``attn_implementation="eager"``
    lets the HF model return attention maps."""
    import transformers

    if type(model) not in _BERT_PAIRS:
        raise TypeError(f"bert_to_hf takes one of {', '.join(_BERT_PAIRS[k] for k in _BERT_PAIRS)}, "
                        f"got {type(model).__name__}")
    c = model.config
    kwargs = dict(vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
                  num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
                  hidden_act="gelu", hidden_dropout_prob=c.hidden_dropout_prob,
                  attention_probs_dropout_prob=c.attention_probs_dropout_prob,
                  max_position_embeddings=c.max_position_embeddings, type_vocab_size=c.type_vocab_size,
                  layer_norm_eps=c.layer_norm_eps, pad_token_id=c.pad_token_id, tie_word_embeddings=True)
    if isinstance(model, BertForSequenceClassification):
        kwargs["num_labels"] = model.num_labels
    hf_config = transformers.BertConfig(**kwargs)
    if attn_implementation is not None:
        hf_config._attn_implementation = attn_implementation
    cls = getattr(transformers, _BERT_PAIRS[type(model)])
    hf = cls(hf_config, add_pooling_layer=model.pooler is not None) if cls is transformers.BertModel else cls(hf_config)
    state = dict(model.state_dict())
    if isinstance(model, BertForMaskedLM):  # HF keeps the output bias under two names
        state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
    _load(hf, state, f"{type(model).__name__} to transformers")
    return _place_like(hf, model)


def bert_from_hf(hf_model):
    """transformers ``BertModel`` / ``BertForMaskedLM`` / ``BertForSequenceClassification`` ->
    the lmbook class of the same name, same weights and outputs."""
    h = hf_model.config
    name = type(hf_model).__name__
    ours = {v: k for k, v in _BERT_PAIRS.items()}.get(name)
    if ours is None or h.model_type != "bert":
        raise TypeError(f"bert_from_hf takes a transformers BertModel, BertForMaskedLM or "
                        f"BertForSequenceClassification, got {name}")
    if h.hidden_act != "gelu":
        raise ValueError(f"lmbook's BERT uses the exact GELU; this model uses hidden_act={h.hidden_act!r}")
    if getattr(h, "position_embedding_type", "absolute") != "absolute":
        raise ValueError("lmbook's BERT uses absolute learned positions; this model uses "
                         f"{h.position_embedding_type!r}")
    if getattr(h, "is_decoder", False) or getattr(h, "add_cross_attention", False):
        raise ValueError("lmbook's BERT is an encoder without cross-attention; this model is configured as a decoder")
    config = BertConfig(vocab_size=h.vocab_size, hidden_size=h.hidden_size, num_hidden_layers=h.num_hidden_layers,
                        num_attention_heads=h.num_attention_heads, intermediate_size=h.intermediate_size,
                        max_position_embeddings=h.max_position_embeddings, type_vocab_size=h.type_vocab_size,
                        hidden_dropout_prob=h.hidden_dropout_prob,
                        attention_probs_dropout_prob=h.attention_probs_dropout_prob,
                        layer_norm_eps=h.layer_norm_eps, pad_token_id=h.pad_token_id or 0)
    if ours is BertModel:
        model = BertModel(config, add_pooling_layer=hf_model.pooler is not None)
    elif ours is BertForSequenceClassification:
        if h.num_labels < 2 or getattr(h, "problem_type", None) not in (None, "single_label_classification"):
            raise ValueError("lmbook's BertForSequenceClassification does single-label classification with "
                             f"num_labels >= 2; this model has num_labels={h.num_labels}, problem_type={h.problem_type!r}")
        model = BertForSequenceClassification(config, num_labels=h.num_labels)
    else:
        model = BertForMaskedLM(config)
    sd = hf_model.state_dict()
    state = {k: v for k, v in sd.items() if not k.endswith(("position_ids", "token_type_ids"))}
    if ours is BertForMaskedLM:
        state.pop("cls.predictions.decoder.bias", None)
        if not torch.equal(sd["cls.predictions.decoder.weight"], sd["bert.embeddings.word_embeddings.weight"]):
            raise ValueError("lmbook's BertForMaskedLM ties the decoder to the word embeddings; this model's differs")
    _load(model, state, f"transformers {name} to lmbook")
    return _place_like(model, hf_model)


# --------------------------------------------------------------------------------------------
# Llama <-> LlamaForCausalLM (identical names)
def _rope_theta(h) -> float:
    rope = getattr(h, "rope_parameters", None) or getattr(h, "rope_scaling", None) or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise ValueError(f"lmbook's Llama uses plain rotary embeddings; this model uses rope_type {kind!r}")
    theta = rope.get("rope_theta", getattr(h, "rope_theta", None))
    if theta is None:
        raise ValueError("the config names no rope_theta")
    return float(theta)


def llama_to_hf(model: Llama):
    """lmbook ``Llama`` -> ``transformers.LlamaForCausalLM`` with the same weights and outputs."""
    import transformers

    c = model.config
    hf_config = transformers.LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, head_dim=c.head_dim,
        max_position_embeddings=c.max_position_embeddings, rms_norm_eps=c.rms_norm_eps,
        rope_theta=c.rope_theta, hidden_act="silu", attention_bias=False, mlp_bias=False,
        tie_word_embeddings=c.tie_word_embeddings)
    hf_config.rope_parameters = {"rope_type": "default", "rope_theta": c.rope_theta}  # transformers >= 5
    hf = transformers.LlamaForCausalLM(hf_config)
    _load(hf, dict(model.state_dict()), "Llama to LlamaForCausalLM")
    return _place_like(hf, model)


def llama_from_hf(hf_model) -> Llama:
    """``transformers.LlamaForCausalLM`` -> lmbook ``Llama`` with the same weights and outputs."""
    h = hf_model.config
    if h.model_type != "llama" or type(hf_model).__name__ != "LlamaForCausalLM":
        raise TypeError(f"llama_from_hf expects a LlamaForCausalLM, got {type(hf_model).__name__} "
                        f"(model_type {h.model_type!r})")
    if h.hidden_act != "silu":
        raise ValueError(f"lmbook's Llama uses SwiGLU (silu); this model uses hidden_act={h.hidden_act!r}")
    if getattr(h, "attention_bias", False) or getattr(h, "mlp_bias", False):
        raise ValueError("lmbook's Llama has no biases; this model has attention or MLP biases")
    head_dim = getattr(h, "head_dim", None) or h.hidden_size // h.num_attention_heads
    if head_dim * h.num_attention_heads != h.hidden_size:
        raise ValueError(f"lmbook's Llama has head size hidden_size / heads; this model has head_dim={head_dim}")
    if getattr(h, "pretraining_tp", 1) != 1:
        raise ValueError(f"lmbook's Llama does not split its projections; pretraining_tp={h.pretraining_tp}")
    config = LlamaConfig(vocab_size=h.vocab_size, hidden_size=h.hidden_size, intermediate_size=h.intermediate_size,
                         num_hidden_layers=h.num_hidden_layers, num_attention_heads=h.num_attention_heads,
                         num_key_value_heads=h.num_key_value_heads or h.num_attention_heads,
                         max_position_embeddings=h.max_position_embeddings, rms_norm_eps=h.rms_norm_eps,
                         rope_theta=_rope_theta(h), tie_word_embeddings=bool(h.tie_word_embeddings))
    sd = hf_model.state_dict()
    if config.tie_word_embeddings and "lm_head.weight" in sd and not torch.equal(
            sd["lm_head.weight"], sd["model.embed_tokens.weight"]):
        raise ValueError("the config ties lm_head to the token embeddings, but this model's lm_head differs")
    with torch.device("meta"):  # the skeleton only: random initial weights would be overwritten
        model = Llama(config)
    tied = config.tie_word_embeddings
    state = {k: v.detach().clone() for k, v in sd.items()
             if not k.endswith("rotary_emb.inv_freq") and not (tied and k == "lm_head.weight")}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if [k for k in missing if not (tied and k == "lm_head.weight")] or unexpected:
        raise ValueError(f"cannot convert LlamaForCausalLM to Llama: weights missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.rotary = RotaryEmbedding(config.head_dim, config.max_position_embeddings, config.rope_theta)
    return _place_like(model, hf_model)


# --------------------------------------------------------------------------------------------
def to_hf(model, **kwargs):
    """Any lmbook model that has an HF counterpart -> that transformers model (same weights)."""
    if isinstance(model, GPT):
        return gpt_to_hf(model)
    if isinstance(model, Llama):
        return llama_to_hf(model)
    if type(model) in _BERT_PAIRS:
        return bert_to_hf(model, **kwargs)
    raise TypeError(f"no Hugging Face counterpart for {type(model).__name__}: to_hf converts GPT, Llama, "
                    "BertModel, BertForMaskedLM and BertForSequenceClassification")


def from_hf(hf_model):
    """A transformers GPT2LMHeadModel / LlamaForCausalLM / BertModel / BertForMaskedLM /
    BertForSequenceClassification -> the lmbook model of the same kind (same weights)."""
    name = type(hf_model).__name__
    if name == "GPT2LMHeadModel":
        return gpt_from_hf(hf_model)
    if name == "LlamaForCausalLM":
        return llama_from_hf(hf_model)
    if name in _BERT_PAIRS.values():
        return bert_from_hf(hf_model)
    raise TypeError(f"from_hf converts GPT2LMHeadModel, LlamaForCausalLM, BertModel, BertForMaskedLM and "
                    f"BertForSequenceClassification, got {name}")


def save_pretrained(model, path, tokenizer=None) -> None:
    """Convert ``model`` with ``to_hf`` and write it (and ``tokenizer``, if given) with
    ``save_pretrained``: the folder loads with ``transformers.AutoModel*.from_pretrained(path)``."""
    to_hf(model).save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def load_pretrained(path):
    """Read a folder written by ``save_pretrained`` (or any GPT-2 / Llama / BERT checkpoint of
    those classes) back into the lmbook model of the same kind."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(path)
    names = getattr(config, "architectures", None) or []
    known = [n for n in names if n in ("GPT2LMHeadModel", "LlamaForCausalLM", *_BERT_PAIRS.values())]
    if not known:
        raise ValueError(f"{path}: architectures {names} has none of GPT2LMHeadModel, LlamaForCausalLM, "
                         "BertModel, BertForMaskedLM, BertForSequenceClassification")
    hf = getattr(transformers, known[0]).from_pretrained(path)
    return from_hf(hf)
