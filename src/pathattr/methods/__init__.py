"""Attribution methods, each a class (Captum-shaped) with a functional twin."""

from .base import AttributionMethod
from .expected_gradients import ExpectedGradients, expected_gradients
from .gradient import InputXGradient, Saliency, input_x_gradient, saliency
from .integrated_gradients import IntegratedGradients, integrated_gradients
from .noise_tunnel import NoiseTunnel, noise_tunnel

__all__ = [
    "AttributionMethod",
    "ExpectedGradients",
    "InputXGradient",
    "IntegratedGradients",
    "NoiseTunnel",
    "Saliency",
    "expected_gradients",
    "input_x_gradient",
    "integrated_gradients",
    "noise_tunnel",
    "saliency",
]
