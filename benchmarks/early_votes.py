"""Votes that stop when decided: inferences and wall time per query, early against full votes.

    python benchmarks/early_votes.py                                   # CIFAR CNN and EfficientNet-Lite0, n = 10 and 100
    python benchmarks/early_votes.py --case cifar10-cnn:10:6:200       # model:n:images:budget, repeatable

For each case (sigma 0.05 by default, HSJA, SurFree and RayS as ``probe attack`` builds
them, the confirmation phase included, label criterion): the clean labels, then every
attack on every image through one Engine, once with full votes and once with votes that
stop when decided (the default), alternated ``--repeats`` times. Reported per side:
inferences per query and wall time per query of the engine run (clean labels, p_adv and
CERTIFY are outside the timing). The full-vote run also gives the bound: each query's
vote counts replayed in ``--orders`` random orders, one vote at a time, until its answer
is decided (the same rule, ``Criterion.needed``); the early run should spend that many
inferences per query (within noise: its queries are not the same points). Beside it, the
mean fresh evaluations per found record of the sequential p_adv test (eq. 4), measured on
the early run's results.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from probe.engine import Engine
from probe.load import load_samples
from probe.oracle import estimate_p_adv
from probe.runs import streams
from probe.runs.campaign import AttackConfig, build_jobs, clean_labels
from probe.runtime import Runtime
from probe.smoothing import SmoothedClassifier
from probe.zoo import resolve_model

from _common import Report

DEFAULT_CASES = ["cifar10-cnn:10:6:200", "cifar10-cnn:100:3:100", "efficientnet-lite0:10:2:100",
                 "efficientnet-lite0:100:1:40"]  # fmt: skip


def replayed_stop(counts: np.ndarray, criterion, n: int, rng: np.random.Generator, orders: int) -> float:
    """Mean votes after which ``criterion``'s answer is decided, over random orders of the votes ``counts`` (K,)."""
    votes = np.repeat(np.arange(len(counts)), counts)
    stops = []
    for _ in range(orders):
        order = rng.permutation(votes)
        prefix = np.zeros((n + 1, len(counts)), np.int64)
        prefix[np.arange(1, n + 1), order] = 1
        prefix = np.cumsum(prefix, axis=0)
        stops.append(int(np.argmax(criterion.needed(prefix, n) == 0)))
    return float(np.mean(stops))


def run_side(clf: SmoothedClassifier, images, clean, config: AttackConfig, *, early: bool, log: list | None):
    """One engine run of every attack on every image; returns (seconds, queries, inferences, jobs)."""
    clf.early_stop = early
    jobs, _ = build_jobs(clf, images, clean, config)
    if log is not None:  # keep every query's full vote counts and criterion (for the replayed bound)
        for job in jobs:
            judge = job.oracle.judge

            def logged(votes, _judge=judge, _crit=job.oracle.criterion):
                log.extend((row, _crit) for row in np.atleast_2d(votes))
                return _judge(votes)

            job.oracle.judge = logged
    start = time.perf_counter()
    Engine(clf).run(jobs)
    seconds = time.perf_counter() - start
    queries = sum(j.oracle.queries for j in jobs)
    return seconds, queries, sum(j.oracle.inferences for j in jobs), jobs


def p_adv_evaluations(clf: SmoothedClassifier, jobs, config: AttackConfig) -> list[int]:
    """Fresh evaluations the sequential p_adv test spends on each found adversarial (early votes)."""
    clf.early_stop = True
    spent = []
    for job in jobs:
        if job.outcome is None or not job.outcome.found:
            continue
        crit = job.meta["criterion"]
        rng = streams.stream(config.seed, job.meta["image_key"], job.meta["attack_key"], kind=streams.PADV)
        est = estimate_p_adv(clf, job.outcome.x_adv, label=crit.label, targeted=crit.targeted, pa=config.pa, rng=rng,
                             max_evaluations=config.p_adv_samples, confidence=config.confidence)  # fmt: skip
        spent.append(est.evaluations)
    return spent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", help=f"model:n:images:budget, repeatable {DEFAULT_CASES}")
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--attacks", default="hsja,surfree,rays")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1, help="full / early alternations (median wall time)")
    ap.add_argument("--orders", type=int, default=4, help="random orders per query for the replayed bound")
    ap.add_argument("--p-adv-samples", type=int, default=32, help="most fresh evaluations of the clean label and p_adv")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    report = Report(f"{'model':20s} {'n':>3s} {'jobs':>4s} {'load':>4s} {'q full':>6s} {'q early':>7s} "
                    f"{'inf/q full':>10s} {'bound':>6s} {'inf/q early':>11s} {'early/bound':>11s} "
                    f"{'ms/q full':>9s} {'ms/q early':>10s} {'time ratio':>10s} {'p_adv evals':>11s}")
    for case in args.case or DEFAULT_CASES:
        model, n, count, budget = case.split(":")
        n, count, budget = int(n), int(count), int(budget)
        runtime = Runtime(resolve_model(model), batch_size=args.batch_size)
        images = load_samples(model, limit=count)
        config = AttackConfig(attacks=tuple(args.attacks.split(",")), budget=budget, seed=args.seed,
                              p_adv_samples=args.p_adv_samples, certify_n=0)  # fmt: skip
        clf = SmoothedClassifier(runtime, args.sigma, n)
        load = os.getloadavg()[0]
        clean = clean_labels(clf, images, seed=args.seed, evaluations=args.p_adv_samples)
        full_ms, early_ms, ratios, log = [], [], [], []
        for rep in range(args.repeats):
            sides = (False, True) if rep % 2 == 0 else (True, False)
            ms = {}
            for early in sides:
                seconds, queries, inferences, jobs = run_side(
                    clf, images, clean, config, early=early, log=log if (rep == 0 and not early) else None
                )
                ms[early] = seconds / max(queries, 1) * 1e3
                if rep == 0:
                    if early:
                        early_q, early_inf, early_jobs = queries, inferences, jobs
                    else:
                        full_q, full_inf = queries, inferences
            full_ms.append(ms[False])
            early_ms.append(ms[True])
            ratios.append(ms[True] / ms[False])
        rng = np.random.default_rng(args.seed)
        bound = float(np.mean([replayed_stop(row, crit, n, rng, args.orders) for row, crit in log]))
        evals = p_adv_evaluations(clf, early_jobs, config)
        record = dict(
            model=model, n=n, sigma=args.sigma, images=len(images), attacks=args.attacks.split(","), budget=budget,
            batch_size=runtime.batch_size, load=load, repeats=args.repeats, full_queries=full_q,
            early_queries=early_q, full_inferences_per_query=full_inf / full_q, replayed_bound=bound,
            replayed_bound_over_n=bound / n, early_inferences_per_query=early_inf / early_q,
            early_over_bound=early_inf / early_q / bound, full_ms_per_query=statistics.median(full_ms),
            early_ms_per_query=statistics.median(early_ms), time_ratio=statistics.median(ratios),
            time_ratios=ratios, p_adv_records=len(evals), p_adv_mean_evaluations=float(np.mean(evals)) if evals else None,
        )  # fmt: skip
        jobs_count = len(images) * len(record["attacks"])
        report.add(record, f"{model:20s} {n:3d} {jobs_count:4d} {load:4.1f} {full_q:6d} {early_q:7d} "
                           f"{full_inf / full_q:10.2f} {bound:6.2f} {early_inf / early_q:11.2f} "
                           f"{record['early_over_bound']:11.3f} {record['full_ms_per_query']:9.2f} "
                           f"{record['early_ms_per_query']:10.2f} {record['time_ratio']:10.3f} "
                           f"{record['p_adv_mean_evaluations'] or float('nan'):11.1f}")  # fmt: skip
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
