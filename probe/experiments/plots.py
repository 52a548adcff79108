"""Every figure of probe (the seed paper's Fig. 1-5), drawn with matplotlib (the ``plot`` extra).

matplotlib is imported lazily, with the non-interactive Agg backend, inside each
function: the rest of probe never needs it. Each function takes the JSON-able dict
an experiment returned and writes one PNG.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from probe.errors import ProbeError


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a ProbeError naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ProbeError("drawing figures needs the plot extra: pip install 'probe[plot]'") from None
    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    except OSError as exc:
        raise ProbeError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def write_json(path: Path, data) -> Path:
    """The numbers behind a figure, beside it (``indent=2``)."""
    path = Path(path)
    try:
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ProbeError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"


# --------------------------------------------------------------------------- Fig. 1


def plot_profile(data: dict, path: Path) -> Path:
    """Fig. 1: fraction of wrong micro-decisions (with its band) and P[g_{sigma,n} adversarial] per n."""
    plt = pyplot()
    t = np.asarray(data["distance"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.fill_between(t, data["p_low"], data["p_high"], color="0.8", label=f"{data['confidence']:.0%} band")
    ax.plot(t, data["p_wrong"], color="k", lw=2, label=f"micro-decisions wrong ({data['samples']} samples)")
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, max(len(data["ns"]), 1)))
    for color, n in zip(colors, data["ns"]):
        lo, hi = data["adversarial_probability_band"][str(n)]
        ax.fill_between(t, lo, hi, color=color, alpha=0.15, lw=0)
        ax.plot(t, data["adversarial_probability"][str(n)], color=color, lw=1.5, label=f"g(sigma, n={n}) adversarial")
    for level in data["levels"]:
        ax.axhline(level, color="tab:red", ls=":", lw=1)
        ax.text(t[0], level, f" P_a={level:g}", color="tab:red", va="bottom", fontsize=8)
    ax.axvline(data["adversarial_distance"], color="tab:orange", ls="--", lw=1, label="x_a (attack output)")
    if data.get("boundary_f") is not None:
        ax.axvline(data["boundary_f"], color="tab:blue", ls="-.", lw=1, label="frontier of f")
    if data.get("boundary_g_sigma") is not None:
        ax.axvline(data["boundary_g_sigma"], color="tab:green", ls="-.", lw=1, label="frontier of g_sigma (p = 1/2)")
    ax.set_xlabel("L2 distance from x_o along x_a - x_o")
    ax.set_ylabel("probability of being adversarial")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Fig. 1: along the adversarial direction (sigma={data['sigma']:g})")
    ax.legend(fontsize=7, loc="center right")
    return _save(fig, path)


# --------------------------------------------------------------------------- Fig. 2


def plot_slice(data: dict, path: Path) -> Path:
    """Fig. 2: the two label maps side by side, one colour per label."""
    plt = pyplot()
    from matplotlib.colors import BoundaryNorm, ListedColormap

    keys = sorted(int(k) for k in data["labels"])
    index = {k: i for i, k in enumerate(keys)}
    palette = plt.cm.tab20(np.linspace(0, 1, 20))
    cmap = ListedColormap([palette[i % 20] for i in range(len(keys))])
    norm = BoundaryNorm(np.arange(len(keys) + 1) - 0.5, len(keys))
    r = data["radius"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
    for ax, key, title in (
        (axes[0], "plain", "without smoothing (f)"),
        (axes[1], "smoothed", f"with smoothing (sigma={data['sigma']:g}, n={data['n']}, one vote per cell)"),
    ):
        grid = np.vectorize(index.get)(np.asarray(data[key]))
        ax.imshow(grid, origin="lower", extent=(-r, r, -r, r), cmap=cmap, norm=norm, interpolation="nearest")
        ax.plot(0, 0, "k+", ms=10)
        if data.get("adversarial_distance"):
            ax.plot(data["adversarial_distance"], 0, "kx", ms=8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("adversarial direction" if data["directions"].startswith("adv") else "random direction 1")
    axes[0].set_ylabel("random direction" + ("" if data["directions"].startswith("adv") else " 2"))
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(index[k])) for k in keys[:12]]
    names = [(str(k) if data["labels"][str(k)] == str(k) else f"{k} {data['labels'][str(k)]}")[:28] for k in keys[:12]]
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), fontsize=7, frameon=False)
    fig.suptitle(f"Fig. 2: 2-D slice around x_o ({data['grid']}x{data['grid']}), agreement {data['agreement']:.0%}")
    fig.subplots_adjust(bottom=0.22)
    return _save(fig, path)


# --------------------------------------------------------------------------- Fig. 3


def plot_bsearch(data: dict, path: Path) -> Path:
    """Fig. 3: histograms of the binary search's end point per n, frontiers marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    all_ends = np.concatenate([np.asarray(v["end_distances"]) for v in data["per_n"].values()])
    lo, hi = float(all_ends.min()), float(all_ends.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 1e-3, hi + 1e-3
    bins = np.linspace(lo, hi, 40)
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, max(len(data["ns"]), 1)))
    for color, n in zip(colors, data["ns"]):
        row = data["per_n"][str(n)]
        ax.hist(row["end_distances"], bins=bins, histtype="step", lw=1.8, color=color,
                label=f"n={n}: median {row['median']:.3g}, IQR {row['iqr']:.2g}")
    if data.get("boundary_g_sigma") is not None:
        ax.axvline(data["boundary_g_sigma"], color="tab:green", ls="--", label="frontier of g_sigma")
    if data.get("boundary_f") is not None:
        ax.axvline(data["boundary_f"], color="tab:blue", ls=":", label="frontier of f")
    if data.get("boundary_level") is not None:
        ax.axvline(data["boundary_level"], color="tab:red", ls=":", label=f"micro level P_a={data['pa']:g}")
    ax.set_xlabel("L2 distance of the end point to x_o")
    ax.set_ylabel(f"count (of {data['repeats']} searches)")
    ax.set_title(f"Fig. 3: binary search under RS (sigma={data['sigma']:g}, {data['steps']} steps)")
    ax.legend(fontsize=7)
    return _save(fig, path)


# --------------------------------------------------------------------------- Fig. 4


def plot_certified_accuracy(runs: list[dict], path: Path) -> Path:
    """Fig. 4: certified accuracy against radius, one curve per sigma; the numbers go to ``path.json``.

    ``runs``: [{"sigma", "n", "n0", "alpha", "images": [records], "certified_accuracy": {"0": acc, ...}}].
    The curve is drawn from the per-image radii (a step function), the table's radii marked.
    """
    plt = pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    numbers = []
    for run in runs:
        records = [r for r in run["images"] if r.get("label") is not None]
        radii = np.array([r["radius"] if r.get("correct") else -1.0 for r in records], dtype=float)
        top = max([0.0, *[float(k) for k in run["certified_accuracy"]], *radii[radii > 0].tolist()]) * 1.05 + 1e-6
        grid = np.linspace(0.0, top, 400)
        curve = [(radii >= g).mean() if len(radii) else 0.0 for g in grid]
        line = ax.plot(grid, curve, lw=1.8, label=f"sigma={run['sigma']:g} (n={run['n']})")[0]
        xs = [float(k) for k in run["certified_accuracy"]]
        ax.plot(xs, list(run["certified_accuracy"].values()), "o", color=line.get_color(), ms=4)
        numbers.append(
            {
                "sigma": run["sigma"],
                "n": run["n"],
                "n0": run.get("n0"),
                "alpha": run.get("alpha"),
                "certified_accuracy": run["certified_accuracy"],
                "radii": [r.get("radius") for r in run["images"]],
                "correct": [r.get("correct") for r in run["images"]],
            }
        )
    ax.set_xlabel("radius (L2, [0,1] pixel space)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Fig. 4: certified accuracy (CERTIFY)")
    ax.legend(fontsize=8)
    _save(fig, path)
    write_json(path.with_suffix(".json"), {"figure": "certified_accuracy", "runs": numbers})
    return path


# --------------------------------------------------------------------------- Fig. 5


def plot_distortion_accuracy(points: list[dict], path: Path) -> Path:
    """Fig. 5: mean (filled) and median (hollow) L2 distortion against defended accuracy.

    ``points``: one per (configuration, attack): {"attack", "accuracy", "mean_l2",
    "median_l2", "sigma", "n", "pa"}. One panel per attack; colour = sigma,
    marker = P_a, each point annotated with n.
    """
    plt = pyplot()
    attacks = list(dict.fromkeys(p["attack"] for p in points))
    if not attacks:
        raise ProbeError("no results to plot")
    sigmas = sorted({p["sigma"] for p in points})
    colors = {s: c for s, c in zip(sigmas, plt.cm.plasma(np.linspace(0.0, 0.8, len(sigmas))))}
    markers = {pa: m for pa, m in zip(sorted({p["pa"] for p in points}), "o^sDv")}
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.2 * len(attacks), 3.8), squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        for p in (q for q in points if q["attack"] == attack and q["accuracy"] is not None):
            style = {"color": colors[p["sigma"]], "marker": markers[p["pa"]], "ms": 7, "ls": "none"}
            if p["mean_l2"] is not None:
                ax.plot(p["accuracy"], p["mean_l2"], **style)
                ax.annotate("no RS" if p["sigma"] == 0 else f"n={p['n']}", (p["accuracy"], p["mean_l2"]), fontsize=7,
                            xytext=(4, 2), textcoords="offset points")
            if p["median_l2"] is not None:
                ax.plot(p["accuracy"], p["median_l2"], mfc="none", **style)
        ax.set_title(attack)
        ax.set_xlabel("clean accuracy of the defended model")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("L2 distortion of successes (filled: mean, hollow: median)")
    handles = [plt.Line2D([], [], color=colors[s], marker="o", ls="none", label=f"sigma={s:g}") for s in sigmas]
    handles += [plt.Line2D([], [], color="k", marker=m, ls="none", label=f"P_a={pa:g}") for pa, m in markers.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle("Fig. 5: adversarial L2 distortion vs accuracy", y=1.03)
    fig.subplots_adjust(bottom=0.25)
    return _save(fig, path)
