"""Attack strength with a tuning discipline (issue #37): settings chosen on one split of the
bundled images, reported on the other, image by image, against each attack's anchor.

    # ART (anchor of HSJA), in a separate site folder so the project's venv stays as CI expects
    pip install --no-deps --target SITE adversarial-robustness-toolbox six tqdm scikit-learn joblib \\
        threadpoolctl cloudpickle narwhals
    PYTHONPATH=SITE python benchmarks/split_strength.py --reference /path/to/checkouts \\
        --model cifar10-cnn --split report --seeds 0,1,2 --rows results/split_cifar.jsonl
    python benchmarks/split_strength.py --summarize results/split_cifar.jsonl

Splits: ``tune`` = bundled images 0-9, ``report`` = 10-19; images the model misclassifies are
skipped. Anchors on the same label-only oracle, every query counted (the start included) and
credited with the closest adversarial they ever queried, at each budget mark: ``art`` (ART
1.20.1 ``HopSkipJump``, L2: the anchor of ``hsja:*``), ``surfree-official`` (t-maho/SurFree at
c9920f2, its ``config_example.json`` but its 50 steps lifted, the budget ends it: of ``surfree:*``), ``rays-official`` (uclaml/RayS'
``RayS_Single.py``, Linf: of ``rays:*``; deterministic, run for seed 0 only). probe's attacks are
scored the same way (closest adversarial queried). ``--reference`` holds ``SurFree/`` and
``RayS/``. Configurations: as ``attack_strength.py`` (``hsja:probe``, ``surfree:probe:NAME=VALUE``).

Summary per configuration and budget: the ratio per image is the median over seeds of probe's
distance / the median over seeds of the anchor's; reported: the geometric mean of those ratios,
their median, the worst image and how many images are over 1.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probe.attacks import attack_class, run_attack  # noqa: E402
from probe.attacks.presets import AttackSettings, build_attack  # noqa: E402

SPLITS = {"tune": range(0, 10), "report": range(10, 20)}
ANCHORS = {"hsja": ("art", "l2"), "surfree": ("surfree-official", "l2"), "rays": ("rays-official", "linf")}
DEFAULT_CONFIGS = ["art", "surfree-official", "rays-official", "hsja:probe", "surfree:probe", "rays:probe"]


class Cutoff(Exception):
    """The budget is spent: ends an anchor's run."""


class Watch:
    """The model's labels behind a budget; the closest adversarial (L2 and Linf) at every query.
    All-zero rows (SurFree's code sends one in place of a query it does not make) are answered
    but neither counted nor credited."""

    def __init__(self, runtime, x0: np.ndarray, label: int, budget: int) -> None:
        self.runtime, self.x0, self.label, self.budget = runtime, x0, label, budget
        self.queries = 0
        self.best = {"l2": math.inf, "linf": math.inf}
        self.marks: dict[str, list[tuple[int, float]]] = {"l2": [], "linf": []}

    def labels(self, points: np.ndarray) -> np.ndarray:
        points = np.clip(np.asarray(points, dtype=np.float32), 0.0, 1.0)
        real = points.reshape(len(points), -1).any(axis=1)
        out = np.full(len(points), self.label)
        keep, numbers = [], {}
        for i in range(len(points)):
            if not real[i]:
                keep.append(i)
            elif self.queries < self.budget:
                keep.append(i)
                self.queries += 1
                numbers[i] = self.queries
            else:
                break
        if keep:
            out[keep] = self.runtime.labels(points[keep])
        for i, number in numbers.items():
            if out[i] != self.label:
                diff = (points[i] - self.x0).ravel().astype(np.float64)
                for name, value in (("l2", float(np.linalg.norm(diff))), ("linf", float(np.abs(diff).max()))):
                    if value < self.best[name]:
                        self.best[name] = value
                        self.marks[name].append((number, value))
        if len(keep) < len(points):
            raise Cutoff
        return out

    def __call__(self, points: np.ndarray) -> np.ndarray:  # probe's oracle: booleans
        return self.labels(points) != self.label

    def at(self, norm: str, queries: int) -> float:
        value = math.inf
        for q, d in self.marks[norm]:
            if q <= queries:
                value = d
        return value


def run_art(watch: Watch, x0: np.ndarray, seed: int) -> None:
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifier

    def predict(x):
        answers = watch(np.asarray(x, dtype=np.float32))
        return np.eye(2, dtype=np.float32)[answers.astype(int)]

    clf = BlackBoxClassifier(predict, x0.shape, 2, clip_values=(0.0, 1.0))
    attack = HopSkipJump(clf, batch_size=64, targeted=False, norm=2, max_iter=10**4, max_eval=10000,
                         init_eval=100, init_size=100, verbose=False)
    np.random.seed(seed)  # ART draws from NumPy's global generator
    attack.generate(x0[None], y=np.array([[1.0, 0.0]], dtype=np.float32))


def torch_net(watch: Watch, classes: int):
    import torch

    class Net(torch.nn.Module):
        def forward(self, x):
            labels = torch.as_tensor(watch.labels(x.detach().cpu().numpy()))
            return torch.nn.functional.one_hot(labels, classes).float()

    return Net()


def run_surfree(reference: Path, watch: Watch, x0: np.ndarray, seed: int, classes: int) -> None:
    import torch

    from faithfulness import surfree_module  # noqa: PLC0415  (this folder: the script's own)

    surfree = surfree_module(reference)
    config = json.loads((reference / "SurFree" / "config_example.json").read_text())
    config["init"]["max_queries"] = watch.budget
    config["init"]["steps"] = watch.budget  # the example's 50 steps would end it before the budget
    config["init"]["final_line_search"] = False  # as faithfulness.py
    torch.manual_seed(seed)
    net = torch_net(watch, classes)
    x = torch.as_tensor(x0[None])
    with contextlib.redirect_stdout(io.StringIO()):
        surfree.SurFree(**config["init"])(net, x, torch.as_tensor([watch.label]), **config["run"])


def run_rays(reference: Path, watch: Watch, x0: np.ndarray, seed: int) -> None:
    import torch

    torch.Tensor.cuda = lambda self, *a, **k: self  # the code moves its tensors to CUDA
    sys.path.insert(0, str(reference / "RayS"))
    from RayS_Single import RayS  # noqa: PLC0415

    class Model:
        def predict_label(self, x):
            return torch.as_tensor(watch.labels(x.detach().cpu().numpy()))

    with contextlib.redirect_stdout(io.StringIO()):
        RayS(Model(), order=np.inf, epsilon=0.0, early_stopping=False)(
            torch.as_tensor(x0[None]), torch.as_tensor([watch.label]), seed=seed, query_limit=10 * watch.budget)


def run_one(args, runtime, x0, label, config: str, seed: int, index: int) -> dict:
    watch = Watch(runtime, x0, label, args.budget)
    start = time.perf_counter()
    rng_seed = [seed, index]
    try:
        if config == "art":
            run_art(watch, x0, 1000 * seed + index)
        elif config == "surfree-official":
            run_surfree(args.reference, watch, x0, 1000 * seed + index, args.classes)
        elif config == "rays-official":
            run_rays(args.reference, watch, x0, 1000 * seed + index)
        else:
            parts = config.split(":", 2)
            name, preset = parts[0], parts[1] if len(parts) > 1 else "probe"
            options = {}
            for item in filter(None, (parts[2] if len(parts) == 3 else "").split(",")):
                key, _, raw = item.partition("=")
                options[key] = json.loads(raw)
            settings = AttackSettings(preset=preset, options={name: options} if options else {})
            norms = attack_class(name).norms
            attack = build_attack(name, norm="l2" if "l2" in norms else norms[0], settings=settings)
            run_attack(attack, x0, watch, args.budget, np.random.default_rng(rng_seed))
    except Cutoff:
        pass
    return {"seconds": time.perf_counter() - start, "queries": watch.queries,
            "l2_at": {str(m): watch.at("l2", m) for m in args.marks},
            "linf_at": {str(m): watch.at("linf", m) for m in args.marks}}


def run(args) -> int:
    from probe.load import load_model, load_samples

    runtime = load_model(args.model)
    samples = load_samples(args.model, limit=20)
    indices = [i for s in args.split for i in SPLITS[s] if args.only is None or i in args.only]
    done = set()
    if args.rows.exists():
        for line in args.rows.read_text().splitlines():
            r = json.loads(line)
            done.add((r["model"], r["config"], r["image"], r["seed"]))
    args.rows.parent.mkdir(parents=True, exist_ok=True)
    with args.rows.open("a") as out:
        for seed in args.seeds:
            for index in indices:
                x0 = samples.x[index]
                label = int(runtime.labels(x0[None])[0])
                truth = samples.labels[index] if samples.labels is not None else None
                if truth is not None and int(truth) != label:
                    continue
                for config in args.config or DEFAULT_CONFIGS:
                    if config == "rays-official" and seed != args.seeds[0]:
                        continue  # deterministic
                    if (args.model, config, samples.ids[index], seed) in done:
                        continue
                    row = {"model": args.model, "image": samples.ids[index], "index": index,
                           "split": "tune" if index < 10 else "report", "seed": seed, "config": config,
                           "budget": args.budget, **run_one(args, runtime, x0, label, config, seed, index)}
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(f"{args.model} {config:28s} {index:2d} s{seed} "
                          + " ".join(f"{k}:{v:.3f}" for k, v in row["l2_at"].items())
                          + f" linf {row['linf_at'][str(args.marks[-1])]:.4f} {row['seconds']:.0f}s", flush=True)
    return 0


def read_text(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()


def summarize(paths: list[Path], splits: list[str]) -> int:
    rows = [json.loads(line) for p in paths for line in read_text(p).splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] in splits]
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        marks = sorted({int(m) for r in mine for m in r["l2_at"]})
        print(f"\n{model}, split {'+'.join(splits)}: ratio per image = median over seeds / anchor's median")
        print("| config | anchor | Q | images | seeds | median | anchor median | geo-mean ratio | median ratio "
              "| worst image | images > 1 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        configs = sorted({r["config"] for r in mine if ":" in r["config"]})
        for config in configs:
            anchor, norm = ANCHORS[config.split(":")[0]]
            for m in marks:
                ratios, ours, refs, seeds = [], [], [], set()
                for image in sorted({r["image"] for r in mine}):
                    a = [r[f"{norm}_at"][str(m)] for r in mine if r["config"] == anchor and r["image"] == image]
                    b = [r[f"{norm}_at"][str(m)] for r in mine if r["config"] == config and r["image"] == image]
                    seeds |= {r["seed"] for r in mine if r["config"] == config and r["image"] == image}
                    if not a or not b:
                        continue
                    ours.append(statistics.median(b))
                    refs.append(statistics.median(a))
                    ratios.append((ours[-1] / refs[-1] if refs[-1] > 0 else math.inf, image))
                if not ratios:
                    continue
                finite = [q for q, _ in ratios if math.isfinite(q) and q > 0]
                geo = math.exp(statistics.fmean(math.log(q) for q in finite)) if finite else math.nan
                worst = max(ratios)
                print(f"| {config} | {anchor} | {m} | {len(ratios)} | {len(seeds)} | {statistics.median(ours):.4g} "
                      f"| {statistics.median(refs):.4g} | {geo:.2f}x | {statistics.median(q for q, _ in ratios):.2f}x "
                      f"| {worst[0]:.2f}x ({worst[1]}) | {sum(q > 1 for q, _ in ratios)} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="cifar10-cnn")
    ap.add_argument("--reference", type=Path, default=Path("/work/scratch/attacks/refs"))
    ap.add_argument("--split", action="append", choices=sorted(SPLITS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--marks", default="500,1000,2000")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--config", action="append")
    ap.add_argument("--only", type=int, action="append", help="these image indices only (diagnosis)")
    ap.add_argument("--rows", type=Path, default=Path("results/split_strength.jsonl"))
    ap.add_argument("--summarize", type=Path, nargs="+")
    args = ap.parse_args(argv)
    args.split = args.split or ["tune"]
    if args.summarize:
        return summarize(args.summarize, args.split)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.marks = [int(m) for m in args.marks.split(",")]
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
