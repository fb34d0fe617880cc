"""The book's models, built on ``lmbook.attention``. Every ``forward`` takes keyword tensors
(``model(**batch)``) and returns a ``ModelOutput`` with ``.logits`` and ``.loss`` (None without
labels).

    GPT, GPTConfig                      decoder-only language model (GPT-2 architecture)
    Llama, LlamaConfig                  Llama-style decoder: RMSNorm, rotary, SwiGLU, grouped-query
    BertModel, BertForMaskedLM,         BERT-style encoder, masked-LM head, classifier head
    BertForSequenceClassification, BertConfig
    Transformer, TransformerConfig,     the encoder-decoder of "Attention Is All You Need"
    EncoderLayer, DecoderLayer
    to_hf, from_hf, save_pretrained,    conversion to and from Hugging Face transformers
    load_pretrained
    set_fast_attention(model, fast)     torch's fused attention kernel, or the spelled-out formula
"""
from lmbook.models.bert import (BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel)
from lmbook.models.common import ModelOutput, set_fast_attention
from lmbook.models.gpt import GPT, GPTConfig
from lmbook.models.hf import (bert_from_hf, bert_to_hf, from_hf, gpt_from_hf, gpt_to_hf, llama_from_hf,
                              llama_to_hf, load_pretrained, save_pretrained, to_hf)
from lmbook.models.llama import Llama, LlamaConfig
from lmbook.models.transformer import DecoderLayer, EncoderLayer, Transformer, TransformerConfig

__all__ = [
    "GPT", "GPTConfig", "Llama", "LlamaConfig",
    "BertConfig", "BertModel", "BertForMaskedLM", "BertForSequenceClassification",
    "Transformer", "TransformerConfig", "EncoderLayer", "DecoderLayer",
    "ModelOutput", "set_fast_attention",
    "to_hf", "from_hf", "gpt_to_hf", "gpt_from_hf", "bert_to_hf", "bert_from_hf", "llama_to_hf", "llama_from_hf",
    "save_pretrained", "load_pretrained",
]
