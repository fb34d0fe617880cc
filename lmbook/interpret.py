"""Measuring what a trained model does: which input tokens a prediction depends on, what a
layer's vectors encode, which associations an embedding space holds, and what a language model
repeats from its training data (chapter 8).

Attributions for one input (all return one score per token position):

    occlusion(score_fn, ids)            leave-one-out: score(x) - score(x without token t)
    gradient_x_input(score_fn, embeds)  sum over channels of d score / d e_t * e_t
    attention_received(weights, mask)   mean attention each key gets from the real queries
    attention_rollout(attentions, mask) attention composed through the layers (Abnar & Zuidema 2020)
    kendall_tau(a, b), spearman_rho(a, b)   how well two rankings of the tokens agree

Probing (Tenney et al. 2019; Hewitt & Liang 2019 for control tasks):

    layer_embeddings(texts, tokenizer, model)   (layers + 1, N, C): mean-pooled states of every layer
    cross_validated_accuracy(X, y)              k-fold accuracy of a linear probe

Association tests (WEAT, Caliskan et al. 2017; SEAT, May et al. 2019):

    association_test(X, Y, A, B)   -> AssociationResult(effect_size, p_value, ...)
    permutation_p_value(s_x, s_y)  the test's p-value for any two groups of scores

Memorisation (Carlini et al. 2021, 2023):

    sample_spans(ids, n, length, seed)          n random windows of a token sequence
    verbatim_completion(model, spans, prefix)   does greedy decoding reproduce each span's suffix?
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["occlusion", "gradient_x_input", "attention_received", "attention_rollout", "kendall_tau",
           "spearman_rho", "layer_embeddings", "cross_validated_accuracy", "association_test",
           "AssociationResult", "permutation_p_value", "sample_spans", "verbatim_completion", "Completion"]


# ------------------------------------------------------------------------------------------
# attributions
@torch.no_grad()
def occlusion(score_fn, input_ids: torch.Tensor, positions=None, *, replace_id: int | None = None,
              batch_size: int = 64) -> torch.Tensor:
    """Leave-one-out importance of each token: ``score(x) - score(x with token t occluded)``.

    ``input_ids`` (T,) or (1, T): one input. ``score_fn(ids, attention_mask)`` maps a batch of ids
    (B, T') and its mask (B, T') to one score per row (B,), e.g. the logit of the predicted class.
    A token is *deleted* (the input gets one token shorter), or replaced by ``replace_id``.
    ``positions``: which tokens to occlude (default all; pass ``range(1, T - 1)`` to keep BERT's
    [CLS] and [SEP]). Returns (len(positions),): positive = the token raised the score."""
    ids = _one_sequence(input_ids)
    T = ids.shape[0]
    positions = list(range(T)) if positions is None else [int(p) for p in positions]
    if not positions:
        raise ValueError("positions is empty: give at least one token position to occlude")
    if min(positions) < 0 or max(positions) >= T:
        raise ValueError(f"positions must lie in 0..{T - 1} for an input of {T} tokens, got {positions}")
    if replace_id is None and T < 2:
        raise ValueError("cannot delete the only token of a one-token input: pass replace_id")
    variants = []
    for p in positions:
        if replace_id is None:
            variants.append(torch.cat([ids[:p], ids[p + 1:]]))  # (T-1,)
        else:
            v = ids.clone()
            v[p] = replace_id
            variants.append(v)
    full = _scores(score_fn, ids[None])                          # (1,)
    occluded = torch.cat([_scores(score_fn, torch.stack(variants[i:i + batch_size]))
                          for i in range(0, len(variants), batch_size)])  # (len(positions),)
    return (full - occluded).float()


def gradient_x_input(score_fn, embeddings: torch.Tensor) -> torch.Tensor:
    """Gradient x input: ``sum_c (d score / d e_{t,c}) * e_{t,c}`` for each position t.

    ``embeddings`` (T, C) or (1, T, C): the input vectors of one example (for a Hugging Face BERT,
    ``model.get_input_embeddings()(ids)``, which the model takes as ``inputs_embeds``).
    ``score_fn(embeddings (1, T, C))`` returns a scalar (or a (1,) tensor). Returns (T,).
    For a score linear in the embeddings this is each token's exact contribution."""
    e = embeddings.detach()
    if e.dim() == 2:
        e = e[None]
    if e.dim() != 3 or e.shape[0] != 1:
        raise ValueError(f"embeddings must be (T, C) or (1, T, C) for one example, got {tuple(embeddings.shape)}")
    e = e.clone().requires_grad_(True)
    with torch.enable_grad():
        score = score_fn(e)
        if score.numel() != 1:
            raise ValueError(f"score_fn must return one number, got shape {tuple(score.shape)}")
        (grad,) = torch.autograd.grad(score.sum(), e)
    return (grad * e).sum(-1)[0].detach()                              # (T,)


def attention_received(weights: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """How much attention each key position receives, averaged over heads and over the real
    (non-padding) query positions: weights (B, H, T, T) or (B, T, T) -> (B, T).

    This is the importance that "reading the attention map" assigns to a token when the model
    pools all positions (mean pooling), as all-MiniLM-L6-v2 does."""
    if weights.dim() == 4:
        weights = weights.mean(1)                                   # (B, T, T) mean over heads
    if weights.dim() != 3 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"expected weights (B, H, T, T) or (B, T, T), got {tuple(weights.shape)}")
    B, T, _ = weights.shape
    q = torch.ones(B, T) if attention_mask is None else attention_mask.float()
    if q.shape != (B, T):
        raise ValueError(f"attention_mask must be (B, T) = {(B, T)}, got {tuple(q.shape)}")
    q = q.to(weights.device)
    return (weights.float() * q[:, :, None]).sum(1) / q.sum(1, keepdim=True)  # (B, T)


def attention_rollout(attentions, attention_mask: torch.Tensor | None = None,
                      residual: float = 0.5) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): each layer's head-averaged weights, mixed with
    the identity for the residual connection, ``W = residual * I + (1 - residual) * A``, rows
    renormalised, multiplied through the layers: ``R = W_L ... W_2 W_1``.
    ``attentions``: one (B, H, T, T) tensor per layer, first layer first. Returns (B, T, T);
    row i says how much of position i's final vector traces back to each input token."""
    attentions = list(attentions)
    if not attentions:
        raise ValueError("attentions is empty: pass one (B, H, T, T) tensor per layer")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    B, _, T, _ = attentions[0].shape
    eye = torch.eye(T, device=attentions[0].device)
    rollout = eye.expand(B, T, T)
    for A in attentions:
        W = residual * eye + (1.0 - residual) * A.float().mean(1)        # (B, T, T)
        W = W / W.sum(-1, keepdim=True)
        rollout = W @ rollout
    if attention_mask is not None:  # padded keys get no weight at all
        rollout = rollout * attention_mask.float()[:, None, :].to(rollout.device)
    return rollout


def _one_sequence(input_ids) -> torch.Tensor:
    ids = torch.as_tensor(input_ids)
    if ids.dim() == 2 and ids.shape[0] == 1:
        ids = ids[0]
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(f"input_ids must be one non-empty sequence, (T,) or (1, T); got shape {tuple(ids.shape)}")
    return ids


def _scores(score_fn, ids: torch.Tensor) -> torch.Tensor:
    out = torch.as_tensor(score_fn(ids, torch.ones_like(ids))).reshape(-1)
    if out.shape[0] != ids.shape[0]:
        raise ValueError(f"score_fn must return one score per row: {ids.shape[0]} rows gave {tuple(out.shape)}")
    return out.float().cpu()


# ------------------------------------------------------------------------------------------
# rank correlation
def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(torch.as_tensor(a).detach().cpu().double(), dtype=np.float64).ravel()
    b = np.asarray(torch.as_tensor(b).detach().cpu().double(), dtype=np.float64).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two score vectors of the same length >= 2, got {a.size} and {b.size}")
    return a, b


def kendall_tau(a, b) -> float:
    """Kendall's tau-b between two score vectors (ties handled; the measure Jain & Wallace 2019
    report). 1: same order, -1: reversed, about 0: unrelated; NaN if either vector is constant."""
    a, b = _pair(a, b)
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(a.size, 1)
    s, ta, tb = (da * db)[iu].sum(), np.abs(da)[iu].sum(), np.abs(db)[iu].sum()
    return float(s / math.sqrt(ta * tb)) if ta and tb else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size)
    ranks[order] = np.arange(x.size)
    for v in np.unique(x):  # ties share their average rank
        m = x == v
        ranks[m] = ranks[m].mean()
    return ranks


def spearman_rho(a, b) -> float:
    """Spearman's rank correlation: Pearson's correlation of the (average-tied) ranks."""
    a, b = _pair(a, b)
    ra, rb = _ranks(a) - (a.size - 1) / 2, _ranks(b) - (b.size - 1) / 2
    den = math.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / den) if den else float("nan")


# ------------------------------------------------------------------------------------------
# probing
@torch.no_grad()
def layer_embeddings(texts, tokenizer, model, batch_size: int = 32, max_length: int = 128) -> torch.Tensor:
    """Mean-pooled hidden states of every layer: (num_layers + 1, len(texts), hidden size), index 0
    the embedding layer's output, -1 the last layer's (equal to ``lmbook.embed.sentence_embeddings``).

    ``model`` must accept ``output_hidden_states=True`` (a Hugging Face ``BertModel``). Texts are
    batched in order of length, which saves padding; the rows come back in the order given."""
    from lmbook.embed import length_order, mean_pool

    texts, order = length_order(texts, tokenizer, max_length)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    try:
        for i in range(0, len(order), batch_size):
            enc = tokenizer([texts[j] for j in order[i:i + batch_size]], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt").to(device)
            hidden = model(**enc, output_hidden_states=True).hidden_states  # (L+1) x (B, T, C)
            chunks.append(torch.stack([mean_pool(h, enc["attention_mask"]).float().cpu() for h in hidden]))
    finally:
        model.train(was_training)
    out = torch.cat(chunks, 1)                                          # (L+1, N, C), sorted order
    return out[:, torch.argsort(torch.tensor(order))]                   # back to the given order


def cross_validated_accuracy(X: torch.Tensor, y, folds: int = 5, seed: int = 0, **probe_kwargs) -> torch.Tensor:
    """Accuracy of a linear probe (``lmbook.embed.train_linear_probe``) on each of ``folds`` held-out
    folds: the rows are shuffled with ``seed``, cut into folds, and every fold is predicted by a
    probe trained on the others. Returns a (folds,) tensor."""
    from lmbook.embed import probe_accuracy, train_linear_probe

    y = torch.as_tensor(y, dtype=torch.long)
    if X.dim() != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"expected X (N, C) and y (N,), got {tuple(X.shape)} and {tuple(y.shape)}")
    if not 2 <= folds <= X.shape[0]:
        raise ValueError(f"folds must be between 2 and the number of rows ({X.shape[0]}), got {folds}")
    k = int(y.max()) + 1
    perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed))
    accs = []
    for part in perm.chunk(folds):
        train = torch.ones(X.shape[0], dtype=torch.bool)
        train[part] = False
        probe = train_linear_probe(X[train], y[train], num_classes=k, **probe_kwargs)
        accs.append(probe_accuracy(probe, X[part], y[part]))
    return torch.tensor(accs)


# ------------------------------------------------------------------------------------------
# association tests
@dataclass
class AssociationResult:
    """WEAT/SEAT result. ``effect_size``: Cohen's d-like, positive when X is closer to A (and Y to
    B); ``p_value``: one-sided permutation p-value of the statistic ``sum_x s(x) - sum_y s(y)``;
    ``exact``: every equal-size re-partition of X u Y was tried (else ``permutations`` random
    ones); ``s_x``, ``s_y``: s(w, A, B) = mean cos(w, A) - mean cos(w, B) of every target."""

    effect_size: float
    p_value: float
    exact: bool
    permutations: int
    s_x: torch.Tensor
    s_y: torch.Tensor


def association_test(X: torch.Tensor, Y: torch.Tensor, A: torch.Tensor, B: torch.Tensor, *,
                     permutations: int = 100_000, seed: int = 0) -> AssociationResult:
    """The Word Embedding Association Test (Caliskan et al. 2017) on any vectors: rows of X and Y
    embed the two target sets (e.g. male and female names), rows of A and B the two attribute sets
    (e.g. career and family words). SEAT (May et al. 2019) is the same test on sentence embeddings.

    effect size = (mean_x s(x) - mean_y s(y)) / std_{w in X u Y} s(w)   (sample std, ddof=1)
    p-value     = P[stat(X_i, Y_i) >= stat(X, Y)] over re-partitions (X_i, Y_i) of X u Y with
                  |X_i| = |X|: exact when there are at most ``permutations`` of them, else
                  ``permutations`` random ones (seeded) counted with the observed one, (k+1)/(n+1).
    """
    for name, M in (("X", X), ("Y", Y), ("A", A), ("B", B)):
        if M.dim() != 2 or M.shape[0] < 1:
            raise ValueError(f"{name} must be a (rows, features) matrix with at least one row, got {tuple(M.shape)}")
    if len({M.shape[1] for M in (X, Y, A, B)}) != 1:
        raise ValueError("X, Y, A and B must have the same number of features")
    if X.shape[0] + Y.shape[0] < 3:
        raise ValueError("need at least three targets in X and Y together for a standard deviation")
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")

    def s(W):  # s(w, A, B) for every row w
        Wn = F.normalize(W.double(), dim=-1)
        return (Wn @ F.normalize(A.double(), dim=-1).T).mean(1) - (Wn @ F.normalize(B.double(), dim=-1).T).mean(1)

    s_x, s_y = s(X), s(Y)
    effect = float((s_x.mean() - s_y.mean()) / torch.cat([s_x, s_y]).std(correction=1))
    p = permutation_p_value(s_x, s_y, permutations=permutations, seed=seed)
    exact = math.comb(s_x.numel() + s_y.numel(), s_x.numel()) <= permutations
    used = math.comb(s_x.numel() + s_y.numel(), s_x.numel()) if exact else permutations
    return AssociationResult(effect, p, exact, used, s_x.float(), s_y.float())


def permutation_p_value(s_x, s_y, *, permutations: int = 100_000, seed: int = 0,
                        alternative: str = "greater") -> float:
    """Permutation p-value that the scores ``s_x`` are larger than ``s_y`` (``alternative=
    "greater"``, the WEAT test): P[sum(X_i) - sum(Y_i) >= sum(s_x) - sum(s_y)] over
    re-partitions (X_i, Y_i) of all scores with |X_i| = len(s_x). ``"less"``: ``s_x`` smaller;
    ``"two-sided"``: twice the smaller of the two one-sided values, at most 1 (e.g. a
    counterfactual test that has no expected direction). Exact when there are at most
    ``permutations`` re-partitions, else ``permutations`` random ones
    (``numpy.random.default_rng(seed)``) counted together with the observed one,
    (k + 1) / (n + 1), so the smallest reachable value is 1 / (permutations + 1)."""
    if alternative == "less":
        return permutation_p_value(s_y, s_x, permutations=permutations, seed=seed)
    if alternative == "two-sided":
        one_sided = [permutation_p_value(a, b, permutations=permutations, seed=seed)
                     for a, b in ((s_x, s_y), (s_y, s_x))]
        return min(1.0, 2 * min(one_sided))
    if alternative != "greater":
        raise ValueError(f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}")
    s_x = np.asarray(torch.as_tensor(s_x).double(), dtype=np.float64).ravel()
    s_y = np.asarray(torch.as_tensor(s_y).double(), dtype=np.float64).ravel()
    if s_x.size < 1 or s_y.size < 1:
        raise ValueError("need at least one score on each side")
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")
    s_all = np.concatenate([s_x, s_y])
    n, nx = s_all.size, s_x.size
    # sum_x s - sum_y s = 2 sum_x s - total: ranking re-partitions by their sum over X_i is enough
    observed = s_x.sum()
    tol = 1e-12 * max(1.0, abs(observed))
    total = math.comb(n, nx)
    if total <= permutations:
        idx = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n), nx)),
                          dtype=np.int64, count=total * nx).reshape(total, nx)
        return float((s_all[idx].sum(1) >= observed - tol).mean())
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < permutations:  # in chunks: the (chunk, n) index matrices stay small
        m = min(10_000, permutations - done)
        idx = rng.permuted(np.tile(np.arange(n), (m, 1)), axis=1)[:, :nx]
        hits += int((s_all[idx].sum(1) >= observed - tol).sum())
        done += m
    return (hits + 1) / (permutations + 1)


# ------------------------------------------------------------------------------------------
# memorisation
def sample_spans(ids, n: int, length: int, seed: int = 0) -> torch.Tensor:
    """``n`` windows of ``length`` consecutive tokens from the 1-D sequence ``ids``, at distinct
    random offsets drawn with ``torch.Generator().manual_seed(seed)``: (n, length) long."""
    ids = torch.as_tensor(ids).long()
    if ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D sequence of token ids, got shape {tuple(ids.shape)}")
    starts = ids.numel() - length + 1
    if length < 1 or starts < n:
        raise ValueError(f"cannot cut {n} distinct windows of {length} tokens from {ids.numel()} tokens")
    offsets = torch.randperm(starts, generator=torch.Generator().manual_seed(seed))[:n]
    return ids[offsets[:, None] + torch.arange(length)]


@dataclass
class Completion:
    """Greedy completions of span prefixes. ``generated`` (n, S) tokens, ``matched`` (n,) how many
    leading tokens equal the true suffix, ``exact`` (n,) all S tokens equal."""

    generated: torch.Tensor
    matched: torch.Tensor
    exact: torch.Tensor

    @property
    def exact_rate(self) -> float:
        return self.exact.float().mean().item()

    @property
    def mean_matched(self) -> float:
        return self.matched.float().mean().item()


def verbatim_completion(model, spans: torch.Tensor, prefix_len: int) -> Completion:
    """Give a causal LM the first ``prefix_len`` tokens of each span and decode greedily as many
    tokens as the rest of the span; compare with the true rest. A span whose rest comes back
    exactly is *extractable* with that prefix, in the sense of Carlini et al. (2023).
    ``spans`` (n, L) long; ``model(input_ids=...)`` returns an object with ``.logits``."""
    from lmbook.generate import generate

    if spans.dim() != 2 or not 0 < prefix_len < spans.shape[1]:
        raise ValueError(f"spans must be (n, L) with 0 < prefix_len < L; got {tuple(spans.shape)} "
                         f"and prefix_len={prefix_len}")
    suffix = spans[:, prefix_len:]
    out = generate(model, spans[:, :prefix_len], suffix.shape[1], greedy=True)[:, prefix_len:].cpu()
    same = out == suffix
    return Completion(out, same.long().cumprod(1).sum(1), same.all(1))
