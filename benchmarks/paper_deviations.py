"""The ``paper`` preset's deviations from the reference codes, one at a time: each row is the
paper preset with ONE option set back to probe's choice, against the paper preset itself, on
the same model, images, oracle and seeds (geometric mean of the L2 ratio over the images; < 1:
the change gets closer). SurFree rows also count the queries spent in angle bisections.

    python benchmarks/paper_deviations.py --model cifar10-cnn --images 10 --budget 500 \\
        --rows results/paper_deviations.jsonl
    python benchmarks/paper_deviations.py --summary results/paper_deviations.jsonl

No smoothing (the attacker's answers are the model's labels): the rules are compared, not
their robustness to noise. RayS is run in Linf (its native norm); its L2 is reported.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import probe.attacks.noisy_search as noisy_search  # noqa: E402
import probe.attacks.surfree as surfree_module  # noqa: E402
from probe.attacks import attack_class, run_attack  # noqa: E402
from probe.attacks.presets import AttackSettings, build_attack  # noqa: E402

#: (attack, label, options on top of the paper preset); the label "paper" is the reference row
CONFIGS = [
    ("surfree", "paper", {}),
    ("surfree", "bs_rule=width", {"bs_rule": "width"}),
    ("surfree", "opposite=false", {"opposite": False}),
    ("surfree", "final_search=false", {"final_search": False}),
    ("surfree", "ortho=current", {"ortho": "current"}),
    ("surfree", "start=probe", {"start": "probe", "max_init_tries": 100}),
    ("surfree", "max_angle=81", {"max_angle": 81.0}),
    ("surfree", "4392fee: T=3, n_ortho=100", {"T": 3, "n_ortho": 100}),
    ("hsja", "paper", {}),
    ("hsja", "search=gallop", {"search": "gallop"}),
    ("hsja", "delta_from=after", {"delta_from": "after"}),
    ("hsja", "report=best", {"report": "best"}),
    ("hsja", "max_init_tries=100, max_halvings=20", {"max_init_tries": 100, "max_halvings": 20}),
    ("hsja", "gamma=0.01, dim_power=0.5 (ART's theta)", {"gamma": 0.01, "dim_power": 0.5}),
    ("rays", "paper", {}),
    ("rays", "search=gallop", {"search": "gallop"}),
    ("rays", "start=probe", {"start": "probe"}),
    ("cgba", "paper", {}),
    ("cgba", "start=uniform", {"start": "uniform", "max_init_tries": 100}),
    ("cgba", "sigma=0 (unit probes, delta D)", {"sigma": 0.0}),
    ("cgba", "min_side=16 (16x16 subspace on 32x32)", {"min_side": 16}),
]


class Counter:
    """Counts the queries that SurFree's angle bisections spend (both rules), by wrapping the
    functions it calls: every query in them is one point sent."""

    def __init__(self) -> None:
        self.queries = 0
        self._angle = surfree_module.angle_bisection
        self._plain = noisy_search.bisect

    def __enter__(self):
        counter = self

        def counted(fn, skip_first):
            calls = [0]

            def wrapper(tracker, *args, **kwargs):
                calls[0] += 1
                before = tracker.spent
                try:
                    return (yield from fn(tracker, *args, **kwargs))
                finally:
                    if not (skip_first and calls[0] == 1):  # the width rule's first call is the start's search
                        counter.queries += tracker.spent - before

            return wrapper

        surfree_module.angle_bisection = counted(self._angle, False)
        noisy_search.bisect = counted(self._plain, True)
        return self

    def __exit__(self, *exc) -> None:
        surfree_module.angle_bisection = self._angle
        noisy_search.bisect = self._plain


def run(args) -> int:
    from probe.load import load_model, load_samples

    runtime = load_model(args.model)
    samples = load_samples(args.model, limit=args.first + args.images)
    args.rows.parent.mkdir(parents=True, exist_ok=True)
    with args.rows.open("a") as out:
        for index in range(args.first, args.first + args.images):
            x0 = samples.x[index]
            label = int(runtime.labels(x0[None])[0])

            def oracle(points, label=label):
                return runtime.labels(points) != label

            for name, label_, options in CONFIGS:
                if args.attack and name not in args.attack:
                    continue
                settings = AttackSettings(preset="paper", options={name: options})
                norms = attack_class(name).norms
                attack = build_attack(name, norm="l2" if "l2" in norms else norms[0], settings=settings)
                start = time.perf_counter()
                with Counter() as counter:
                    outcome = run_attack(attack, x0, oracle, args.budget, np.random.default_rng([args.seed, index]))
                l2 = float(np.linalg.norm((outcome.x_adv - x0).ravel())) if outcome.found else math.inf
                row = {"model": args.model, "image": samples.ids[index], "attack": name, "config": label_,
                       "budget": args.budget, "seed": args.seed, "l2": l2, "queries": outcome.queries,
                       "bisection_queries": counter.queries if name == "surfree" else None,
                       "seconds": time.perf_counter() - start}
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(f"{samples.ids[index]:22s} {name:8s} {label_:40s} L2 {l2:8.4f} "
                      f"bisection {row['bisection_queries']} {row['seconds']:.1f}s", flush=True)
    return 0


def summary(path: Path) -> int:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ref = {(r["attack"], r["image"], r["budget"], r["seed"]): r for r in rows if r["config"] == "paper"}
    print("| attack | configuration | images | geo-mean L2 / paper's | median L2 | bisection queries (min-max) |")
    print("|---|---|---|---|---|---|")
    for name, label_, _ in CONFIGS:
        mine = [r for r in rows if r["attack"] == name and r["config"] == label_]
        pairs = [(r, ref[(name, r["image"], r["budget"], r["seed"])]) for r in mine
                 if (name, r["image"], r["budget"], r["seed"]) in ref]
        pairs = [(a, b) for a, b in pairs if math.isfinite(a["l2"]) and math.isfinite(b["l2"]) and b["l2"] > 0]
        if not pairs:
            continue
        geo = math.exp(statistics.fmean(math.log(a["l2"] / b["l2"]) for a, b in pairs))
        bis = [r["bisection_queries"] for r in mine if r["bisection_queries"] is not None]
        spread = f"{min(bis)}-{max(bis)}" if bis else "-"
        print(f"| {name} | {label_} | {len(pairs)} | {geo:.3f} | {statistics.median(a['l2'] for a, _ in pairs):.3f} "
              f"| {spread} |")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cifar10-cnn")
    parser.add_argument("--first", type=int, default=0, help="first bundled image")
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attack", action="append", help="only these attacks (repeatable)")
    parser.add_argument("--rows", type=Path, default=Path("results/paper_deviations.jsonl"))
    parser.add_argument("--summary", type=Path, help="print the table of a rows file and exit")
    args = parser.parse_args(argv)
    if args.summary:
        return summary(args.summary)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
