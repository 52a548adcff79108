"""The theory beside each result: CERTIFY of the original and eq. (6)'s lower bound.

Under smoothing each record carries the radius certified around its original
(Cohen et al.'s CERTIFY, its parameters recorded) and eq. (6)'s bound on the distance of
any adversarial of level P_a: ``R(x_o) + sigma Phi^-1(I^-1_{P_a}(n~, n~))``. A distortion
below that bound means a bug or an unsound certificate (floating-point randomized
smoothing can certify too much: Voracek and Hein).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from probe.smoothing import ABSTAIN, SmoothedClassifier, certify, pa_vote_threshold


@dataclass(frozen=True)
class Certificate:
    """CERTIFY of one original: its class (or ABSTAIN), pA lower bound and radius."""

    label: int
    pa_lower: float
    radius: float
    settings: dict

    @property
    def certified(self) -> bool:
        return self.label != ABSTAIN


def certify_original(
    classifier: SmoothedClassifier, x: np.ndarray, *, rng: np.random.Generator, n0: int, n: int, alpha: float
) -> Certificate:
    """CERTIFY(x, n0, n, alpha) with fresh noisy copies drawn from ``rng`` (selection, then estimation)."""
    point = np.asarray(x, dtype=np.float32)[None]
    counts0 = classifier.votes([(point, rng)], n=n0)[0][0]
    counts = classifier.votes([(point, rng)], n=n)[0][0]
    label, p_lower, radius = certify(counts0, counts, classifier.sigma, alpha)
    return Certificate(label, float(p_lower), float(radius), {"n0": n0, "n": n, "alpha": alpha})


def eq6_bound(certificate: Certificate | None, *, sigma: float, n: int, pa: float) -> float | None:
    """Eq. (6) with the certified radius: None without smoothing or when CERTIFY abstained."""
    if certificate is None or sigma == 0 or not certificate.certified:
        return None
    return float(certificate.radius + sigma * special.ndtri(1.0 - pa_vote_threshold(n, pa)))
