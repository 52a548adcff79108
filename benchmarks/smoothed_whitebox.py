"""A white-box reference for #13: how far is the smoothed classifier's boundary, found with its gradients?

    python benchmarks/smoothed_whitebox.py --cells 0.05:10 --images 8 --out results/whitebox.jsonl
    python benchmarks/smoothed_whitebox.py --cells 0.05:10 0.15:10 --steps 20   # stronger, slower
    python benchmarks/smoothed_whitebox.py --cells 0:1 --bisections 10            # the bare model

The black-box attacks under smoothing stay 5-10x above the bare model's distances
(``adaptive.py``). Two causes are possible: the attacks are weak against a random oracle,
or the smoothed classifier's boundary really is that far. This script tells them apart.
It is not an attack probe ships: it reads the PyTorch model's gradients, which no
remote adversary has.

For each image, PGD on the soft smoothed classifier (Salman et al., NeurIPS 2019,
SmoothAdv): maximise ``-log mean_j softmax(f(x + delta + eps_j))_y`` over
``||delta||_2 <= r`` inside the [0, 1] box, with ``m`` fresh noise draws per step (the
same unclipped Gaussian noise probe adds), ``steps`` steps of size ``2.5 r / steps``;
a bisection on ``r``. A radius counts as adversarial when probe's own verdict says so:
p_adv by eq. (4) (``estimate_p_adv``, up to 100 evaluations of the n-vote classifier on
the ONNX model) >= P_a = 0.5, the criterion of ``adaptive.py``'s records. The result is
an upper bound on the smoothed classifier's minimal adversarial L2 (a stronger white-box
attack may find less): if the black-box attacks come close to it, the gap to the bare
model is the defense's doing, not the attacks' weakness.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from adaptive import records
from probe import SmoothedClassifier, estimate_p_adv, load_model, load_samples
from probe.recipes.efficientnet_lite0 import MODEL, build_model


def soft_pgd(net, x: torch.Tensor, label: int, *, radius: float, sigma: float, steps: int, m: int,
             generator: torch.Generator) -> torch.Tensor:
    """PGD in the L2 ball of ``radius`` around ``x`` (1, C, H, W) against the soft smoothed
    classifier at ``sigma``, ``m`` noise draws per step; the final point (1, C, H, W)."""
    delta = torch.zeros_like(x)
    alpha = 2.5 * radius / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        noise = torch.randn((m, *x.shape[1:]), generator=generator) * sigma
        probs = torch.softmax(net((x + delta).clamp(0, 1) + noise), dim=1)
        loss = -torch.log(probs[:, label].mean() + 1e-12)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = delta + alpha * grad / (grad.norm() + 1e-12)
            delta = (x + delta).clamp(0, 1) - x  # the box, then the ball
            norm = delta.norm()
            if norm > radius:
                delta = delta * (radius / norm)
    return (x + delta).detach()


def p_adv(classifier: SmoothedClassifier, point: np.ndarray, label: int, rng: np.random.Generator) -> float:
    """p_adv by eq. (4) of ``point`` (C, H, W); >= 0.5 counts."""
    return estimate_p_adv(classifier, point, label=label, rng=rng, max_evaluations=100).p


def minimal_radius(net, classifier, x: np.ndarray, label: int, *, start: float, sigma: float, steps: int, m: int,
                   bisections: int, seed: int) -> dict:
    """Bisection on the PGD radius: the smallest radius whose PGD point p_adv >= 0.5 accepts."""
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    xt = torch.from_numpy(x)[None]
    best: tuple[float, float] | None = None  # (L2 of the point, p_adv)
    lo, hi = 0.0, start

    def attempt(radius: float) -> bool:
        nonlocal best
        point = soft_pgd(net, xt, label, radius=radius, sigma=sigma, steps=steps, m=m, generator=generator)[0].numpy()
        p = p_adv(classifier, point, label, rng)
        if p >= 0.5:
            l2 = float(np.linalg.norm((point - x).ravel()))
            if best is None or l2 < best[0]:
                best = (l2, p)
            return True
        return False

    grows = 0
    while not attempt(hi):
        lo, hi, grows = hi, hi * 2, grows + 1
        if grows > 3:
            return {"l2": None, "p_adv": None, "last_radius": hi}
    for _ in range(bisections):
        mid = (lo + hi) / 2
        if attempt(mid):
            hi = mid
        else:
            lo = mid
    return {"l2": best[0], "p_adv": best[1], "last_radius": hi}


def attacked_images(adaptive: Path, sigma: float, n: int) -> dict[str, tuple[int, float]]:
    """image -> (label, the smallest black-box L2 of a success) from ``adaptive.py``'s records of a
    cell (any budget): the images the smoothed model gets right, and a start for the bisection."""
    found: dict[str, tuple[int, float]] = {}
    for r in records(adaptive):
        if (r["sigma"], r["n"]) == (sigma, n):
            l2 = r["l2"] if r.get("success") and r.get("l2") else float("inf")
            found[r["image"]] = (r["label"], min(found.get(r["image"], (0, l2))[1], l2))
    return found


def bare_images(runtime, samples) -> dict[str, tuple[int, float]]:
    """image -> (label, no start) for the images the bare model gets right (sigma 0: no records needed)."""
    predicted = runtime.labels(samples.x)
    return {i: (int(y), float("inf")) for i, y, p in zip(samples.ids, samples.labels, predicted) if int(y) == int(p)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", nargs="+", default=["0.05:10"], help="SIGMA:N")
    ap.add_argument("--images", type=int, default=8, help="the first N bundled images")
    ap.add_argument("--adaptive", type=Path, default=Path("results/adaptive"), help="adaptive.py's --out")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--m", type=int, default=8, help="noise draws per PGD step")
    ap.add_argument("--bisections", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="append one JSON line per image here")
    args = ap.parse_args(argv)

    net = build_model(MODEL.weights_file(None))
    for p in net.parameters():
        p.requires_grad_(False)
    runtime = load_model("efficientnet-lite0", device="cpu")
    samples = load_samples("efficientnet-lite0", limit=args.images)
    done = set()
    if args.out and args.out.exists():
        done = {(r["image"], r["sigma"], r["n"]) for r in map(json.loads, args.out.read_text().splitlines())}
    for cell in args.cells:
        sigma, n = float(cell.split(":")[0]), int(cell.split(":")[1])
        classifier = SmoothedClassifier(runtime, sigma, n)
        attacked = attacked_images(args.adaptive, sigma, n) if sigma > 0 else bare_images(runtime, samples)
        if not attacked:
            print(f"no adaptive.py records for sigma {sigma:g} n {n} under {args.adaptive}", file=sys.stderr)
            return 1
        rows = []
        for i, image in enumerate(samples.ids):
            if image not in attacked or (image, sigma, n) in done:
                continue
            label, black_box = attacked[image]
            start = black_box if np.isfinite(black_box) else (20.0 if sigma > 0 else 2.0)
            t = time.time()
            out = minimal_radius(net, classifier, samples.x[i], label, start=start, sigma=sigma, steps=args.steps,
                                 m=args.m, bisections=args.bisections, seed=args.seed + i)
            row = {"image": image, "label": label, "sigma": sigma, "n": n, "steps": args.steps, "m": args.m,
                   "black_box_best": black_box if np.isfinite(black_box) else None, **out,
                   "seconds": round(time.time() - t, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
        l2 = [r["l2"] for r in rows if r["l2"] is not None]
        if l2:
            print(f"sigma {sigma:g} n {n}: white-box median L2 {statistics.median(l2):.2f} on {len(l2)}/{len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
