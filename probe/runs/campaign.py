"""Attack many images with many attacks through one engine, and turn outcomes into records.

For each image the label of the original under the ideal smoothed classifier
g_sigma (estimated from ``p_adv_samples`` fresh votes of g_{sigma,n}, not
charged to the attacker) is the label to move away from, as in eq. (4); images
whose true label is known and differs are skipped (already misclassified). Every (image, attack) pair is one engine job with its own
oracle, budget and seeded streams. After an attack, ``p_adv`` is estimated
from fresh smoothed evaluations that no attacker pays for; ``success`` needs
an adversarial found and ``p_adv >= pa``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from probe.attacks import make_attack
from probe.attacks.base import distance
from probe.data import ImageSet
from probe.engine import Engine, Job
from probe.oracle import Criterion, Oracle, estimate_p_adv, majority
from probe.smoothing import SmoothedClassifier

STREAM_CLEAN, STREAM_ATTACK, STREAM_ORACLE, STREAM_PADV = 10, 11, 12, 13


@dataclass(frozen=True, kw_only=True)
class AttackConfig:
    """Settings shared by every job of a run."""

    attacks: tuple[str, ...] = ("hsja", "surfree", "rays")
    norm: str = "l2"
    pa: float = 0.5
    budget: int = 2000
    seed: int = 0
    targeted: int | None = None
    p_adv_samples: int = 100
    confirm_share: float = 0.15

    def confirm_votes(self) -> int:
        """Answers per confirmation check: about ten checks fit the kept-back share."""
        return int(np.clip(int(self.confirm_share * self.budget) // 10, 6, 16))


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def clean_labels(
    classifier: SmoothedClassifier, images: ImageSet, seed: int, evaluations: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """The label of each original under the ideal smoothed classifier g_sigma, and how often
    the practical g_{sigma,n} agrees with the true label.

    Each image gets ``evaluations`` fresh majority votes of g_{sigma,n} (seeded per image,
    charged to nobody). The label to move away from is the argmax of all their votes
    together (g_sigma estimated with evaluations * n samples: the reference of eq. (4));
    the second array is, per image, the fraction of the evaluations whose majority vote
    is the true label (NaN when the label is unknown): the defended classifier's accuracy.
    """
    evaluations = 1 if classifier.sigma == 0 else evaluations
    requests = [
        (np.broadcast_to(images.x[i], (evaluations, *images.x.shape[1:])), _rng(seed, i, STREAM_CLEAN))
        for i in range(len(images))
    ]
    labels, agree = [], []
    for i, votes in enumerate(classifier.votes(requests)):
        labels.append(int(np.argmax(votes.sum(axis=0))))
        true = images.labels[i]
        agree.append(float(np.mean(majority(votes) == true)) if true >= 0 else float("nan"))
    return np.array(labels, dtype=np.int64), np.array(agree)


def _attack_norm(name: str, norm: str) -> str:
    return "linf" if name == "rays" else ("l2" if name == "surfree" else norm)


def build_jobs(
    classifier: SmoothedClassifier,
    images: ImageSet,
    clean: np.ndarray,
    accuracy: np.ndarray,
    config: AttackConfig,
) -> tuple[list[Job], list[dict]]:
    """Engine jobs for every (image, attack) to run, and records for the skipped ones."""
    jobs, skipped = [], []
    for i in range(len(images)):
        label = int(images.labels[i]) if images.labels[i] >= 0 else None
        x_init = None
        reason = None
        if config.targeted is None:
            criterion = Criterion(int(clean[i]), pa=config.pa)
            if label is not None and clean[i] != label:
                reason = "misclassified"
        else:
            criterion = Criterion(config.targeted, targeted=True, pa=config.pa)
            if clean[i] == config.targeted:
                reason = "already the target class"
            else:
                starts = np.flatnonzero(clean == config.targeted)
                x_init = images.x[starts[0]] if len(starts) else None
        for a, name in enumerate(config.attacks):
            meta = {
                "index": i,
                "attack": name,
                "attack_index": a,
                "label": label,
                "clean_label": int(clean[i]),
                "clean_accuracy": None if label is None else float(accuracy[i]),
            }
            if reason is not None:
                skipped.append(_record(meta, images, classifier, config, None, None, 0.0, reason))
                continue
            attack = make_attack(name, norm=_attack_norm(name, config.norm))
            if classifier.sigma > 0 and config.confirm_share > 0:
                # a randomized oracle: keep part of the budget to confirm the final point
                attack.confirm_with(config.confirm_votes(), config.pa, config.confirm_share)
            gen = attack.run(images.x[i], config.budget, _rng(config.seed, i, a, STREAM_ATTACK), x_init)
            oracle = Oracle(classifier, criterion, config.budget, _rng(config.seed, i, a, STREAM_ORACLE))
            meta["criterion"] = criterion
            meta["started"] = time.perf_counter()
            jobs.append(Job(gen, oracle, meta))
    return jobs, skipped


def _record(meta, images, classifier, config, job, p_adv, seconds, skipped=None) -> dict:
    i = meta["index"]
    outcome = job.outcome if job is not None else None
    found = outcome is not None and outcome.found
    x0 = images.x[i]
    return {
        "image": images.ids[i],
        "label": meta["label"],
        "clean_label": meta["clean_label"],
        "clean_accuracy": meta["clean_accuracy"],
        "attack": meta["attack"],
        "norm": _attack_norm(meta["attack"], config.norm),
        "sigma": classifier.sigma,
        "n": classifier.n,
        "pa": config.pa,
        "seed": config.seed,
        "budget": config.budget,
        "targeted": config.targeted,
        "queries": job.oracle.queries if job else 0,
        "inferences": job.oracle.inferences if job else 0,
        "found": found,
        "success": bool(found and p_adv is not None and p_adv >= config.pa),
        "p_adv": p_adv,
        "l2": distance(outcome.x_adv, x0, "l2") if found else None,
        "linf": distance(outcome.x_adv, x0, "linf") if found else None,
        "seconds": round(seconds, 3),
        "skipped": skipped,
    }


def finish_job(job: Job, classifier: SmoothedClassifier, images: ImageSet, config: AttackConfig) -> dict:
    """The result record of a finished job (with its p_adv estimate)."""
    meta = job.meta
    p_adv = None
    if job.outcome is not None and job.outcome.found:
        rng = _rng(config.seed, meta["index"], meta["attack_index"], STREAM_PADV)
        p_adv = estimate_p_adv(classifier, meta["criterion"], job.outcome.x_adv, rng, config.p_adv_samples)
    return _record(meta, images, classifier, config, job, p_adv, time.perf_counter() - meta["started"])


def attack_images(
    classifier: SmoothedClassifier,
    images: ImageSet,
    config: AttackConfig,
    *,
    on_record: Callable[[dict, Job | None], None] | None = None,
    on_round: Callable[[list[Job]], None] | None = None,
    clean: tuple[np.ndarray, np.ndarray] | None = None,
    skip: Callable[[str, str], bool] | None = None,
) -> list[dict]:
    """Run every attack on every image; ``on_record(record, job)`` is called as each finishes.

    clean : the (labels, accuracy) of :func:`clean_labels`, when already computed.
    skip : ``skip(image_id, attack)`` is True for jobs already done (a resumed sweep).
    """
    if clean is None:
        clean = clean_labels(classifier, images, config.seed, config.p_adv_samples)
    jobs, skipped = build_jobs(classifier, images, clean[0], clean[1], config)
    if skip is not None:
        skipped = [r for r in skipped if not skip(r["image"], r["attack"])]
        jobs = [j for j in jobs if not skip(images.ids[j.meta["index"]], j.meta["attack"])]
    records: list[dict] = []
    for rec in skipped:
        records.append(rec)
        if on_record:
            on_record(rec, None)

    def done(job: Job) -> None:
        rec = finish_job(job, classifier, images, config)
        records.append(rec)
        if on_record:
            on_record(rec, job)

    Engine(classifier).run(jobs, on_result=done, on_round=on_round)
    return records
