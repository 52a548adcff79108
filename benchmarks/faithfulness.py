"""Faithfulness of the ``paper`` preset: the authors' code and probe's paper preset on the same
model, images and oracle, at the same number of queries (the official run's own count, its
uncounted queries included, is probe's budget). Reported: the geometric mean over the images
of probe's distance / the official code's (L2; Linf for RayS; faithful: within 0.9-1.1).

The official codes are NOT part of probe: check them out yourself, outside this repository,
and give the folder. It holds ``HSJA/hsja.py`` (Jianbo-Lab/HSJA), ``SurFree/`` (t-maho/SurFree
at c9920f2: ``surfree.py``, ``utils/``, ``config_example.json``), ``RayS/`` (uclaml/RayS:
``RayS_Single.py``), ``CGBA/`` (Farhamdur/CGBA: ``proposed_attack.py``, ``utils.py``) and
``PopSkipJump/`` (cjsg/PopSkipJump at b789e47: ``popskip.py``, ``abstract_attack.py``,
``infomax.py``, ``defaultparams.py``, ``adversarial.py``, ``tracker.py``, ``model_interface.py``);
all but HSJA need torch (no CUDA: RayS's ``.cuda()`` calls are made no-ops)::

    python benchmarks/faithfulness.py --reference /path/to/checkouts --attack hsja --attack surfree \\
        --attack rays --attack cgba --attack popskipjump --images 10 --rows results/faithfulness.jsonl
    python benchmarks/faithfulness.py --summary results/faithfulness.jsonl

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
from probe.attacks.presets import PRESETS, AttackSettings, build_attack  # noqa: E402


class Counted:
    """The model's labels behind the interfaces the official codes call, counting every row but
    all-zero images (SurFree's code sends one in place of a query it does not make, and does not
    count it)."""

    def __init__(self, runtime, classes: int = 10, x0=None, label=None) -> None:
        self.runtime, self.classes, self.rows = runtime, classes, 0
        self.x0, self.label, self.best = x0, label, math.inf  # the closest adversarial row asked

    def labels(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        x = x[None] if x.ndim == 3 else x  # the official HSJA asks its original un-batched
        self.rows += int(np.count_nonzero(x.reshape(len(x), -1).any(axis=1)))
        x = np.clip(x, 0.0, 1.0)
        labels = self.runtime.labels(x)
        if self.x0 is not None and np.any(labels != self.label):
            flat = x.reshape(len(x), -1)[labels != self.label] - self.x0.reshape(1, -1)
            self.best = min(self.best, float(np.linalg.norm(flat, axis=1).min()))
        return labels

    def predict(self, x):  # HSJA: probabilities (one-hot)
        return np.eye(self.classes)[self.labels(x)]


def official_hsja(reference: Path, model: Counted, x0: np.ndarray, seed: int, iterations: int) -> np.ndarray:
    sys.path.insert(0, str(reference / "HSJA"))
    import hsja as official  # noqa: PLC0415

    np.random.seed(seed)
    return official.hsja(model, x0.astype(np.float64), constraint="l2", num_iterations=iterations, verbose=False)


def surfree_module(reference: Path):
    """The official SurFree module from ``reference``, with one shim (below) that changes no result."""
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
    return surfree


def official_surfree(reference: Path, model: Counted, x0: np.ndarray, seed: int, budget: int) -> np.ndarray:
    import torch  # noqa: PLC0415

    surfree = surfree_module(reference)
    SurFree = surfree.SurFree

    config = json.loads((reference / "SurFree" / "config_example.json").read_text())
    config["init"]["max_queries"] = budget
    # once max_queries is spent the final line search is masked out, except that it asks the
    # all-zero image and returns it when the model calls it adversarial (L2 ||x0||): switched off
    config["init"]["final_line_search"] = False

    torch.manual_seed(seed)
    net = _TorchNet(model)
    x = torch.as_tensor(x0[None])
    label = net(x).argmax(1)
    with contextlib.redirect_stdout(io.StringIO()):
        adv = SurFree(**config["init"])(net, x, label, **config["run"])
    return adv[0].numpy()


class _TorchNet:
    """The counted labels as a torch module's one-hot logits (the official RayS, SurFree and
    CGBA codes call a torch model)."""

    def __new__(cls, model: Counted):
        import torch  # noqa: PLC0415

        class Net(torch.nn.Module):
            def forward(self, x):
                labels = torch.as_tensor(model.labels(x.detach().cpu().numpy()))
                return torch.nn.functional.one_hot(labels, model.classes).float()

            def predict_label(self, x):  # RayS's GeneralTorchModel interface
                return self(x).argmax(1)

        return Net()


def official_rays(reference: Path, model: Counted, x0: np.ndarray, seed: int, budget: int) -> np.ndarray:
    """uclaml/RayS's ``RayS_Single.py`` (Linf, no early stop); its ``.cuda()`` calls run on the CPU."""
    import torch  # noqa: PLC0415

    sys.path.insert(0, str(reference / "RayS"))
    import RayS_Single  # noqa: PLC0415

    net = _TorchNet(model)
    x = torch.as_tensor(x0[None])
    label = net.predict_label(x)
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            adv = RayS_Single.RayS(net, order=np.inf, epsilon=0.0, early_stopping=False)(
                x, label, seed=seed, query_limit=budget)[0]
    finally:
        torch.Tensor.cuda = cuda
    return adv[0].numpy()


def official_cgba(reference: Path, model: Counted, x0: np.ndarray, seed: int, iterations: int,
                  sigma: float) -> np.ndarray:
    """Farhamdur/CGBA's ``proposed_attack.py``, non-targeted CGBA (the semicircular search), its
    defaults (dim_reduc_factor 4, N0 30, tol 1e-4) with pixels as the normalised space (mean 0,
    std 1) and the pixel-space ``sigma`` of probe's preset (the code's 2e-4 times ImageNet's std)."""
    import torch  # noqa: PLC0415

    sys.path.insert(0, str(reference / "CGBA"))
    import proposed_attack  # noqa: PLC0415

    torch.manual_seed(seed)
    np.random.seed(seed)
    x = torch.as_tensor(x0[None])
    attack = proposed_attack.Proposed_attack(
        _TorchNet(model), x, [0.0] * 3, [1.0] * 3, torch.zeros_like(x), torch.ones_like(x),
        attack_method="CGBA", iteration=iterations, sigma=sigma, verbose_control="No")
    model.rows -= 1  # the constructor's label of x0 is no query of the attack's
    with contextlib.redirect_stdout(io.StringIO()):
        adv = attack.Attack()[0]
    return adv[0].numpy()


def official_popskipjump(reference: Path, model: Counted, x0: np.ndarray, seed: int, iterations: int,
                         grid: int) -> np.ndarray:
    """cjsg/PopSkipJump's ``popskip.py`` (its DefaultParams: L2, gamma 1, B_0 100, CIFAR-10's grid
    300 unless ``grid``) through a deterministic ``ModelInterface`` stand-in (every row counted)."""
    import types  # noqa: PLC0415

    import torch  # noqa: PLC0415

    if "tqdm" not in sys.modules:  # only its progress bar: none
        sys.modules["tqdm"] = types.SimpleNamespace(tqdm=lambda it, **_: it)
    sys.path.insert(0, str(reference / "PopSkipJump"))
    import defaultparams  # noqa: PLC0415
    import popskip  # noqa: PLC0415
    from adversarial import Adversarial  # noqa: PLC0415

    class Interface:  # the attributes and calls of model_interface.ModelInterface the attack uses
        noise, bounds, model_calls = "deterministic", (0, 1), 0

        def get_probs_(self, images):
            return torch.nn.functional.one_hot(
                torch.as_tensor(model.labels(images.reshape(-1, *x0.shape).numpy())), model.classes).float()

        get_probs = get_probs_

        def sample_bernoulli(self, probs):
            self.model_calls += probs.numel()
            return torch.bernoulli(probs)

        def decision(self, batch, label, num_queries=1, targeted=False):
            self.model_calls += batch.shape[0] * num_queries
            batch = batch.repeat(num_queries, *[1] * (batch.ndim - 1))
            out = (self.get_probs_(batch).argmax(1) != label) * 1.0
            return out.view(-1, len(batch) // num_queries).transpose(0, 1)

    params = defaultparams.DefaultParams()
    params.distance, params.dataset, params.num_iterations = "l2", "cifar10", iterations
    params.grid_size = {"cifar10": grid}
    torch.manual_seed(seed)
    attack = popskip.PopSkipJump(Interface(), x0.shape, device=None, params=params)
    label = int(model.runtime.labels(x0[None])[0])
    a = Adversarial(image=x0, label=label, targeted_label=None)
    attack.reset_variables(a)
    # the code's initialize_starting_point draws uniform images until one is adversarial but
    # keeps none (its experiments start from another image): the drawn one is kept here
    for _ in range(10000):
        noise = torch.rand(size=x0.shape)
        if attack.model_interface.decision(noise[None], label)[0, 0] == 1:
            a.set_starting_point(noise, (0, 1))
            break
    with contextlib.redirect_stdout(io.StringIO()):
        diary = attack.attack_one(iterations)
    return diary.iterations[-1].bin_search.numpy()


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
                model = Counted(runtime, x0=x0, label=label)
                start = time.perf_counter()
                ref_seed = 1000 * args.seed + index
                if name == "hsja":
                    ref = official_hsja(args.reference, model, x0, ref_seed, args.hsja_iterations)
                elif name == "surfree":
                    ref = official_surfree(args.reference, model, x0, ref_seed, args.budget)
                elif name == "rays":
                    ref = official_rays(args.reference, model, x0, ref_seed, args.budget)
                elif name == "popskipjump":
                    ref = official_popskipjump(args.reference, model, x0, ref_seed, args.psj_iterations, args.psj_grid)
                else:
                    ref = official_cgba(args.reference, model, x0, ref_seed, args.cgba_iterations,
                                        PRESETS["paper"]["cgba"]["sigma"])
                ref_seconds = time.perf_counter() - start
                budget = model.rows
                ref_adv = bool(runtime.labels(ref[None].astype(np.float32))[0] != label)
                norm = "linf" if name == "rays" else "l2"
                options = {"popskipjump": {"grid_size": args.psj_grid}} if args.psj_grid != 300 else {}
                attack = build_attack(name, norm=norm, settings=AttackSettings(preset="paper", options=options))
                oracle = lambda pts, label=label: runtime.labels(pts) != label  # noqa: E731
                outcome = run_attack(attack, x0, oracle, budget, np.random.default_rng([args.seed, index]))
                row = {"model": args.model, "image": samples.ids[index], "attack": name, "seed": args.seed,
                       "queries": budget,
                       **({"grid": args.psj_grid} if name == "popskipjump" else {}),
                       "norm": norm,
                       "official_l2": float(np.linalg.norm((ref - x0).ravel(), ord=2 if norm == "l2" else np.inf)),
                       "official_adversarial": ref_adv, "official_best_l2": model.best,
                       "probe_l2": outcome.distance if outcome.found else math.inf, "official_seconds": ref_seconds}
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(f"{samples.ids[index]:22s} {name:8s} queries {budget:5d} official {row['official_l2']:.4f} "
                      f"({'adv' if ref_adv else 'NOT adv'}) probe {row['probe_l2']:.4f}", flush=True)
    return 0


def summary(path: Path) -> int:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print("| attack | runs (images x seeds) | median queries | median distance official | median distance probe "
          "paper | geo-mean probe / official (95% interval) |")
    print("|---|---|---|---|---|---|")
    # PopSkipJump's code returns its last boundary point, answered adversarial or not: also its closest
    closest = "popskipjump (official: its closest adversarial query)"
    rows += [{**r, "attack": closest, "official_l2": r["official_best_l2"]} for r in rows
             if r["attack"] == "popskipjump" and math.isfinite(r.get("official_best_l2", math.inf))]
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
    parser.add_argument("--attack", action="append", choices=["hsja", "surfree", "rays", "cgba", "popskipjump"])
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--budget", type=int, default=500, help="SurFree's max_queries, RayS's query_limit")
    parser.add_argument("--hsja-iterations", type=int, default=4, help="the official HSJA's num_iterations")
    parser.add_argument("--cgba-iterations", type=int, default=10, help="the official CGBA's iteration")
    parser.add_argument("--psj-iterations", type=int, default=4, help="the official PopSkipJump's iterations")
    parser.add_argument("--psj-grid", type=int, default=300,
                        help="PopSkipJump's grid_size on both sides (the code's CIFAR-10 300; 100 is its MNIST's)")
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
