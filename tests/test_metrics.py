import numpy as np
import pytest
import torch
import torch.nn as nn

from lmbook.metrics import (Predictions, accuracy, classification_report, confusion_matrix,
                            most_confident_mistakes, precision_recall_f1, predict)

# 10 examples, 3 classes; counted by hand:
#   true 0: predicted 0,0,1        -> TP0=2, FN0=1
#   true 1: predicted 1,1,1,0      -> TP1=3, FN1=1
#   true 2: predicted 2,1,0        -> TP2=1, FN2=2
Y_TRUE = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 1, 1, 1, 1, 0, 2, 1, 0]


def test_confusion_matrix_counts_true_rows_predicted_columns():
    cm = confusion_matrix(Y_TRUE, Y_PRED)
    assert cm.tolist() == [[2, 1, 0],
                           [1, 3, 0],
                           [1, 1, 1]]
    assert cm.sum() == len(Y_TRUE)
    assert confusion_matrix([1, 1], [1, 1], num_classes=3).shape == (3, 3)


def test_accuracy_and_inputs_of_any_kind():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(6 / 10)
    assert accuracy(torch.tensor(Y_TRUE), np.array(Y_PRED)) == pytest.approx(0.6)
    assert accuracy([1, 0], [1, 0]) == 1.0


def test_precision_recall_f1_per_class_match_the_definitions():
    per = precision_recall_f1(Y_TRUE, Y_PRED)
    # precision = TP / predicted: column sums 4, 5, 1
    np.testing.assert_allclose(per["precision"], [2 / 4, 3 / 5, 1 / 1])
    np.testing.assert_allclose(per["recall"], [2 / 3, 3 / 4, 1 / 3])
    p, r = per["precision"], per["recall"]
    np.testing.assert_allclose(per["f1"], 2 * p * r / (p + r))
    assert per["support"].tolist() == [3, 4, 3]


def test_macro_and_weighted_averages():
    per = precision_recall_f1(Y_TRUE, Y_PRED)
    macro = precision_recall_f1(Y_TRUE, Y_PRED, average="macro")
    weighted = precision_recall_f1(Y_TRUE, Y_PRED, average="weighted")
    assert macro["f1"] == pytest.approx(per["f1"].mean())
    assert weighted["recall"] == pytest.approx(accuracy(Y_TRUE, Y_PRED))  # weighted recall = accuracy
    assert weighted["f1"] == pytest.approx((per["f1"] * [3, 4, 3]).sum() / 10)
    assert macro["support"] == 10
    with pytest.raises(ValueError, match="unknown average 'micro'"):
        precision_recall_f1(Y_TRUE, Y_PRED, average="micro")


def test_majority_classifier_has_high_accuracy_but_zero_minority_scores():
    y = [0] * 9 + [1]
    always_0 = [0] * 10
    assert accuracy(y, always_0) == pytest.approx(0.9)
    per = precision_recall_f1(y, always_0)
    # class 1 is never predicted: precision 0/0 is reported as 0, and so is F1
    assert per["precision"][1] == 0.0 and per["recall"][1] == 0.0 and per["f1"][1] == 0.0
    assert precision_recall_f1(y, always_0, average="macro")["f1"] < 0.5


def test_bad_labels_get_clear_errors():
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="argmax"):
        accuracy([0, 1], torch.randn(2, 2))
    with pytest.raises(ValueError, match="negative"):
        confusion_matrix([0, -1], [0, 0])
    with pytest.raises(ValueError, match="class id 2"):
        confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(TypeError, match="integer"):
        accuracy([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])


def test_classification_report_lists_every_class_and_the_averages():
    text = classification_report(Y_TRUE, Y_PRED, names=["neg", "neu", "pos"])
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    assert lines[0] == ["precision", "recall", "f1", "support"]
    rows = {ln[0]: ln[1:] for ln in lines[1:4]}
    assert rows["neu"] == ["0.600", "0.750", f"{2 * 0.6 * 0.75 / 1.35:.3f}", "4"]
    assert ["accuracy", "0.600", "10"] in lines
    assert any(ln[:2] == ["macro", "avg"] for ln in lines)
    # a class named but absent from the data still gets a row
    two = classification_report([0, 0], [0, 0], names=["a", "b"])
    assert any(ln.split()[0] == "b" for ln in two.splitlines() if ln.strip())


class Toy(nn.Module):
    """Logits from the sum of the input ids; records the keyword arguments it was called with."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -1.0]))
        self.calls = []

    def forward(self, input_ids, attention_mask=None):
        self.calls.append(self.training)
        s = (input_ids * attention_mask).sum(-1, keepdim=True).float()   # (B, 1)
        return {"logits": s * self.w}                                    # (B, 2)


def collate(examples):
    n = max(len(e["ids"]) for e in examples)
    ids = torch.zeros(len(examples), n, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(examples):
        ids[i, :len(e["ids"])] = torch.tensor(e["ids"])
        mask[i, :len(e["ids"])] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if "label" in examples[0]:
        batch["labels"] = torch.tensor([e["label"] for e in examples])
    return batch


DATA = [{"ids": [1, 2], "label": 0}, {"ids": [-5], "label": 1}, {"ids": [3], "label": 1},
        {"ids": [-1, -1, -1], "label": 1}, {"ids": [2], "label": 0}]


def test_predict_keeps_order_labels_and_restores_train_mode():
    model = Toy().train()
    pred = predict(model, DATA, collate, batch_size=2)
    assert len(pred) == 5 and pred.logits.shape == (5, 2)
    assert pred.labels.tolist() == [0, 1, 1, 1, 0]
    assert pred.preds.tolist() == [0, 1, 0, 1, 0]        # positive sum -> class 0
    assert pred.accuracy == pytest.approx(4 / 5)
    assert torch.allclose(pred.probs.sum(-1), torch.ones(5))
    assert model.calls == [False, False, False]          # eval mode while predicting
    assert model.training                                # and restored
    # the same logits whatever the batch size
    assert torch.allclose(predict(model, DATA, collate, batch_size=5).logits, pred.logits)


def test_predict_without_labels_and_with_bad_models():
    pred = predict(Toy(), [{"ids": [1]}, {"ids": [-2]}], collate)
    assert pred.labels is None and pred.preds.tolist() == [0, 1]
    with pytest.raises(ValueError, match="no labels"):
        pred.accuracy

    class NoLogits(Toy):
        def forward(self, input_ids, attention_mask=None):
            return {"loss": torch.tensor(0.0)}

    with pytest.raises(ValueError, match="no logits"):
        predict(NoLogits(), DATA, collate)
    with pytest.raises(ValueError, match="empty"):
        predict(Toy(), [], collate)


def test_most_confident_mistakes_are_wrong_and_sorted():
    logits = torch.tensor([[3.0, 0.0],    # pred 0, label 1: wrong, confident
                           [0.2, 0.0],    # pred 0, label 1: wrong, unsure
                           [0.0, 5.0],    # pred 1, label 1: right
                           [0.0, 4.0],    # pred 1, label 0: wrong, the most confident mistake
                           [1.0, 0.0]])   # pred 0, label 0: right
    pred = Predictions(logits, torch.tensor([1, 1, 1, 0, 0]))
    assert most_confident_mistakes(pred, k=None).tolist() == [3, 0, 1]
    assert most_confident_mistakes(pred, k=2).tolist() == [3, 0]


def test_predict_on_a_real_bert_classifier_matches_a_direct_call():
    from lmbook.data import ClassificationCollator
    from transformers import BertTokenizerFast

    from lmbook.models import BertConfig, BertForSequenceClassification
    from lmbook.pretrained import packaged_bert_dir

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    model = BertForSequenceClassification(cfg, num_labels=2)
    tok = BertTokenizerFast.from_pretrained(packaged_bert_dir())
    texts = ["a good film", "a tediously long and very bad movie", "fine"]
    data = [{"text": t, "label": i % 2} for i, t in enumerate(texts)]
    pred = predict(model, data, ClassificationCollator(tok), batch_size=2)
    model.eval()
    with torch.no_grad():
        for i, t in enumerate(texts):      # one at a time, no padding
            alone = model(**tok([t], return_tensors="pt")).logits[0]
            assert torch.allclose(pred.logits[i], alone, atol=1e-5)
