"""ipywidgets views that also work on the static website (no kernel).

The trick: every view a control can select is rendered in advance (a small PNG per map), stacked
in ``ipywidgets.Stack`` containers, and each slider is tied to a stack's ``selected_index`` with
``jslink``. The link runs in the browser, so the widget state saved in the notebook is all the page
needs; no Python callback is involved.
"""
from __future__ import annotations

import io


class _Renderer:
    """Draws one attention map after another on a single reused figure (fast: no new figure,
    no new layout per map) and returns each as PNG bytes."""

    def __init__(self, tokens, dpi, size, cmap):
        import matplotlib.pyplot as plt
        import numpy as np

        from lmbook.plot import attention_heatmap

        self.fig, ax = plt.subplots(figsize=(size, size))
        n = len(tokens)
        attention_heatmap(np.eye(n), tokens, ax=ax, title=" ", cmap=cmap, vmax=1.0)
        ax.set_xlabel("")
        ax.set_ylabel("")
        self.image, self.title, self.dpi = ax.images[0], ax.title, dpi
        self.fig.tight_layout(pad=0.3)

    def png(self, weights, title) -> bytes:
        self.image.set_data(weights)
        self.title.set_text(title)
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=self.dpi)
        return buf.getvalue()

    def close(self):
        import matplotlib.pyplot as plt

        plt.close(self.fig)


def attention_explorer(tokens, attentions, *, dpi: int = 60, size: float = 3.4, cmap: str = "viridis"):
    """A layer slider and a head slider over precomputed attention maps.

    ``tokens``: the T token strings; ``attentions``: a Hugging Face ``output_attentions`` tuple
    (L tensors (B, H, T, T); batch item 0 is shown) or an array (L, H, T, T).
    Returns an ``ipywidgets.VBox``: [HBox(layer slider, head slider), Stack of L layers]; layer
    ``l``'s child is a Stack of H images; ``.links`` holds the 1 + L jslinks. Colours run from 0
    to 1 in every map, so maps compare.
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
