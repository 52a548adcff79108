"""Attack strength on the real models: probe's attacks against ART's HopSkipJump, query for query.

    pip install --no-deps adversarial-robustness-toolbox six tqdm scikit-learn joblib threadpoolctl cloudpickle narwhals
    # no smoothing: median L2 at 500, 1,000 and 2,000 queries (one 2,000-query run per attack and image)
    python benchmarks/attack_strength.py --model efficientnet-lite0 --rows results/strength_effnet.jsonl
    python benchmarks/attack_strength.py --model cifar10-cnn --rows results/strength_cifar.jsonl
    # sigma = 0.05, n = 10, P_a = 0.5, criterion label, p_adv by eq. (4), 1,000 queries
    python benchmarks/attack_strength.py --model cifar10-cnn --sigma 0.05 --n 10 --budget 1000 \\
        --rows results/strength_cifar_rs.jsonl
    # table and PNG from the rows
    python benchmarks/attack_strength.py --summarize results/strength_*.jsonl --png results/strength.png

Every attack sees the same label-only oracle and is charged every query, its start
included. ART's ``HopSkipJump`` gets a ``BlackBoxClassifier`` whose predict answers the
one-hot of that oracle's boolean (class 1 = adversarial) and is cut off at the budget.

Without smoothing, each attack runs once per image with the largest budget; the figure
at a smaller budget is the closest adversarial it had been answered by then (for ART and
for ours alike: generous to neither; probe's attacks plan their iterations for the whole
budget, so a separate run at the smaller budget would do at least as well).

Under smoothing, probe's attacks run as ``probe attack`` runs them (preset, confirmation
phase) and their result is judged by eq. (4) (sequential p_adv, up to 100 fresh
evaluations); a record counts when p_adv >= P_a. ART's result is the closest point it
queried that holds p_adv >= P_a on 100 fresh evaluations (its adversarial answers tried
in order of distance, those votes free: generous to ART).

Configurations (``--config``, repeatable): ``art``, or ``ATTACK:PRESET`` (``hsja:probe``,
``surfree:paper``, ...), or ``ATTACK:PRESET:NAME=VALUE,...`` for options on top.
Rows (one JSON line per image and configuration) are appended to ``--rows`` as they
finish, so a long run can be split over processes and resumed: a (model, setting,
configuration, image) already there is skipped.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from probe.attacks import Confirmed, run_attack
from probe.attacks.presets import AttackSettings, build_attack
from probe.load import load_model, load_samples
from probe.oracle import Criterion, Oracle, clean_label, estimate_p_adv, majority
from probe.smoothing import SmoothedClassifier

DEFAULT_CONFIGS = ["art", "hsja:probe", "hsja:paper", "surfree:probe", "surfree:paper", "rays:probe"]


class Cutoff(Exception):
    """The budget is spent: ends ART's generate() (our attacks stop by themselves)."""


class Watch:
    """The label-only oracle as the attacker calls it, cut at the budget; remembers the
    closest adversarial answer at every query count, and (under smoothing) the closest
    adversarial points for the generous scoring of ART."""

    def __init__(self, oracle, x0: np.ndarray, budget: int, keep: int = 0) -> None:
        self.oracle, self.x0, self.budget, self.keep = oracle, x0, budget, keep
        self.queries = 0
        self.best = math.inf
        self.marks: list[tuple[int, float]] = []
        self.heap: list[tuple[float, int, np.ndarray]] = []

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float32)
        take = min(len(points), self.budget - self.queries)
        answers = np.zeros(len(points), dtype=bool)
        if take > 0:
            answers[:take] = self.oracle(points[:take])
            dist = np.linalg.norm((points[:take] - self.x0[None]).reshape(take, -1).astype(np.float64), axis=1)
            for i in range(take):
                self.queries += 1
                if not answers[i]:
                    continue
                if dist[i] < self.best:
                    self.best = float(dist[i])
                    self.marks.append((self.queries, self.best))
                if self.keep:
                    item = (-float(dist[i]), self.queries, points[i].copy())
                    if len(self.heap) < self.keep:
                        heapq.heappush(self.heap, item)
                    elif item[0] > self.heap[0][0]:
                        heapq.heapreplace(self.heap, item)
        if take < len(points):
            raise Cutoff
        return answers

    def at(self, queries: int) -> float:
        value = math.inf
        for q, d in self.marks:
            if q <= queries:
                value = d
        return value


def run_art(watch: Watch, x0: np.ndarray, seed: int) -> None:
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifier

    def predict(x):
        answers = watch(np.asarray(x, dtype=np.float32))
        out = np.zeros((len(x), 2), dtype=np.float32)
        out[np.arange(len(x)), answers.astype(int)] = 1.0
        return out

    clf = BlackBoxClassifier(predict, x0.shape, 2, clip_values=(0.0, 1.0))
    attack = HopSkipJump(clf, batch_size=64, targeted=False, norm=2, max_iter=10**4, max_eval=10000,
                         init_eval=100, init_size=100, verbose=False)
    np.random.seed(seed)  # ART draws from NumPy's global generator
    try:
        attack.generate(x0[None], y=np.array([[1.0, 0.0]], dtype=np.float32))
    except Cutoff:
        pass


def fixed_p_adv(clf: SmoothedClassifier, x: np.ndarray, label: int, rng, evaluations: int) -> float:
    """p_adv on exactly ``evaluations`` fresh plurality votes (ART's generous scoring)."""
    votes = clf.votes([(np.broadcast_to(x, (evaluations, *x.shape)), rng)])[0]
    return float(np.mean(majority(votes) != label))


def parse_config(text: str) -> tuple[str, str, dict]:
    if text == "art":
        return "art", "", {}
    parts = text.split(":", 2)
    attack, preset = parts[0], parts[1] if len(parts) > 1 else "probe"
    options = {}
    if len(parts) == 3:
        for item in filter(None, parts[2].split(",")):
            key, _, raw = item.partition("=")
            try:
                options[key] = json.loads(raw)
            except json.JSONDecodeError:
                options[key] = raw
    return attack, preset, options


def attack_one(args, runtime, clf, image_id: str, index: int, x0: np.ndarray, config: str) -> dict:
    seed = [args.seed, index]
    clean = clean_label(clf, x0, rng=np.random.default_rng([*seed, 0])).label if clf.sigma > 0 else \
        int(runtime.labels(x0[None])[0])
    oracle = Oracle(clf, Criterion(clean), budget=args.budget, rng=np.random.default_rng([*seed, 1]))
    watch = Watch(oracle, x0, args.budget, keep=args.art_candidates if (config == "art" and clf.sigma > 0) else 0)
    name, preset, options = parse_config(config)
    row = {"model": args.model, "sigma": clf.sigma, "n": clf.n, "config": config, "image": image_id,
           "budget": args.budget}
    start = time.perf_counter()
    if name == "art":
        run_art(watch, x0, index)
        found_x = None
    else:
        settings = AttackSettings(preset=preset, options={name: options} if options else {})
        from probe.attacks import attack_class

        norms = attack_class(name).norms  # RayS searches in Linf (its L2 is reported, as in the paper)
        attack = build_attack(name, norm="l2" if "l2" in norms else norms[0], settings=settings)
        if clf.sigma > 0 and settings.confirm_share > 0:
            attack = Confirmed(attack, votes=args.confirm_votes, level=0.5, share=settings.confirm_share)
        outcome = run_attack(attack, x0, watch, args.budget, np.random.default_rng([*seed, 2]))
        found_x = outcome.x_adv if outcome.found else None
        row["final_l2"] = outcome.distance if outcome.found else math.inf
    row["seconds"] = time.perf_counter() - start
    row["queries"] = watch.queries
    if clf.sigma == 0:
        row["l2_at"] = {str(m): watch.at(m) for m in args.marks}
        return row
    # under smoothing: the eq. (4) verdict
    rng = np.random.default_rng([*seed, 3])
    if name == "art":
        row["l2"], row["p_adv"] = math.inf, 0.0
        for neg_dist, _, point in sorted(watch.heap, reverse=True):  # closest first
            if -neg_dist == 0.0:
                continue  # the original itself (ART asks it): not an adversarial example
            p = fixed_p_adv(clf, point, clean, rng, 100)
            if p >= 0.5:
                row["l2"], row["p_adv"] = -neg_dist, p
                break
        row["success"] = math.isfinite(row["l2"])
    else:
        if found_x is None:
            row.update(l2=math.inf, p_adv=0.0, success=False)
        else:
            verdict = estimate_p_adv(clf, found_x, label=clean, rng=rng, max_evaluations=100)
            row.update(l2=float(np.linalg.norm((found_x - x0).ravel())), p_adv=verdict.p,
                       success=bool(verdict.p >= 0.5))
    return row


def run(args) -> int:
    runtime = load_model(args.model)
    samples = load_samples(args.model, limit=args.images)
    clf = SmoothedClassifier(runtime, args.sigma, args.n)
    done = set()
    if args.rows.exists():
        for line in args.rows.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done.add((r["model"], r["sigma"], r["n"], r["budget"], r["config"], r["image"]))
    args.rows.parent.mkdir(parents=True, exist_ok=True)
    with args.rows.open("a") as out:
        # image by image, every configuration on each: a run cut short still compares them all
        for index, (image_id, x0) in enumerate(zip(samples.ids, samples.x)):
            for config in args.config or DEFAULT_CONFIGS:
                if (args.model, clf.sigma, clf.n, args.budget, config, image_id) in done:
                    continue
                row = attack_one(args, runtime, clf, image_id, index, x0, config)
                out.write(json.dumps(row) + "\n")
                out.flush()
                shown = row.get("l2_at", {"l2": row.get("l2")})
                print(f"{args.model} s={clf.sigma} {config:28s} {image_id:24s} "
                      + " ".join(f"{k}:{v:.3f}" for k, v in shown.items()) + f" {row['seconds']:.0f}s", flush=True)
    return 0


def summarize(paths: list[Path], png: Path | None, table: Path | None) -> int:
    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.strip()]
    lines = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["sigma"], r["n"], r["budget"]), []).append(r)
    for (model, sigma, n, budget), sel in sorted(groups.items()):
        configs = sorted({r["config"] for r in sel}, key=lambda c: (c != "art", c))
        if sigma == 0:
            marks = sorted({int(m) for r in sel for m in r["l2_at"]})
            med = {c: {m: statistics.median(r["l2_at"][str(m)] for r in sel if r["config"] == c) for m in marks}
                   for c in configs}
            count = {c: sum(r["config"] == c for r in sel) for c in configs}
            lines.append(f"\n{model}, no smoothing: median L2 at Q queries (ratio to ART's HSJA)\n")
            lines.append("| attack | images | " + " | ".join(f"Q = {m}" for m in marks) + " |")
            lines.append("|---|---|" + "---|" * len(marks))
            for c in configs:
                cells = []
                for m in marks:
                    ref = med.get("art", {}).get(m)
                    ratio = f" ({med[c][m] / ref:.2f}x)" if ref and c != "art" and math.isfinite(ref) else ""
                    cells.append(f"{med[c][m]:.3f}{ratio}")
                lines.append(f"| {c} | {count[c]} | " + " | ".join(cells) + " |")
        else:
            lines.append(f"\n{model}, sigma = {sigma}, n = {n}, {budget} queries, eq. (4) p_adv >= 0.5\n")
            lines.append("| attack | images | success | median L2 of successes | ratio to ART |")
            lines.append("|---|---|---|---|---|")
            meds = {}
            for c in configs:
                ok = [r["l2"] for r in sel if r["config"] == c and r["success"]]
                meds[c] = statistics.median(ok) if ok else math.inf
            for c in configs:
                total = sum(r["config"] == c for r in sel)
                ok = sum(r["success"] for r in sel if r["config"] == c)
                ratio = f"{meds[c] / meds['art']:.2f}x" if "art" in meds and c != "art" and math.isfinite(meds["art"]) else ""
                lines.append(f"| {c} | {total} | {ok}/{total} | {meds[c]:.3f} | {ratio} |")
    text = "\n".join(lines)
    print(text)
    if table:
        table.write_text(text + "\n")
    if png:
        plot(groups, png)
    return 0


def plot(groups, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plain = [(k, v) for k, v in sorted(groups.items()) if k[1] == 0]
    fig, axes = plt.subplots(1, max(len(plain), 1), figsize=(6 * max(len(plain), 1), 4.5), squeeze=False)
    for ax, ((model, _, _, _), sel) in zip(axes[0], plain):
        configs = sorted({r["config"] for r in sel}, key=lambda c: (c != "art", c))
        marks = sorted({int(m) for r in sel for m in r["l2_at"]})
        for c in configs:
            ys = [statistics.median(r["l2_at"][str(m)] for r in sel if r["config"] == c) for m in marks]
            ax.plot(marks, ys, marker="o", linestyle="--" if c == "art" else "-", color="black" if c == "art" else None,
                    label="ART HopSkipJump" if c == "art" else c)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("queries")
        ax.set_ylabel("median L2 (20 images)")
        ax.set_title(f"{model}, no smoothing")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--sigma", type=float, default=0.0)
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--marks", default="250,500,1000,2000", help="query counts reported (no smoothing)")
    ap.add_argument("--config", action="append")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--confirm-votes", type=int, default=20)
    ap.add_argument("--art-candidates", type=int, default=40, help="ART's closest adversarial answers scored")
    ap.add_argument("--rows", type=Path, default=Path("results/strength.jsonl"))
    ap.add_argument("--summarize", type=Path, nargs="+")
    ap.add_argument("--png", type=Path)
    ap.add_argument("--table", type=Path)
    args = ap.parse_args(argv)
    if args.summarize:
        return summarize(args.summarize, args.png, args.table)
    args.marks = [int(m) for m in args.marks.split(",") if int(m) <= args.budget]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
