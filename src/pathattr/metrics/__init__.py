"""Evaluation metrics for attributions: torch-native, batched, every hyperparameter echoed in the result.

Each metric is a function returning a :class:`MetricResult` (per-example ``scores``, ``direction`` /
``higher_is_better``, ``hyperparameters`` and metric-specific curves), with a small class form that takes the
hyperparameters at construction (``Deletion(n_steps=50)(model, x, attributions)``). Definitions, directions and
the peers' known mistakes: ``docs/metrics.md``.

* faithfulness: :func:`insertion`, :func:`deletion`, :func:`diffid`, :func:`completeness_gap`; PIC
  :func:`sic` / :func:`aic` (PAIR-compatible; needs Pillow and SciPy, the ``pic`` extra, imported lazily);
* ground truth: :func:`feature_agreement`, :func:`rank_agreement`, :func:`sign_agreement`,
  :func:`signed_rank_agreement`, :func:`rank_correlation`, :func:`auroc`, :func:`average_precision`,
  :func:`top_k_precision`;
* NLP: :func:`comprehensiveness`, :func:`sufficiency`, :func:`log_odds`;
* robustness and complexity: :func:`max_sensitivity`, :func:`infidelity`, :func:`sparseness`;
* stability under numerical perturbation (chunking, input noise, float64): :func:`stability`;
* sanity: :func:`model_parameter_randomisation`;
* localisation: :func:`pointing_game`, :func:`energy_pointing_game`;
* Quantus: :func:`quantus_explain`, :func:`as_quantus_explain_func`.
"""

from ._common import Metric, MetricResult
from .faithfulness import (
    CompletenessGap,
    CompletenessResult,
    CurveResult,
    Deletion,
    DiffID,
    DiffIDResult,
    Insertion,
    completeness_gap,
    deletion,
    diffid,
    insertion,
)
from .ground_truth import (
    AUROC,
    AveragePrecision,
    FeatureAgreement,
    GroundTruthResult,
    RankAgreement,
    TopKPrecision,
    auroc,
    average_precision,
    feature_agreement,
    rank_agreement,
    rank_correlation,
    sign_agreement,
    signed_rank_agreement,
    top_k_precision,
)
from .localisation import EnergyPointingGame, PointingGame, PointingGameResult, energy_pointing_game, pointing_game
from .nlp import Comprehensiveness, LogOdds, Sufficiency, TokenResult, comprehensiveness, log_odds, sufficiency
from .pic import (
    AIC,
    SIC,
    PICResult,
    aggregate_pic_curves,
    aic,
    create_blurred_image,
    estimate_image_entropy,
    generate_random_mask,
    sic,
)
from .quantus_adapter import as_quantus_explain_func, quantus_explain
from .robustness import (
    Infidelity,
    InfidelityResult,
    MaxSensitivity,
    SensitivityResult,
    Sparseness,
    infidelity,
    max_sensitivity,
    sparseness,
)
from .sanity import ModelParameterRandomisation, RandomisationResult, model_parameter_randomisation
from .stability import Stability, StabilityResult, stability
from .substrates import Constant, Mean, RiseBlur, Substrate, UniformNoise

__all__ = [
    "AIC",
    "AUROC",
    "AveragePrecision",
    "CompletenessGap",
    "CompletenessResult",
    "Comprehensiveness",
    "Constant",
    "CurveResult",
    "Deletion",
    "DiffID",
    "DiffIDResult",
    "EnergyPointingGame",
    "FeatureAgreement",
    "GroundTruthResult",
    "Infidelity",
    "InfidelityResult",
    "Insertion",
    "LogOdds",
    "MaxSensitivity",
    "Mean",
    "Metric",
    "MetricResult",
    "ModelParameterRandomisation",
    "PICResult",
    "PointingGame",
    "PointingGameResult",
    "RandomisationResult",
    "RankAgreement",
    "RiseBlur",
    "SIC",
    "SensitivityResult",
    "Sparseness",
    "Stability",
    "StabilityResult",
    "Substrate",
    "Sufficiency",
    "TokenResult",
    "TopKPrecision",
    "UniformNoise",
    "aggregate_pic_curves",
    "aic",
    "as_quantus_explain_func",
    "auroc",
    "average_precision",
    "completeness_gap",
    "comprehensiveness",
    "create_blurred_image",
    "deletion",
    "diffid",
    "energy_pointing_game",
    "estimate_image_entropy",
    "feature_agreement",
    "generate_random_mask",
    "infidelity",
    "insertion",
    "log_odds",
    "max_sensitivity",
    "model_parameter_randomisation",
    "pointing_game",
    "quantus_explain",
    "rank_agreement",
    "rank_correlation",
    "sic",
    "sign_agreement",
    "signed_rank_agreement",
    "sparseness",
    "stability",
    "sufficiency",
    "top_k_precision",
]
