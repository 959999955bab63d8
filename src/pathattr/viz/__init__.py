"""Pictures of attributions (optional extra ``pathattr[viz]``: matplotlib)."""

from .heatmap import heatmap, overlay, plot_curves, plot_explanations

__all__ = ["heatmap", "overlay", "plot_curves", "plot_explanations"]
