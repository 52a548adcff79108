"""Faithfulness of the ``paper`` preset: the authors' code and probe's paper preset on the same
model, images and oracle, at the same number of queries (the official run's own count, its
uncounted queries included, is probe's budget). Reported: the geometric mean over the images
of probe's L2 / the official code's L2 (faithful: within 0.9-1.1).

The official codes are NOT part of probe: check them out yourself, outside this repository,
and give the folder (it holds ``HSJA/hsja.py`` from Jianbo-Lab/HSJA and ``SurFree/`` from
t-maho/SurFree at c9920f2: ``surfree.py``, ``utils/`` and ``config_example.json``; SurFree's
needs torch)::

    python benchmarks/faithfulness.py --reference /path/to/checkouts --attack hsja --attack surfree \\
        --images 10 --rows results/faithfulness.jsonl

No smoothing: the answers are the model's labels (both sides see the same deterministic oracle).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probe.attacks import run_attack  # noqa: E402
from probe.attacks.presets import AttackSettings, build_attack  # noqa: E402


class Counted:
    """The model's labels behind the interfaces the official codes call, counting every row but
    all-zero images (SurFree's code sends one in place of a query it does not make, and does not
    count it)."""

    def __init__(self, runtime, classes: int = 10) -> None:
        self.runtime, self.classes, self.rows = runtime, classes, 0

    def labels(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        x = x[None] if x.ndim == 3 else x  # the official HSJA asks its original un-batched
        self.rows += int(np.count_nonzero(x.reshape(len(x), -1).any(axis=1)))
        return self.runtime.labels(np.clip(x, 0.0, 1.0))

    def predict(self, x):  # HSJA: probabilities (one-hot)
        return np.eye(self.classes)[self.labels(x)]


def official_hsja(reference: Path, model: Counted, x0: np.ndarray, seed: int, iterations: int) -> np.ndarray:
    sys.path.insert(0, str(reference / "HSJA"))
    import hsja as official  # noqa: PLC0415

    np.random.seed(seed)
    return official.hsja(model, x0.astype(np.float64), constraint="l2", num_iterations=iterations, verbose=False)


def official_surfree(reference: Path, model: Counted, x0: np.ndarray, seed: int, budget: int) -> np.ndarray:
    import torch  # noqa: PLC0415

    sys.path.insert(0, str(reference / "SurFree"))
    import surfree  # noqa: PLC0415

    if not getattr(surfree.Basis, "_probe_shim", False):
        # the code draws directions for an empty list of images once an image has spent its
        # max_queries inside a direction search; torch's MKL FFT then fails on the empty tensor
        draw = surfree.Basis.get_vector

        def get_vector(self, ortho_with=None, indexes=None):
            if indexes is not None and len(indexes) == 0:
                return torch.zeros_like(self.X)
            return draw(self, ortho_with, indexes)

        surfree.Basis.get_vector, surfree.Basis._probe_shim = get_vector, True
    SurFree = surfree.SurFree

    config = json.loads((reference / "SurFree" / "config_example.json").read_text())
    config["init"]["max_queries"] = budget
    # once max_queries is spent the final line search is masked out, except that it asks the
    # all-zero image and returns it when the model calls it adversarial (L2 ||x0||): switched off
    config["init"]["final_line_search"] = False

    class Net(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.as_tensor(model.labels(x.detach().numpy())), model.classes).float()

    torch.manual_seed(seed)
    net = Net()
    x = torch.as_tensor(x0[None])
    label = net(x).argmax(1)
    with contextlib.redirect_stdout(io.StringIO()):
        adv = SurFree(**config["init"])(net, x, label, **config["run"])
    return adv[0].numpy()


def run(args) -> int:
    from probe.load import load_model, load_samples

    runtime = load_model(args.model)
    samples = load_samples(args.model, limit=args.first + args.images)
    args.rows.parent.mkdir(parents=True, exist_ok=True)
    with args.rows.open("a") as out:
        for index in range(args.first, args.first + args.images):
            x0 = samples.x[index]
            label = int(runtime.labels(x0[None])[0])
            for name in args.attack:
                model = Counted(runtime)
                start = time.perf_counter()
                ref_seed = 1000 * args.seed + index
                if name == "hsja":
                    ref = official_hsja(args.reference, model, x0, ref_seed, args.hsja_iterations)
                else:
                    ref = official_surfree(args.reference, model, x0, ref_seed, args.budget)
                ref_seconds = time.perf_counter() - start
                budget = model.rows
                ref_adv = bool(runtime.labels(ref[None].astype(np.float32))[0] != label)
                attack = build_attack(name, norm="l2", settings=AttackSettings(preset="paper"))
                oracle = lambda pts, label=label: runtime.labels(pts) != label  # noqa: E731
                outcome = run_attack(attack, x0, oracle, budget, np.random.default_rng([args.seed, index]))
                row = {"model": args.model, "image": samples.ids[index], "attack": name, "seed": args.seed,
                       "queries": budget,
                       "official_l2": float(np.linalg.norm((ref - x0).ravel())), "official_adversarial": ref_adv,
                       "probe_l2": outcome.distance if outcome.found else math.inf, "official_seconds": ref_seconds}
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(f"{samples.ids[index]:22s} {name:8s} queries {budget:5d} official {row['official_l2']:.4f} "
                      f"({'adv' if ref_adv else 'NOT adv'}) probe {row['probe_l2']:.4f}", flush=True)
    return 0


def summary(path: Path) -> int:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print("| attack | runs (images x seeds) | median queries | median L2 official | median L2 probe paper "
          "| geo-mean probe / official (95% interval) |")
    print("|---|---|---|---|---|---|")
    for name in sorted({r["attack"] for r in rows}):
        mine = [r for r in rows if r["attack"] == name and math.isfinite(r["probe_l2"]) and r["official_l2"] > 0]
        logs = [math.log(r["probe_l2"] / r["official_l2"]) for r in mine]
        mean, half = statistics.fmean(logs), 1.96 * statistics.stdev(logs) / math.sqrt(len(logs))
        print(f"| {name} | {len(mine)} | {statistics.median(r['queries'] for r in mine):.0f} "
              f"| {statistics.median(r['official_l2'] for r in mine):.3f} "
              f"| {statistics.median(r['probe_l2'] for r in mine):.3f} "
              f"| {math.exp(mean):.3f} ({math.exp(mean - half):.2f}-{math.exp(mean + half):.2f}) |")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, help="folder of the official checkouts (outside the repo)")
    parser.add_argument("--model", default="cifar10-cnn")
    parser.add_argument("--attack", action="append", choices=["hsja", "surfree"])
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--budget", type=int, default=500, help="SurFree's max_queries")
    parser.add_argument("--hsja-iterations", type=int, default=4, help="the official HSJA's num_iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=Path, default=Path("results/faithfulness.jsonl"))
    parser.add_argument("--summary", type=Path)
    args = parser.parse_args(argv)
    if args.summary:
        return summary(args.summary)
    if args.reference is None or not args.attack:
        parser.error("--reference and --attack are required")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
