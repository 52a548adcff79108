"""The experiments' figures (the seed paper's Fig. 1-3), drawn with matplotlib (the ``plot`` extra).

Fig. 4 and 5 and the report's figures are in :mod:`probe.runs.figures` (re-exported here).

matplotlib is imported lazily, with the non-interactive Agg backend, inside each
function: the rest of probe never needs it. Each function takes the JSON-able dict
an experiment returned and writes one PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from probe.runs.figures import (  # noqa: F401  (Fig. 4 and 5 and the helpers live in probe.runs)
    plot_certified_accuracy,
    plot_distortion_accuracy,
    pyplot,
    save as _save,
    write_json,
)


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
