"""Attack many images with many attacks through one engine, and turn outcomes into records.

For each image, g_sigma's label of the original (estimated from fresh evaluations of
g_{sigma,n} with a sequential stop, charged to no attacker) is the label to move away
from, as in eq. (4); images whose true label is known and differs are skipped (already
misclassified). Every (image, attack) pair is one engine job with its own oracle, budget
and random streams. The attacker's answers follow ``criterion`` (``label`` or the
paper's ``paper`` simulation). The verdict is eq. (4) once, as a test: ``p_adv`` from
fresh plurality votes, ``verdict`` "adversarial" (its interval lies at or above P_a), "not
adversarial" (below) or "undecided" (the evaluations ran out), ``success`` = "adversarial".
The adversarial rounded to 8 bits (what a PNG holds) is judged the same way
(``verdict_8bit``). In the ``uint8`` domain every point asked is on the 8-bit grid already.

Against a remote model every evaluation of the verdict is a query to the endpoint
(charged to the key; a defended endpoint's answer is one evaluation of its own
g_{sigma,n}). When the key's budget runs out, a job ends as if its own budget were
spent (``stopped``), and a verdict that can no longer be paid for is not invented:
``p_adv``, ``verdict`` and ``success`` are null and ``verdict_note`` says why.

Every random stream is keyed by the image's content (a hash of its canonical array)
and by the attack's name and parameters, never by a position in a list: a record is the
same whatever else runs and in whatever order.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

from probe.attacks import resolve_norm
from probe.attacks.base import AttackGen, distance, to_grid
from probe.data import ImageSet
from probe.engine import Engine, Job, auto_max_jobs
from probe.errors import EndpointBudgetSpent
from probe.oracle import CleanLabel, Criterion, Oracle, PAdv, clean_label, estimate_p_adv
from probe.runs import streams
from probe.runs.record import AttackRecord
from probe.runs.settings import RunSettings
from probe.runs.verdict import Certificate, certify_original, eq6_bound
from probe.smoothing import SmoothedClassifier

SPENT = "endpoint budget spent"


#: the settings of every job of a run (one object for the command line and the sweeps)
AttackConfig = RunSettings


def clean_labels(
    classifier: SmoothedClassifier, images: ImageSet, *, seed: int, evaluations: int = 100, confidence: float = 0.99
) -> list[CleanLabel]:
    """g_sigma's label of each original, with its vote margin and how often g_{sigma,n}
    gives the true label (the defended classifier's accuracy on it); see :func:`probe.oracle.clean_label`."""
    return [
        clean_label(
            classifier,
            images.x[i],
            rng=streams.stream(seed, streams.image_key(images.x[i]), kind=streams.CLEAN),
            true_label=int(images.labels[i]) if images.labels[i] >= 0 else None,
            max_evaluations=evaluations,
            confidence=confidence,
        )
        for i in range(len(images))
    ]


def build_jobs(
    classifier: SmoothedClassifier, images: ImageSet, clean: list[CleanLabel], config: AttackConfig
) -> tuple[list[Job], list[dict]]:
    """Engine jobs for every (image, attack) to run, and records for the skipped ones."""
    attacks = {name: config.attack(name, classifier.random) for name in config.attacks}
    jobs, skipped = [], []
    for i in range(len(images)):
        label = int(images.labels[i]) if images.labels[i] >= 0 else None
        x_init, reason = None, None
        if config.targeted is None:
            criterion = Criterion(clean[i].label, rule=config.criterion, pa=config.pa)
            if label is not None and clean[i].label != label:
                reason = "misclassified"
        else:
            criterion = Criterion(config.targeted, targeted=True, rule=config.criterion, pa=config.pa)
            if clean[i].label == config.targeted:
                reason = "already the target class"
            else:
                starts = [j for j, c in enumerate(clean) if c.label == config.targeted]
                x_init = images.x[starts[0]] if starts else None
        ikey = streams.image_key(images.x[i])
        for name, attack in attacks.items():
            meta = {
                "index": i,
                "attack": name,
                "params": attack.params(),
                "label": label,
                "clean": clean[i],
                "image_key": ikey,
                "attack_key": streams.attack_key(attack),
                "criterion": criterion,
            }
            if reason is not None:
                skipped.append(_record(meta, images, classifier, config, skipped=reason))
                continue
            rng = streams.stream(config.seed, ikey, meta["attack_key"], kind=streams.ATTACK)
            gen = _timed(attack.run(images.x[i], config.budget, rng, x_init, domain=config.domain), meta)
            rng = streams.stream(config.seed, ikey, meta["attack_key"], kind=streams.ORACLE)
            oracle = Oracle(classifier, criterion, budget=config.budget, rng=rng, domain=config.domain)
            jobs.append(Job(gen, oracle, meta))
    return jobs, skipped


def _timed(gen: AttackGen, meta: dict) -> AttackGen:
    """``gen``, with ``meta["started"]`` set when the engine starts it (not while it waits)."""
    meta["started"] = time.perf_counter()
    return (yield from gen)


def _p_adv(classifier: SmoothedClassifier, config: AttackConfig, meta: dict, x: np.ndarray, kind: int):
    criterion = meta["criterion"]
    return estimate_p_adv(
        classifier, x, label=criterion.label, targeted=criterion.targeted, pa=config.pa,
        rng=streams.stream(config.seed, meta["image_key"], meta["attack_key"], kind=kind),
        max_evaluations=config.p_adv_samples, confidence=config.confidence,
    )  # fmt: skip


def _interval(p: PAdv | None) -> list[float] | None:
    return None if p is None else [round(p.low, 4), round(p.high, 4)]


def _record(
    meta: dict,
    images: ImageSet,
    classifier: SmoothedClassifier,
    config: AttackConfig,
    *,
    job: Job | None = None,
    certificate: Certificate | None = None,
    skipped: str | None = None,
) -> dict:
    i, clean = meta["index"], meta["clean"]
    outcome = job.outcome if job is not None else None
    found = outcome is not None and outcome.found
    x0 = images.x[i]
    if found and hasattr(classifier.runtime, "as_sent"):  # a remote UINT8 input: measured (and saved) as sent
        job.outcome = outcome = dataclasses.replace(outcome, x_adv=classifier.runtime.as_sent(outcome.x_adv))
    p = q = note = None
    if found:
        try:
            p = _p_adv(classifier, config, meta, outcome.x_adv, streams.PADV)
            on_grid = config.domain == "uint8" or bool(np.array_equal(to_grid(outcome.x_adv), outcome.x_adv))
            q = p if on_grid else _p_adv(classifier, config, meta, to_grid(outcome.x_adv), streams.PADV8)
        except EndpointBudgetSpent:  # the spent key cannot pay for the fresh evaluations
            p = q = None
            note = f"{SPENT}: p_adv not measured"
    success = None if note or skipped else bool(found and p.adversarial)
    l2 = distance(outcome.x_adv, x0, "l2") if found else None
    criterion = meta["criterion"]
    bound = eq6_bound(
        certificate, sigma=classifier.sigma, n=classifier.n, pa=config.pa, label=criterion.label, targeted=criterion.targeted
    )
    record = AttackRecord(
        image=images.ids[i],
        label=meta["label"],
        clean_label=clean.label,
        clean_margin=round(clean.margin, 4),
        clean_evaluations=clean.evaluations,
        clean_accuracy=clean.accuracy,
        attack=meta["attack"],
        preset=config.preset,
        params=meta["params"],
        criterion=config.criterion,
        domain=config.domain,
        norm=resolve_norm(meta["attack"], config.norm),
        sigma=classifier.sigma,
        n=classifier.n,
        pa=config.pa,
        seed=config.seed,
        budget=config.budget,
        targeted=config.targeted,
        queries=job.oracle.queries if job else 0,
        inferences=job.oracle.inferences if job else 0,
        found=found,
        confirmed=outcome.confirmed if outcome is not None else None,
        success=success,
        verdict=None if p is None else p.verdict,
        verdict_note=note,
        stopped=job.stopped if job else None,
        early_stop=classifier.early_stop,
        p_adv=None if p is None else p.p,
        p_adv_interval=_interval(p),
        p_adv_evaluations=None if p is None else p.evaluations,
        p_adv_confidence=config.confidence,
        p_adv_8bit=None if q is None else q.p,
        p_adv_8bit_interval=_interval(q),
        verdict_8bit=None if q is None else q.verdict,
        l2=l2,
        linf=distance(outcome.x_adv, x0, "linf") if found else None,
        certified_radius=None if certificate is None else certificate.radius,
        certify=None if certificate is None else certificate.settings,
        bound_eq6=bound,
        below_bound_eq6=bool(success and bound is not None and l2 < bound),
        trajectory=outcome.trajectory if outcome is not None else None,
        seconds=round(time.perf_counter() - meta["started"], 3) if "started" in meta else 0.0,
        skipped=skipped,
    )
    return {**record.to_dict(), **getattr(classifier.runtime, "record_fields", {})}  # remote: endpoint, protocol, ...


def _uint8_input(classifier: SmoothedClassifier) -> bool:
    """Whether the model takes 8-bit input (a remote UINT8 endpoint): the ``uint8`` domain."""
    spec = getattr(classifier.runtime, "input", None)
    return getattr(spec, "datatype", None) == "UINT8"


def finish_job(
    job: Job, classifier: SmoothedClassifier, images: ImageSet, config: AttackConfig, *, certificate=None
) -> dict:
    """The result record of a finished job: eq. (4)'s p_adv, distances and certified radius."""
    return _record(job.meta, images, classifier, config, job=job, certificate=certificate)


def attack_images(
    classifier: SmoothedClassifier,
    images: ImageSet,
    config: AttackConfig,
    *,
    on_record: Callable[[dict, Job | None], None] | None = None,
    on_round: Callable[[list[Job]], None] | None = None,
    clean: list[CleanLabel] | None = None,
    skip: Callable[[str, str], bool] | None = None,
    certificates: dict[str, Certificate] | None = None,
    max_jobs: int | None = None,
) -> list[dict]:
    """Run every attack on every image; ``on_record(record, job)`` is called as each finishes.

    clean : the labels of :func:`clean_labels`, when already computed.
    skip : ``skip(image_id, attack)`` is True for jobs already done (a resumed sweep).
    certificates : a cache of CERTIFY results by image id, filled as images are certified.
    max_jobs : (image, attack) jobs running at once, in order (None: ``config.max_jobs``, else
        :func:`probe.engine.auto_max_jobs` of the image size). Records do not depend on it.
    """
    if config.domain == "uint8" or _uint8_input(classifier):  # 8-bit originals; an 8-bit endpoint implies it
        config = dataclasses.replace(config, domain="uint8")
        images = dataclasses.replace(images, x=to_grid(images.x))
    if clean is None:
        clean = clean_labels(
            classifier, images, seed=config.seed, evaluations=config.p_adv_samples, confidence=config.confidence
        )
    jobs, skipped = build_jobs(classifier, images, clean, config)
    if skip is not None:
        skipped = [r for r in skipped if not skip(r["image"], r["attack"])]
        jobs = [j for j in jobs if not skip(images.ids[j.meta["index"]], j.meta["attack"])]
    certificates = {} if certificates is None else certificates
    records: list[dict] = []
    for rec in skipped:
        records.append(rec)
        if on_record:
            on_record(rec, None)

    def done(job: Job) -> None:
        i = job.meta["index"]
        if classifier.sigma > 0 and config.certify_n > 0 and images.ids[i] not in certificates:
            rng = streams.stream(config.seed, job.meta["image_key"], kind=streams.CERTIFY)
            try:
                certificates[images.ids[i]] = certify_original(
                    classifier, images.x[i], rng=rng, n0=config.certify_n0, n=config.certify_n, alpha=config.certify_alpha
                )
            except EndpointBudgetSpent:  # no radius: the record is still written
                pass
        rec = finish_job(job, classifier, images, config, certificate=certificates.get(images.ids[i]))
        records.append(rec)
        if on_record:
            on_record(rec, job)

    if max_jobs is None:
        max_jobs = config.max_jobs or auto_max_jobs(int(np.prod(images.x.shape[1:])))
    Engine(classifier, max_jobs=max_jobs).run(jobs, on_result=done, on_round=on_round)
    return records
