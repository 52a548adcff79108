"""Randomized smoothing: the defended classifier, its noise, and the theory around it.

* :mod:`~probe.smoothing.cohen`: PREDICT and CERTIFY on vote counts (Cohen et al.).
* :mod:`~probe.smoothing.theory`: the seed paper's eq. (2)-(6).
* :mod:`~probe.smoothing.classifier`: :class:`SmoothedClassifier`, g_{sigma,n}.
* :mod:`~probe.smoothing.noise`: the float32 Gaussian sampler.
* :mod:`~probe.smoothing.graph`: noise, model and vote in one ONNX graph (CUDA).
"""

from probe.smoothing.classifier import SmoothedClassifier
from probe.smoothing.cohen import (
    ABSTAIN,
    certify,
    certify_sampled,
    majority_vote,
    pa_lower_bound,
    predict,
    predict_sampled,
)
from probe.smoothing.theory import (
    certified_radius,
    distance_bound,
    level_vote_count,
    pa_vote_threshold,
    pa_vote_threshold_exact,
    smoothed_probability_linear,
    sorm_probability,
)

__all__ = [
    "ABSTAIN",
    "SmoothedClassifier",
    "certified_radius",
    "certify",
    "certify_sampled",
    "distance_bound",
    "level_vote_count",
    "majority_vote",
    "pa_lower_bound",
    "pa_vote_threshold",
    "pa_vote_threshold_exact",
    "predict",
    "predict_sampled",
    "smoothed_probability_linear",
    "sorm_probability",
]
