"""Classification metrics, written out (no scikit-learn), and ``predict``: run a classifier over a
data set and keep its logits.

    pred = predict(model, test_ds, collate_fn=ClassificationCollator(tokenizer))
    pred.accuracy, pred.probs, pred.preds, pred.labels
    confusion_matrix(pred.labels, pred.preds)               # rows: true class, columns: predicted
    print(classification_report(pred.labels, pred.preds, names=["neg", "pos"]))
    most_confident_mistakes(pred, k=10)                      # row indices, most confident first

Labels are integer class ids ``0..K-1`` given as a list, NumPy array or torch tensor. Per-class
numbers follow scikit-learn's definitions; a ratio whose denominator is 0 (a class never
predicted, or absent from ``y_true``) is reported as 0.0, as scikit-learn does by default.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["accuracy", "confusion_matrix", "precision_recall_f1", "classification_report",
           "Predictions", "predict", "most_confident_mistakes"]


# ------------------------------------------------------------------------------------------
# metrics from labels
def _ids(y, name: str) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be one class id per example (1-D), got shape {y.shape}; "
                         "for logits or probabilities take .argmax(-1) first")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integer class ids, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{name} has a negative class id ({y.min()}); ids must be 0..K-1")
    return y


def _pair(y_true, y_pred, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    t, p = _ids(y_true, "y_true"), _ids(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {len(t)} labels but y_pred has {len(p)}: one prediction per example")
    if len(t) == 0:
        raise ValueError("no examples: y_true and y_pred are empty")
    seen = int(max(t.max(), p.max())) + 1
    k = seen if num_classes is None else int(num_classes)
    if k < seen:
        raise ValueError(f"num_classes={num_classes} but the labels contain class id {seen - 1}")
    return t, p, k


def accuracy(y_true, y_pred) -> float:
    """Fraction of examples whose predicted class equals the true class."""
    t, p, _ = _pair(y_true, y_pred)
    return float((t == p).mean())


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """(K, K) int64 counts: entry ``[i, j]`` is the number of examples of true class ``i``
    predicted as class ``j`` (rows sum to each class's support, the diagonal is correct).
    ``K = num_classes``, else 1 + the largest id seen."""
    t, p, k = _pair(y_true, y_pred, num_classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def precision_recall_f1(y_true, y_pred, num_classes: int | None = None, average: str | None = None):
    """Precision, recall and F1 of every class (one-vs-rest), and the support.

    For class ``c``: precision = TP / (TP + FP) (of the examples predicted ``c``, the fraction that
    are ``c``), recall = TP / (TP + FN) (of the examples that are ``c``, the fraction found),
    F1 = their harmonic mean 2PR / (P + R); 0.0 where a denominator is 0.

    ``average=None``: a dict of arrays (one entry per class) "precision", "recall", "f1",
    "support". ``"macro"``: the plain mean over classes (every class counts the same, however
    rare); ``"weighted"``: the mean weighted by support. Both return a dict of floats (and the
    total "support")."""
    if average not in (None, "macro", "weighted"):
        raise ValueError(f"unknown average {average!r}: use None (per class), 'macro' or 'weighted'")
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(float)
    support = cm.sum(1)                       # true examples of each class
    predicted = cm.sum(0)                     # examples predicted as each class
    precision = _safe_ratio(tp, predicted)
    recall = _safe_ratio(tp, support)
    f1 = _safe_ratio(2 * precision * recall, precision + recall)
    if average is None:
        return {"precision": precision, "recall": recall, "f1": f1, "support": support}
    w = np.full(len(tp), 1.0 / len(tp)) if average == "macro" else support / support.sum()
    return {"precision": float(precision @ w), "recall": float(recall @ w), "f1": float(f1 @ w),
            "support": int(support.sum())}


def classification_report(y_true, y_pred, names=None, digits: int = 3) -> str:
    """A text table in scikit-learn's layout: precision, recall, F1 and support per class, then
    accuracy, the macro average and the support-weighted average. ``names``: one per class
    (default the class ids)."""
    k = None if names is None else len(names)
    per = precision_recall_f1(y_true, y_pred, k)
    k = len(per["support"])
    names = [str(i) for i in range(k)] if names is None else [str(n) for n in names]
    width = max(12, *(len(n) for n in names))
    col = max(9, digits + 3)
    head = f"{'':>{width}} " + "".join(f"{h:>{col}}" for h in ("precision", "recall", "f1", "support"))
    lines = [head, ""]
    for i, n in enumerate(names):
        lines.append(f"{n:>{width}} " + "".join(f"{per[m][i]:>{col}.{digits}f}"
                                               for m in ("precision", "recall", "f1"))
                     + f"{per['support'][i]:>{col}d}")
    total = int(per["support"].sum())
    lines.append("")
    lines.append(f"{'accuracy':>{width}} " + " " * (2 * col)
                 + f"{accuracy(y_true, y_pred):>{col}.{digits}f}{total:>{col}d}")
    for avg in ("macro", "weighted"):
        a = precision_recall_f1(y_true, y_pred, k, average=avg)
        lines.append(f"{avg + ' avg':>{width}} " + "".join(f"{a[m]:>{col}.{digits}f}"
                                                         for m in ("precision", "recall", "f1"))
                     + f"{total:>{col}d}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# running a classifier
@dataclass
class Predictions:
    """What :func:`predict` returns: ``logits`` (N, K) float32 on the CPU, in the order of the
    data, and the true ``labels`` (N,) when the batches had them (else None)."""
    logits: torch.Tensor
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.logits.shape[0]

    @property
    def probs(self) -> torch.Tensor:
        """Softmax of the logits: (N, K), rows sum to 1."""
        return self.logits.softmax(-1)

    @property
    def preds(self) -> torch.Tensor:
        """The highest-scoring class of each example: (N,)."""
        return self.logits.argmax(-1)

    @property
    def confidence(self) -> torch.Tensor:
        """The probability of the predicted class: (N,)."""
        return self.probs.max(-1).values

    def _need_labels(self) -> torch.Tensor:
        if self.labels is None:
            raise ValueError("these predictions have no labels: the batches had no 'labels' entry")
        return self.labels

    @property
    def correct(self) -> torch.Tensor:
        """Bool (N,): prediction == label."""
        return self.preds == self._need_labels()

    @property
    def accuracy(self) -> float:
        return accuracy(self._need_labels(), self.preds)


def _logits_of(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    logits = out.get("logits") if isinstance(out, dict) else getattr(out, "logits", None)
    if logits is None:
        raise ValueError(f"the model returned no logits (it returned {type(out).__name__}): predict "
                         "needs model(**batch) to return a (B, K) tensor, an object with .logits "
                         "or a dict with 'logits'")
    return logits


@torch.no_grad()
def predict(model: torch.nn.Module, data, collate_fn=None, *, batch_size: int = 64,
            progress: bool = False) -> Predictions:
    """Run ``model`` over ``data`` in order, in eval mode, on the model's device.

    ``data``: a Dataset or list of examples batched by ``collate_fn`` (e.g.
    ``ClassificationCollator(tokenizer)``), or a DataLoader (used as is). Each batch is a dict; its
    "labels" entry (if any) is kept and not given to the model, which is called as
    ``model(**batch)`` and must return (B, K) logits (a tensor, ``.logits`` or ``["logits"]``).
    The model's train/eval mode is restored afterwards. Returns :class:`Predictions`."""
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(data, DataLoader):
        loader = data
    else:
        if len(data) == 0:
            raise ValueError("data is empty: nothing to predict")
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    if progress:
        from tqdm.auto import tqdm
        loader = tqdm(loader, desc="predict", unit="batch")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for batch in loader:
            if not isinstance(batch, dict):
                raise TypeError(f"predict calls model(**batch), so batches must be dicts of tensors; "
                                f"got {type(batch).__name__}: pass a collate_fn that builds one")
            batch = dict(batch)
            y = batch.pop("labels", None)
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            out = _logits_of(model(**batch))
            if out.dim() != 2:
                raise ValueError(f"expected logits of shape (batch, classes), got {tuple(out.shape)}")
            logits.append(out.float().cpu())
            labels.append(None if y is None else torch.as_tensor(y).cpu())
    finally:
        model.train(was_training)
    have = [y is not None for y in labels]
    if any(have) and not all(have):
        raise ValueError("some batches have 'labels' and some do not")
    return Predictions(torch.cat(logits), torch.cat(labels).long() if all(have) else None)


def most_confident_mistakes(pred: Predictions, k: int | None = 10) -> np.ndarray:
    """Indices of the wrongly classified examples, the most confident (highest probability for the
    wrong class) first; at most ``k`` (None: all of them). Ties keep data order."""
    wrong = (~pred.correct).nonzero().flatten().numpy()
    conf = pred.confidence.numpy()[wrong]
    order = wrong[np.argsort(-conf, kind="stable")]
    return order if k is None else order[:k]
