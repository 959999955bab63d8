"""Pictures of attributions (optional extra ``pathattr[viz]``: matplotlib, imported lazily; no backend forced).

Images: `pathattr.viz.heatmap`; tokens: `pathattr.viz.text`.
"""

from .heatmap import caption, heatmap, overlay, plot_attribution, plot_curves, plot_explanations
from .text import plot_tokens, tokens_html

__all__ = ["caption", "heatmap", "overlay", "plot_attribution", "plot_curves", "plot_explanations", "plot_tokens",
           "tokens_html"]
