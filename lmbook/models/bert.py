"""A BERT-style encoder (Devlin et al. 2019) and its heads, with the structure and parameter names
of transformers' ``modeling_bert.py`` so that weights move across by name (``lmbook.models.hf``).

    ids -> word + position + token-type embeddings -> LayerNorm -> dropout
        -> L x post-LN layer [h = LN(h + attn(h)); h = LN(h + FFN(h))]       (last_hidden_state)
    pooler:  tanh(W h_[CLS] + b)                                           (pooler_output)
    MLM:     LN(gelu(W h + b)) @ word_embeddings^T + bias                  (tied decoder)

Shapes: B batch, T positions, C = hidden_size, H = num_attention_heads, V = vocab_size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.attention import attention_weights, padding_mask, scaled_dot_product_attention
from lmbook.models.common import (ModelOutput, check_ids, check_labels, count_parameters,
                                  values_readable)


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"BertConfig.{name} must be a positive integer, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id={self.pad_token_id} is outside the vocabulary [0, {self.vocab_size})")


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.register_buffer("position_ids", torch.arange(config.max_position_embeddings), persistent=False)

    def forward(self, input_ids, token_type_ids):  # (B, T) -> (B, T, C)
        T = input_ids.shape[1]
        x = (self.word_embeddings(input_ids) + self.position_embeddings(self.position_ids[:T])
             + self.token_type_embeddings(token_type_ids))
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head self-attention; ``query``/``key``/``value`` hold W^Q, W^K, W^V of all heads."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob
        self.fast = True  # False: the spelled-out formula instead of torch's SDPA kernel

    def split_heads(self, x):  # (B, T, C) -> (B, H, T, d)
        B, T, _ = x.shape
        return x.view(B, T, self.num_attention_heads, self.attention_head_size).transpose(1, 2)

    def forward(self, h, mask=None, output_attentions=False):
        q, k, v = self.split_heads(self.query(h)), self.split_heads(self.key(h)), self.split_heads(self.value(h))
        p = self.dropout_p if self.training else 0.0
        weights = None
        if output_attentions:
            weights = attention_weights(q, k, mask)  # (B, H, T, T)
            y = F.dropout(weights, p) @ v if p else weights @ v
        else:
            y = scaled_dot_product_attention(q, k, v, mask, dropout_p=p, fast=self.fast)  # (B, H, T, d)
        B, H, T, d = y.shape
        return y.transpose(1, 2).reshape(B, T, H * d), weights  # (B, T, C)


class BertSelfOutput(nn.Module):  # W^O, dropout, residual, LayerNorm (post-LN)
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, y, h):
        return self.LayerNorm(h + self.dropout(self.dense(y)))


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, h, mask=None, output_attentions=False):
        y, weights = self.self(h, mask, output_attentions)
        return self.output(y, h), weights


class BertIntermediate(nn.Module):  # first FFN layer with exact (erf) GELU: (B, T, C) -> (B, T, 4C)
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, h):
        return F.gelu(self.dense(h))


class BertOutput(nn.Module):  # second FFN layer, dropout, residual, LayerNorm
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, f, h):
        return self.LayerNorm(h + self.dropout(self.dense(f)))


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, h, mask=None, output_attentions=False):  # (B, T, C) -> (B, T, C)
        h, weights = self.attention(h, mask, output_attentions)
        return self.output(self.intermediate(h), h), weights


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, h, mask=None, output_attentions=False, output_hidden_states=False):
        """h (B, T, C) embeddings -> (B, T, C), [inputs and each layer's output], [(B, H, T, T) weights]"""
        hidden_states = [h] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self.layer:
            h, weights = layer(h, mask, output_attentions)
            if output_hidden_states:
                hidden_states.append(h)
            if output_attentions:
                attentions.append(weights)
        return h, hidden_states, attentions


class BertPooler(nn.Module):  # tanh(W h_[CLS] + b): (B, T, C) -> (B, C)
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, h):
        return self.activation(self.dense(h[:, 0]))


class BertPreTrainedModel(nn.Module):
    """Shared initialisation (BERT's: N(0, 0.02), zero biases, padding row zero) and helpers."""

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """All parameters (tied matrices once); ``non_embedding=True`` leaves out the embeddings."""
        base = self if isinstance(self, BertModel) else self.bert
        return count_parameters(self, exclude=(base.embeddings,) if non_embedding else ())


class BertModel(BertPreTrainedModel):
    """The encoder. ``model(input_ids, attention_mask=None, token_type_ids=None)`` ->
    ``ModelOutput(last_hidden_state (B, T, C), pooler_output (B, C) or None)``."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.apply(self._init_weights)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_attentions=False, output_hidden_states=False):
        """input_ids (B, T); attention_mask (B, T) 1 = token, 0 = padding; token_type_ids (B, T)
        segment A = 0, B = 1. ``labels`` is refused: the bare encoder has no loss."""
        if labels is not None:
            raise ValueError("BertModel has no head and computes no loss: use BertForMaskedLM or "
                             "BertForSequenceClassification to train with labels")
        cfg = self.config
        check_ids(input_ids, cfg.vocab_size, cfg.max_position_embeddings, len_name="max_position_embeddings")
        B, T = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        else:
            check_ids(token_type_ids, cfg.type_vocab_size, cfg.max_position_embeddings, name="token_type_ids",
                      len_name="max_position_embeddings")
            if token_type_ids.shape != input_ids.shape:
                raise ValueError(f"token_type_ids must have the shape of input_ids {(B, T)}, "
                                 f"got {tuple(token_type_ids.shape)}")
        mask = None
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (B, T):
                raise ValueError(f"attention_mask must have the shape of input_ids {(B, T)} "
                                 f"(1 = token, 0 = padding), got {tuple(attention_mask.shape)}")
            # all ones (no padding): no mask, the unmasked fast path; seen only where values_readable
            if not values_readable(attention_mask) or not bool(attention_mask.all()):
                mask = padding_mask(attention_mask)  # (B, 1, 1, T): no query attends to padding
        h = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        h, hidden_states, attentions = self.encoder(h, mask, output_attentions, output_hidden_states)
        pooled = self.pooler(h) if self.pooler is not None else None
        return ModelOutput(last_hidden_state=h, pooler_output=pooled, hidden_states=hidden_states,
                           attentions=attentions)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h):
        return self.LayerNorm(F.gelu(self.dense(h)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)  # tied to word embeddings
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, h):  # (B, T, C) -> (B, T, V)
        return self.decoder(self.transform(h)) + self.bias


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, h):
        return self.predictions(h)


class BertForMaskedLM(BertPreTrainedModel):
    """Masked language model. ``labels`` (B, T): the original token where a position was masked
    for prediction, -100 everywhere else. -> ``ModelOutput(logits (B, T, V), loss)``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.apply(self._init_weights)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tying

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_attentions=False, output_hidden_states=False):
        out = self.bert(input_ids, attention_mask, token_type_ids, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states)
        out.logits = self.cls(out.last_hidden_state)  # (B, T, V)
        if labels is not None:
            B, T = input_ids.shape
            check_labels(labels, (B, T), "the token to predict at masked positions, -100 elsewhere",
                         self.config.vocab_size)
            out.loss = F.cross_entropy(out.logits.view(B * T, -1), labels.reshape(B * T), ignore_index=-100)
        return out


class BertForSequenceClassification(BertPreTrainedModel):
    """Classifier on the pooled [CLS] vector. ``labels`` (B,) class ids in [0, num_labels).
    -> ``ModelOutput(logits (B, num_labels), loss)``."""

    def __init__(self, config: BertConfig, num_labels: int = 2):
        super().__init__()
        if int(num_labels) < 2:
            raise ValueError(f"num_labels must be at least 2 for classification, got {num_labels}")
        self.config, self.num_labels = config, int(num_labels)
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.apply(self._init_weights)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_attentions=False, output_hidden_states=False):
        out = self.bert(input_ids, attention_mask, token_type_ids, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states)
        out.logits = self.classifier(self.dropout(out.pooler_output))  # (B, num_labels)
        if labels is not None:
            check_labels(labels, (input_ids.shape[0],), "one class id per sequence", self.num_labels,
                         ignore_index=None)
            out.loss = F.cross_entropy(out.logits, labels)
        return out
