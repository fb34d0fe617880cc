"""ipywidgets views that also work on the static website (no kernel).

The trick: every view a control can select is rendered in advance (a small PNG per map), stacked
in ``ipywidgets.Stack`` containers, and each slider is tied to a stack's ``selected_index`` with
``jslink``. The link runs in the browser, so the widget state saved in the notebook is all the page
needs; no Python callback is involved.
"""
from __future__ import annotations

import io

__all__ = ["attention_explorer"]


class _Renderer:
    """Draws one attention map after another on a single reused figure (fast: no new figure,
    no new layout per map) and returns each as a PNG with a 128-colour palette (a third of the
    bytes of full colour; the notebook stores one PNG per map)."""

    def __init__(self, tokens, dpi, size, cmap):
        import matplotlib.pyplot as plt
        import numpy as np

        from lmbook.plot import attention_heatmap

        self.fig, ax = plt.subplots(figsize=(size * 1.15, size))
        n = len(tokens)
        attention_heatmap(np.eye(n), tokens, ax=ax, title=" ", cmap=cmap, vmax=1.0, colorbar=True)
        self.image, self.title, self.dpi = ax.images[0], ax.title, dpi
        self.fig.tight_layout(pad=0.3)

    def png(self, weights, title) -> bytes:
        from PIL import Image

        self.image.set_data(weights)
        self.title.set_text(title)
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=self.dpi)
        small = io.BytesIO()
        Image.open(buf).convert("RGB").quantize(colors=128).save(small, format="png", optimize=True)
        return small.getvalue()

    def close(self):
        import matplotlib.pyplot as plt

        plt.close(self.fig)


def attention_explorer(tokens, attentions, *, dpi: int = 72, size: float = 4.6, cmap: str = "viridis"):
    """A layer slider and a head slider over precomputed attention maps.

    ``tokens``: the T token strings; ``attentions``: a Hugging Face ``output_attentions`` tuple
    (L tensors (B, H, T, T); batch item 0 is shown) or an array (L, H, T, T).
    Returns an ``ipywidgets.VBox``: [HBox(layer slider, head slider), Stack of L layers]; layer
    ``l``'s child is a Stack of H images; ``.links`` holds the 1 + L jslinks. Colours run from 0
    to 1 in every map (with a colour bar), so maps compare.
    """
    import ipywidgets as W

    from lmbook.plot import _stack_attentions

    att = _stack_attentions(attentions)
    L, H, T, S = att.shape
    if len(tokens) != T or T != S:
        raise ValueError(f"attentions are {T} x {S} but {len(tokens)} tokens were given; "
                         "pass the tokens of the one sentence the maps belong to")
    layer = W.IntSlider(0, min=0, max=L - 1, description="layer", continuous_update=True)
    head = W.IntSlider(0, min=0, max=H - 1, description="head", continuous_update=True)
    draw = _Renderer(tokens, dpi, size, cmap)
    layers, links = [], []
    for l_ in range(L):
        images = [W.Image(value=draw.png(att[l_, h], f"layer {l_}, head {h}"), format="png")
                  for h in range(H)]
        stack = W.Stack(images, selected_index=0)
        links.append(W.jslink((head, "value"), (stack, "selected_index")))
        layers.append(stack)
    draw.close()
    outer = W.Stack(layers, selected_index=0)
    links.append(W.jslink((layer, "value"), (outer, "selected_index")))
    box = W.VBox([W.HBox([layer, head]), outer])
    box.links = links  # the browser-side links (ipywidgets.Link), kept for inspection
    return box
