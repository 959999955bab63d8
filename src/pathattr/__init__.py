"""pathattr: path-based feature attribution for PyTorch models.

Every method is baseline x path x integrator x aggregation on one batched engine. Start with
:class:`IntegratedGradients`; see the README for the full list.
"""

from . import baselines, integrators, layer, metrics, paths, references
from .errors import InputValidationError, NoGradientError, NonFiniteError, PathattrError, TargetError
from .forward import Cost
from .integrators import IDGIIntegrator, RiemannIntegrator, SplitIntegrator, quadrature
from .layer import (
    LayerAttribution,
    LayerBlurIntegratedGradients,
    LayerGuidedIntegratedGradients,
    LayerIG2,
    LayerIntegratedGradients,
)
from .methods import (
    IG2,
    MFABA,
    AdversarialGradientIntegration,
    BlurIntegratedGradients,
    ExpectedGradients,
    GradCFIG,
    GradPathIG,
    GuidedIntegratedGradients,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
    agi,
    blur_integrated_gradients,
    expected_gradients,
    gradcf_ig,
    gradpath_ig,
    guided_integrated_gradients,
    ig2,
    input_x_gradient,
    integrated_gradients,
    mfaba,
    noise_tunnel,
    saliency,
)
from .paths.gradpath import gradpath
from .result import Explanation

__version__ = "0.1.0"

__all__ = [
    "MFABA",
    "AdversarialGradientIntegration",
    "agi",
    "mfaba",
    "LayerAttribution",
    "LayerBlurIntegratedGradients",
    "LayerGuidedIntegratedGradients",
    "LayerIG2",
    "LayerIntegratedGradients",
    "layer",
    "BlurIntegratedGradients",
    "GuidedIntegratedGradients",
    "blur_integrated_gradients",
    "guided_integrated_gradients",
    "GradCFIG",
    "GradPathIG",
    "IG2",
    "gradcf_ig",
    "gradpath",
    "gradpath_ig",
    "ig2",
    "references",
    "Cost",
    "ExpectedGradients",
    "Explanation",
    "IDGIIntegrator",
    "InputValidationError",
    "InputXGradient",
    "IntegratedGradients",
    "NoGradientError",
    "NoiseTunnel",
    "NonFiniteError",
    "PathattrError",
    "RiemannIntegrator",
    "Saliency",
    "SplitIntegrator",
    "TargetError",
    "baselines",
    "expected_gradients",
    "input_x_gradient",
    "integrated_gradients",
    "integrators",
    "metrics",
    "noise_tunnel",
    "paths",
    "quadrature",
    "saliency",
]
