"""Our HSJA against ART's HopSkipJump at equal queries, through the same oracle.

    pip install --no-deps adversarial-robustness-toolbox six tqdm scikit-learn joblib threadpoolctl cloudpickle narwhals
    python benchmarks/art_hsja.py                                   # CIFAR CNN, 10 images, plain and sigma=0.05 n=10
    python benchmarks/art_hsja.py --model efficientnet-lite0 --images 3 --max-iter 3

ART is not a probe dependency: install it (without its optional deep-learning
back-ends) only to run this script. Both attacks see the same thing: ART gets a
``BlackBoxClassifier`` whose predict function answers the one-hot of our Oracle's
decision (class 1 = adversarial under the criterion "not the smoothed label of
the original", y = class 0), with a counter of every point it asks. ART cannot be
capped at an exact number of queries, so it runs first with ``max_iter`` /
``init_eval`` / ``max_eval``, its queries are counted, and our HSJA then gets
exactly that budget; under smoothing ours runs as ``probe attack`` runs it, with the
confirmation phase (15% of the budget kept back to confirm the final point;
``--no-confirm`` turns it off). Reported per setting: median L2 of the returned points
(failures count as infinite), the fraction whose p_adv (fresh evaluations, not
charged) is >= 0.5, and wall time, ours vs ART's.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from probe.attacks import Confirmed, make_attack, run_attack
from probe.runs.campaign import AttackConfig
from probe.data import load_images
from probe.zoo import default_images, resolve_model
from probe.oracle import Criterion, Oracle, estimate_p_adv, majority
from probe.smoothing import SmoothedClassifier
from probe.runtime import Runtime

from _common import write_results


def art_attack(oracle: Oracle, x0: np.ndarray, max_iter: int, init_eval: int, max_eval: int, batch: int):
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifier

    def predict(x):
        answers = oracle(np.asarray(x, dtype=np.float32))
        out = np.zeros((len(x), 2), dtype=np.float32)
        out[np.arange(len(x)), answers.astype(int)] = 1.0
        return out

    clf = BlackBoxClassifier(predict, x0.shape, 2, clip_values=(0.0, 1.0))
    attack = HopSkipJump(clf, batch_size=batch, targeted=False, norm=2, max_iter=max_iter, max_eval=max_eval,
                         init_eval=init_eval, init_size=100, verbose=False)
    x_adv = attack.generate(x0[None], y=np.array([[1.0, 0.0]], dtype=np.float32))[0]
    return x_adv


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="cifar10-cnn")
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--setting", action="append", help="sigma:n, repeatable [0:1, 0.05:10]")
    ap.add_argument("--max-iter", type=int, default=6, help="ART's max_iter (sets the query budget)")
    ap.add_argument("--init-eval", type=int, default=100)
    ap.add_argument("--max-eval", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--p-adv-samples", type=int, default=50)
    ap.add_argument("--no-confirm", action="store_true",
                    help="under smoothing, run our HSJA without the confirmation phase `probe attack` uses")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    runtime = Runtime(resolve_model(args.model), batch_size=args.batch_size)
    images = load_images([str(default_images(args.model))], runtime.spec.size, labels_csv=None, limit=args.images)
    settings = [tuple(float(v) for v in s.split(":")) for s in (args.setting or ["0:1", "0.05:10"])]
    rows = []
    for sigma, n in settings:
        clf = SmoothedClassifier(runtime, sigma, int(n))
        for i, x0 in enumerate(images.x):
            clean = int(majority(clf.votes([(x0[None], np.random.default_rng([0, i, 0]))])[0])[0])
            crit = Criterion(clean)
            rec = {"image": images.ids[i], "sigma": sigma, "n": clf.n}
            # ART first: its query count sets our budget
            oracle = Oracle(clf, crit, budget=10**9, rng=np.random.default_rng([0, i, 1]))
            np.random.seed(i)  # ART draws from NumPy's global generator
            start = time.perf_counter()
            x_art = art_attack(oracle, x0, args.max_iter, args.init_eval, args.max_eval, args.batch_size)
            rec["art_seconds"] = time.perf_counter() - start
            rec["queries"] = budget = oracle.queries
            found = not np.array_equal(x_art, x0)
            rec["art_l2"] = float(np.linalg.norm((x_art - x0).ravel())) if found else math.inf
            rec["art_p_adv"] = (estimate_p_adv(clf, x_art, label=clean, rng=np.random.default_rng([0, i, 3]),
                                               max_evaluations=args.p_adv_samples).p if found else 0.0)
            # ours, same oracle semantics, same budget
            oracle = Oracle(clf, crit, budget=budget, rng=np.random.default_rng([0, i, 2]))
            start = time.perf_counter()
            attack = make_attack("hsja", norm="l2")
            if sigma > 0 and not args.no_confirm:  # as `probe attack` runs it against a randomized oracle
                config = AttackConfig(budget=budget)
                share = config.settings.confirm_share
                attack = Confirmed(attack, votes=config.confirm_votes(), level=config.pa, share=share)
            outcome = run_attack(attack, x0, oracle, budget, np.random.default_rng([0, i, 4]))
            rec["ours_seconds"] = time.perf_counter() - start
            rec["ours_queries"] = oracle.queries
            rec["ours_l2"] = outcome.distance if outcome.found else math.inf
            rec["ours_p_adv"] = (estimate_p_adv(clf, outcome.x_adv, label=clean, rng=np.random.default_rng([0, i, 3]),
                                                max_evaluations=args.p_adv_samples).p if outcome.found else 0.0)
            rows.append(rec)
            print(json.dumps(rec), flush=True)
    print()
    print(f"{'model':20s} {'sigma':>5s} {'n':>3s} {'images':>6s} {'queries':>8s} {'L2 ours':>8s} {'L2 ART':>8s} "
          f"{'p_adv>=.5 ours':>14s} {'ART':>5s} {'s ours':>7s} {'s ART':>7s} {'ours<=ART':>9s} {'med ratio':>9s}")
    summary = []
    for sigma, n in settings:
        sel = [r for r in rows if r["sigma"] == sigma and r["n"] == (1 if sigma == 0 else int(n))]
        s = {
            "model": args.model, "sigma": sigma, "n": sel[0]["n"], "images": len(sel),
            "median_queries": statistics.median(r["queries"] for r in sel),
            "median_l2_ours": statistics.median(r["ours_l2"] for r in sel),
            "median_l2_art": statistics.median(r["art_l2"] for r in sel),
            "success_ours": sum(r["ours_p_adv"] >= 0.5 for r in sel) / len(sel),
            "success_art": sum(r["art_p_adv"] >= 0.5 for r in sel) / len(sel),
            "median_seconds_ours": statistics.median(r["ours_seconds"] for r in sel),
            "median_seconds_art": statistics.median(r["art_seconds"] for r in sel),
            "ours_better_or_equal": sum(r["ours_l2"] <= r["art_l2"] for r in sel),
            "median_ratio_ours_art": statistics.median(
                r["ours_l2"] / r["art_l2"] if math.isfinite(r["art_l2"]) else (1.0 if r["ours_l2"] == r["art_l2"] else 0.0)
                for r in sel
            ),
        }
        summary.append(s)
        print(f"{args.model:20s} {sigma:5.2f} {s['n']:3d} {len(sel):6d} {s['median_queries']:8.0f} "
              f"{s['median_l2_ours']:8.3f} {s['median_l2_art']:8.3f} {s['success_ours']:14.0%} {s['success_art']:5.0%} "
              f"{s['median_seconds_ours']:7.2f} {s['median_seconds_art']:7.2f} "
              f"{s['ours_better_or_equal']:5d}/{len(sel):<3d} {s['median_ratio_ours_art']:9.3f}")
    write_results(args.json, summary=summary, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
