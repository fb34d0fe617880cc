"""lmbook.plot and lmbook.widgets: figures label what they show, bad shapes are refused, and the
attention explorer is wired so that its stored widget state alone switches maps (jslink)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lmbook import plot  # noqa: E402
from lmbook.widgets import attention_explorer  # noqa: E402

TOKENS = ["[CLS]", "a", "cat", "[SEP]"]


def maps(L=2, H=3, T=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, H, T, T, generator=g).softmax(-1) for _ in range(L))  # HF layout


def teardown_function():
    plt.close("all")


def test_attention_heatmap_labels_queries_and_keys():
    w = torch.eye(4)
    ax = plot.attention_heatmap(w, TOKENS, key_tokens=["k0", "k1", "k2", "k3"], title="t", colorbar=True)
    assert [t.get_text() for t in ax.get_yticklabels()] == TOKENS
    assert [t.get_text() for t in ax.get_xticklabels()] == ["k0", "k1", "k2", "k3"]
    assert ax.get_title() == "t" and ax.images[0].get_array().shape == (4, 4)


def test_attention_heatmap_refuses_wrong_shapes():
    with pytest.raises(ValueError, match=r"one \(queries, keys\) matrix, got shape \(1, 4, 4\)"):
        plot.attention_heatmap(torch.ones(1, 4, 4), TOKENS)
    with pytest.raises(ValueError, match="4 query and 4 key labels for a map of shape \\(5, 5\\)"):
        plot.attention_heatmap(torch.ones(5, 5), TOKENS)


def test_attention_grid_one_axes_per_layer_and_head():
    fig = plot.attention_grid(maps(L=3, H=4), TOKENS, layers=[0, 2], heads=[1, 3])
    assert len(fig.axes) == 4
    assert fig.axes[1].get_title() == "head 3" and fig.axes[2].get_ylabel() == "layer 2"
    with pytest.raises(ValueError, match="tuple of \\(batch, heads, T, S\\) tensors"):
        plot.attention_grid(torch.ones(3, 4, 4), TOKENS)


def test_attention_grid_token_labels_in_the_asked_size():
    fig = plot.attention_grid(maps(L=2, H=2), TOKENS, fontsize=9)
    left, bottom = fig.axes[2], fig.axes[3]  # row 1: the left map and the bottom-right map
    assert [t.get_text() for t in left.get_yticklabels()] == TOKENS
    assert [t.get_text() for t in bottom.get_xticklabels()] == TOKENS
    assert {t.get_fontsize() for t in left.get_yticklabels() + bottom.get_xticklabels()} == {9}
    assert fig.axes[0].title.get_fontsize() == 10 and not fig.axes[3].get_yticklabels()


def test_transformer_diagram_labels_readable_at_page_width():
    ax = plot.transformer_diagram()
    assert ax.figure.get_figwidth() <= 7.5  # no shrinking on a page about 7 inches wide
    assert min(t.get_fontsize() for t in ax.texts) >= 9


def test_annotated_matrix_writes_numbers_and_minus_infinity():
    ax = plot.annotated_matrix(torch.tensor([[0.5, float("-inf")], [1.0, 2.0]]), ["a", "b"], ["c", "d"])
    assert [t.get_text() for t in ax.texts] == ["0.500", "−∞", "1.000", "2.000"]


def test_loglog_with_reference_line_is_anchored():
    ax = plot.loglog_with_reference([1, 2, 4], {"m": [3.0, 12.0, 48.0]}, power=2)
    ref = ax.get_lines()[-1].get_ydata()
    assert list(ref) == [3.0, 12.0, 48.0]


def test_transformer_diagram_draws_both_stacks():
    ax = plot.transformer_diagram()
    texts = " ".join(t.get_text() for t in ax.texts)
    for part in ["masked multi-head", "cross-attention", "encoder layer", "decoder layer", "Add & LayerNorm"]:
        assert part in texts


def test_attention_explorer_structure_and_links():
    import ipywidgets as W

    explorer = attention_explorer(TOKENS, maps(L=2, H=3), dpi=30, size=1.5)
    (layer, head), outer = explorer.children[0].children, explorer.children[1]
    assert (layer.max, head.max) == (1, 2)
    assert len(outer.children) == 2 and all(len(s.children) == 3 for s in outer.children)
    images = [im for s in outer.children for im in s.children]
    assert all(isinstance(im, W.Image) and im.value[:4] == b"\x89PNG" for im in images)
    assert len({im.value for im in images}) == 6  # every map drawn separately
    from PIL import Image

    png = Image.open(io.BytesIO(images[0].value))
    assert png.mode == "P" and len(png.getcolors()) <= 128  # palette PNG: small notebooks
    assert len(explorer.links) == 1 + 2
    targets = {(w.source[0].description, w.source[1], id(w.target[0]), w.target[1]) for w in explorer.links}
    assert targets == ({("layer", "value", id(outer), "selected_index")}
                       | {("head", "value", id(s), "selected_index") for s in outer.children})


def test_attention_explorer_refuses_wrong_token_count():
    with pytest.raises(ValueError, match="attentions are 4 x 4 but 3 tokens"):
        attention_explorer(TOKENS[:3], maps())
