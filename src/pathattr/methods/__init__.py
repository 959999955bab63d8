"""Attribution methods, each a class (Captum-shaped) with a functional twin."""

from .base import AttributionMethod
from .blur_ig import BlurIntegratedGradients, blur_integrated_gradients
from .expected_gradients import ExpectedGradients, expected_gradients
from .gradient import InputXGradient, Saliency, input_x_gradient, saliency
from .guided_ig import GuidedIntegratedGradients, guided_integrated_gradients
from .integrated_gradients import IntegratedGradients, integrated_gradients
from .noise_tunnel import NoiseTunnel, noise_tunnel

__all__ = [
    "AttributionMethod",
    "BlurIntegratedGradients",
    "ExpectedGradients",
    "GuidedIntegratedGradients",
    "InputXGradient",
    "IntegratedGradients",
    "NoiseTunnel",
    "Saliency",
    "blur_integrated_gradients",
    "expected_gradients",
    "guided_integrated_gradients",
    "input_x_gradient",
    "integrated_gradients",
    "noise_tunnel",
    "saliency",
]
