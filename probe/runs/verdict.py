"""The theory beside each result: CERTIFY of the original and eq. (6)'s lower bound.

Under smoothing each record carries the radius certified around its original
(Cohen et al.'s CERTIFY, its parameters recorded) and eq. (6)'s bound on the distance of
any adversarial of level P_a, made exact for the plurality vote and its tie rule (see
:func:`eq6_bound`). A distortion below that bound means a bug or an unsound certificate
(floating-point randomized smoothing can certify too much: Voracek and Hein), up to the
stated errors of CERTIFY (alpha) and of the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from probe.smoothing import ABSTAIN, SmoothedClassifier, certify


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


def losing_count(n: int, label: int) -> int:
    """The largest number of the ``n`` votes ``label`` can hold and still lose the plurality:
    floor((n - 1) / 2) for odd n; for even n, n / 2 when a class of lower index can win the
    n/2 : n/2 tie (``label`` > 0, ties going to the lowest index), else n / 2 - 1."""
    if n % 2:
        return (n - 1) // 2
    return n // 2 if label > 0 else n // 2 - 1


def eq6_bound(
    certificate: Certificate | None, *, sigma: float, n: int, pa: float, label: int | None, targeted: bool = False
) -> float | None:
    """Eq. (6), exact for the plurality vote: the least distance from x_o of a point where
    g_{sigma,n} leaves CERTIFY's class c_A with probability >= P_a.

    c_A loses only if it holds at most k = :func:`losing_count` of the n votes, so level
    P_a needs ``P[Bin(n, pi) <= k] >= P_a``, i.e. ``pi <= t = 1 - I^-1_{P_a}(n - k, k + 1)``
    (eq. (5); for odd n, ``n - k = k + 1 = n~``). Since ``Phi^-1(pi_{c_A})`` is
    1/sigma-Lipschitz, the distance is at least ``R + sigma Phi^-1(1 - t)``, R the radius
    certified at x_o. For even n this is up to a few thousandths of sigma below the
    paper's ``n~ = n / 2 + 1``, whose bound a legitimate point can cross when ties go
    against c_A.

    The bound holds for the record's adversarial only when leaving c_A is implied:
    untargeted, CERTIFY's class must be the clean label the attack moves away from
    (``label``); targeted, it must differ from the target (``label``). Otherwise, without
    smoothing, or when CERTIFY abstained: None.
    """
    if certificate is None or sigma == 0 or not certificate.certified or label is None:
        return None
    if (certificate.label != label) if not targeted else (certificate.label == label):
        return None
    k = losing_count(n, certificate.label)
    return float(certificate.radius + sigma * special.ndtri(special.betaincinv(n - k, k + 1, pa)))
