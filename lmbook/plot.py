"""Figures the chapters share. Each function draws on a matplotlib ``Axes`` (made for you when
``ax`` is None) and returns it, or returns the ``Figure`` it made; none calls ``plt.show()``.

    attention_heatmap(weights, tokens)        one attention map with token labels
    attention_grid(attentions, tokens, ...)   maps of several layers x heads
    annotated_matrix(M, rows, cols)           a small matrix with its numbers written in
    loglog_with_reference(x, series, power)   measured curves beside a c * x^power line
    transformer_diagram()                     the encoder and decoder layers of Vaswani et al.
"""
from __future__ import annotations

import numpy as np

__all__ = ["attention_heatmap", "attention_grid", "annotated_matrix", "loglog_with_reference",
           "transformer_diagram"]


def _np(a):
    """torch tensor / list / array -> float numpy array (on the CPU, detached)."""
    if hasattr(a, "detach"):
        a = a.detach().float().cpu().numpy()
    return np.asarray(a, dtype=float)


def _axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


# --------------------------------------------------------------------------------------------
# attention maps
def attention_heatmap(weights, tokens, key_tokens=None, ax=None, title=None, cmap="viridis",
                      vmax=None, labels: bool = True, colorbar: bool = False):
    """One attention map: rows are queries (``tokens``), columns keys (``key_tokens``, default the
    same). ``weights`` (T, S) with rows summing to 1. Returns the Axes."""
    w = _np(weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be one (queries, keys) matrix, got shape {w.shape}")
    key_tokens = tokens if key_tokens is None else key_tokens
    if labels and (len(tokens) != w.shape[0] or len(key_tokens) != w.shape[1]):
        raise ValueError(f"{len(tokens)} query and {len(key_tokens)} key labels for a map of "
                         f"shape {w.shape}")
    ax = _axes(ax, (0.24 * w.shape[1] + 1.8, 0.24 * w.shape[0] + 1.2))
    im = ax.imshow(w, cmap=cmap, vmin=0, vmax=vmax if vmax is not None else max(w.max(), 1e-9),
                   interpolation="nearest")
    if labels:
        ax.set_xticks(range(w.shape[1]), key_tokens, rotation=90, fontsize=8)
        ax.set_yticks(range(w.shape[0]), tokens, fontsize=8)
        ax.set_xlabel("key (attended to)")
        ax.set_ylabel("query")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    return ax


def attention_grid(attentions, tokens, layers=None, heads=None, size: float = 1.6,
                   suptitle=None, cmap="viridis", fontsize: float = 8):
    """A grid of maps, one row per layer and one column per head. ``attentions``: what a
    Hugging Face model returns with ``output_attentions=True`` (a tuple of (B, H, T, T), batch
    item 0 is used) or an array (L, H, T, T). Tokens label the left column and bottom row in
    ``fontsize`` points: keep ``size`` (inches per map) at least ``fontsize * T / 60`` so that
    the labels do not overlap. Returns the Figure."""
    import matplotlib.pyplot as plt

    att = _stack_attentions(attentions)
    L, H = att.shape[:2]
    layers = list(range(L)) if layers is None else list(layers)
    heads = list(range(H)) if heads is None else list(heads)
    fig, axes = plt.subplots(len(layers), len(heads), figsize=(size * len(heads) + 1, size * len(layers) + 0.8),
                             squeeze=False)
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            ax = axes[r, c]
            attention_heatmap(att[layer, head], tokens, ax=ax, labels=False, cmap=cmap)
            if r == 0:
                ax.set_title(f"head {head}", fontsize=fontsize + 1)
            if c == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=fontsize + 1)
                ax.set_yticks(range(len(tokens)), tokens, fontsize=fontsize)
            if r == len(layers) - 1:
                ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=fontsize)
    if suptitle:
        fig.suptitle(suptitle, fontsize=fontsize + 2)
    fig.tight_layout()
    return fig


def _stack_attentions(attentions):
    """tuple of L (B, H, T, S) tensors, or (L, H, T, S) -> numpy (L, H, T, S), batch item 0."""
    if isinstance(attentions, (tuple, list)):
        att = np.stack([_np(a)[0] if _np(a).ndim == 4 else _np(a) for a in attentions])
    else:
        att = _np(attentions)
    if att.ndim != 4:
        raise ValueError("attentions must be a tuple of (batch, heads, T, S) tensors, one per layer, "
                         f"or one (layers, heads, T, S) array; got {att.ndim} dimensions")
    return att


def annotated_matrix(M, row_labels, col_labels, ax=None, title=None, fmt="{:.3f}", cmap="Blues"):
    """A small matrix drawn as colours with its numbers written in each cell (``-inf`` shows as
    a dash). Returns the Axes."""
    m = _np(M)
    ax = _axes(ax, (0.9 * m.shape[1] + 1.2, 0.6 * m.shape[0] + 0.8))
    shown = np.where(np.isfinite(m), m, np.nan)
    ax.imshow(shown, cmap=cmap)
    lo, hi = np.nanmin(shown), np.nanmax(shown)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            text = fmt.format(m[i, j]) if np.isfinite(m[i, j]) else "−∞"
            dark = np.isfinite(m[i, j]) and hi > lo and (m[i, j] - lo) / (hi - lo) > 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
    ax.set_xticks(range(m.shape[1]), col_labels)
    ax.set_yticks(range(m.shape[0]), row_labels)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# --------------------------------------------------------------------------------------------
# scaling curves
def loglog_with_reference(x, series: dict, power: float = 2.0, anchor: str | None = None, ax=None,
                          xlabel="n", ylabel="", title=None, marker="o"):
    """Plot each ``series`` (label -> values at ``x``) on log-log axes with a dashed reference
    line c * x^power through the first point of series ``anchor`` (default: the first series)."""
    x = _np(x)
    ax = _axes(ax, (5, 3.5))
    for label, y in series.items():
        ax.loglog(x, _np(y), marker=marker, label=label)
    ref = _np(series[anchor if anchor is not None else next(iter(series))])
    ax.loglog(x, ref[0] * (x / x[0]) ** power, "k--", lw=1, label=f"$\\propto n^{{{power:g}}}$ (reference)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return ax


# --------------------------------------------------------------------------------------------
# the Transformer, drawn
_COLOURS = {"attn": "#f6c28b", "ffn": "#9ccfe6", "norm": "#f3e79b", "embed": "#d9d9d9",
            "out": "#c7e9c0"}


def _box(ax, x, y, w, h, text, kind):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=_COLOURS[kind], ec="black", lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=9.5)


def _arrow(ax, x0, y0, x1, y1, **kw):
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                arrowprops=dict(arrowstyle="-|>", lw=0.9, color=kw.get("color", "black"),
                                connectionstyle=kw.get("connectionstyle", "arc3")))


def _sublayer(ax, x, y, w, text, kind, residual_x):
    """A sublayer box, its 'Add & Norm' box above it and the residual path around both."""
    _box(ax, x, y, w, 0.55, text, kind)
    _box(ax, x, y + 0.75, w, 0.35, "Add & LayerNorm", "norm")
    _arrow(ax, x, y + 0.28, x, y + 0.57)
    # residual: from below the sublayer, around it, into Add & Norm
    ax.plot([x, residual_x, residual_x], [y - 0.45, y - 0.45, y + 0.75], color="grey", lw=0.9)
    _arrow(ax, residual_x, y + 0.75, x + (w / 2 if residual_x > x else -w / 2), y + 0.75, color="grey")
    return y + 0.93  # top of the Add & Norm box


def transformer_diagram(ax=None, title="The Transformer (Vaswani et al., 2017): post-LN layers"):
    """The encoder layer (left) and decoder layer (right) of the original Transformer, with the
    residual connections and the encoder output feeding every decoder layer's cross-attention.
    Returns the Axes."""
    ax = _axes(ax, (7.2, 6.2))
    ax.set_xlim(0.1, 9.7)
    ax.axis("off")
    w = 3.2
    # encoder (x = 2.6)
    ex = 2.6
    _box(ax, ex, -0.45, w, 0.55, "input embedding\n+ positions", "embed")
    _arrow(ax, ex, -0.17, ex, 0.47)
    top = _sublayer(ax, ex, 0.75, w, "multi-head\nself-attention", "attn", ex - w / 2 - 0.3)
    _arrow(ax, ex, top, ex, top + 0.47)
    top = _sublayer(ax, ex, top + 0.75, w, "feed-forward\n(per position)", "ffn", ex - w / 2 - 0.3)
    ax.add_patch(_frame(ex, 0.05, top + 0.1, w + 1.0))
    ax.text(ex - w / 2 - 0.72, (0.05 + top) / 2, "encoder layer  × N", rotation=90, ha="center",
            va="center", fontsize=10)
    _arrow(ax, ex, top + 0.1, ex, top + 0.6)
    ax.text(ex, top + 0.75, "encoder output (memory)\n(B, S, d_model)", ha="center", va="bottom", fontsize=9.5)
    # decoder (x = 7.2)
    dx = 7.2
    _box(ax, dx, -0.45, w, 0.55, "output embedding\n+ positions (shifted right)", "embed")
    _arrow(ax, dx, -0.17, dx, 0.47)
    t1 = _sublayer(ax, dx, 0.75, w, "masked multi-head\nself-attention", "attn", dx + w / 2 + 0.3)
    _arrow(ax, dx, t1, dx, t1 + 0.47)
    y_cross = t1 + 0.75
    t2 = _sublayer(ax, dx, y_cross, w, "multi-head cross-attention\nQ: decoder; K, V: encoder", "attn",
                   dx + w / 2 + 0.3)
    _arrow(ax, dx, t2, dx, t2 + 0.47)
    t3 = _sublayer(ax, dx, t2 + 0.75, w, "feed-forward\n(per position)", "ffn", dx + w / 2 + 0.3)
    ax.add_patch(_frame(dx, 0.05, t3 + 0.1, w + 1.0))
    ax.text(dx + w / 2 + 0.72, (0.05 + t3) / 2, "decoder layer  × N", rotation=270, ha="center",
            va="center", fontsize=10)
    _arrow(ax, dx, t3 + 0.1, dx, t3 + 0.45)
    _box(ax, dx, t3 + 0.7, w, 0.45, "linear + softmax", "out")
    _arrow(ax, dx, t3 + 0.93, dx, t3 + 1.25)
    ax.text(dx, t3 + 1.3, "next-token probabilities", ha="center", va="bottom", fontsize=9.5)
    # memory -> every decoder layer's cross-attention (keys and values)
    _arrow(ax, ex + 0.6, top + 0.6, dx - w / 2, y_cross, connectionstyle="arc3,rad=-0.25", color="#b5541c")
    ax.text((ex + dx) / 2 - 0.1, y_cross + 1.2, "K, V", color="#b5541c", fontsize=10, ha="center")
    ax.set_ylim(-0.9, t3 + 1.75)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def _frame(x, y0, y1, w):
    from matplotlib.patches import Rectangle

    return Rectangle((x - w / 2, y0), w, y1 - y0, fill=False, ls="--", ec="grey", lw=0.8)
