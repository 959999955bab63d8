"""Attribution methods, each a class (Captum-shaped) with a functional twin."""

from .adversarial import MFABA, AdversarialGradientIntegration, agi, mfaba
from .base import AttributionMethod
from .blur_ig import BlurIntegratedGradients, blur_integrated_gradients
from .expected_gradients import ExpectedGradients, expected_gradients
from .gradient import InputXGradient, Saliency, input_x_gradient, saliency
from .guided_ig import GuidedIntegratedGradients, guided_integrated_gradients
from .ig2 import IG2, GradCFIG, GradPathIG, gradcf_ig, gradpath_ig, ig2
from .integrated_gradients import IntegratedGradients, integrated_gradients
from .noise_tunnel import NoiseTunnel, noise_tunnel

__all__ = [
    "MFABA",
    "AdversarialGradientIntegration",
    "agi",
    "mfaba",
    "AttributionMethod",
    "BlurIntegratedGradients",
    "ExpectedGradients",
    "GradCFIG",
    "GradPathIG",
    "GuidedIntegratedGradients",
    "IG2",
    "InputXGradient",
    "IntegratedGradients",
    "NoiseTunnel",
    "Saliency",
    "blur_integrated_gradients",
    "expected_gradients",
    "gradcf_ig",
    "gradpath_ig",
    "guided_integrated_gradients",
    "ig2",
    "input_x_gradient",
    "integrated_gradients",
    "noise_tunnel",
    "saliency",
]
