"""Per-image prediction and certification of a smoothed classifier (Cohen et al.).

Each image gets its own noise streams, keyed by its content (:mod:`probe.runs.streams`),
so a result depends only on the seed and the image, never on its position, on which
other images run or on the batch size. CERTIFY here is the one beside every attack record
(:func:`probe.runs.verdict.certify_original`, same stream): a sweep's certify.jsonl and its
records' ``certified_radius`` agree.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from probe import smoothing
from probe.data import ImageSet
from probe.runs import streams
from probe.runs.verdict import certify_original
from probe.smoothing import SmoothedClassifier

DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)

Progress = Callable[[int], None]


def _counts(classifier: SmoothedClassifier, x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return classifier.votes([(x[None], rng)], n=n)[0][0]


def predict_images(
    classifier: SmoothedClassifier,
    images: ImageSet,
    *,
    alpha: float,
    seed: int,
    progress: Progress | None = None,
) -> list[dict]:
    """Plain label, majority-vote label and Cohen's PREDICT (with abstain) per image."""
    plain = classifier.runtime.labels(images.x)
    records = []
    for i, x in enumerate(images.x):
        counts = _counts(classifier, x, classifier.n, streams.stream(seed, streams.image_key(x), kind=streams.PREDICT))
        records.append(
            {
                "image": images.ids[i],
                "label": int(images.labels[i]) if images.labels[i] >= 0 else None,
                "plain": int(plain[i]),
                "vote": smoothing.majority_vote(counts),
                "top_votes": int(counts.max()),
                "predict": smoothing.predict(counts, alpha) if classifier.sigma > 0 else int(plain[i]),
            }
        )
        if progress:
            progress(1)
    return records


def certify_images(
    classifier: SmoothedClassifier,
    images: ImageSet,
    *,
    n0: int,
    n: int,
    alpha: float,
    seed: int,
    progress: Progress | None = None,
) -> list[dict]:
    """CERTIFY per image: predicted class (or abstain), pA lower bound, radius, correct."""
    records = []
    for i, x in enumerate(images.x):
        rng = streams.stream(seed, streams.image_key(x), kind=streams.CERTIFY)
        cert = certify_original(classifier, x, rng=rng, n0=n0, n=n, alpha=alpha)
        label, p_lower, radius = cert.label, cert.pa_lower, cert.radius
        true = int(images.labels[i]) if images.labels[i] >= 0 else None
        records.append(
            {
                "image": images.ids[i],
                "label": true,
                "predicted": label,
                "abstain": label == smoothing.ABSTAIN,
                "pa_lower": p_lower,
                "radius": radius,
                "correct": None if true is None else bool(label == true),
            }
        )
        if progress:
            progress(1)
    return records


def certified_accuracy(records: list[dict], radii=DEFAULT_RADII) -> dict[float, float]:
    """Fraction of labelled images certified correct with a radius >= r, for each r."""
    labelled = [r for r in records if r["label"] is not None]
    if not labelled:
        return {}
    return {
        float(r): sum(1 for rec in labelled if rec["correct"] and rec["radius"] >= r) / len(labelled) for r in radii
    }
