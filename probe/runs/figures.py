"""The figures of a results folder, drawn with matplotlib (the ``plot`` extra).

Robust accuracy against eps and against the query budget (the answer of a run), the
certified accuracy of CERTIFY (the seed paper's Fig. 4) and the distortion against the
defended accuracy (Fig. 5). matplotlib is imported lazily, on the Agg backend, inside
each function. Each figure is one PNG; the numbers behind it go to a JSON file beside it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from probe.errors import ProbeError
from probe.runs import robust

def pyplot():
    """matplotlib.pyplot on the Agg backend, or a ProbeError naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ProbeError("drawing figures needs the plot extra: pip install 'onnx-probe[plot]'") from None
    return plt


def save(fig, path: Path) -> Path:
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
    save(fig, path)
    write_json(path.with_suffix(".json"), {"figure": "certified_accuracy", "runs": numbers})
    return path




# --------------------------------------------------------------------------- Fig. 5


def plot_distortion_accuracy(points: list[dict], path: Path) -> Path:
    """Fig. 5: mean (filled) and median (hollow) L2 distortion of successes against defended accuracy.

    ``points``: one per (configuration, attack): {"attack", "accuracy", "mean_l2",
    "median_l2", "sigma", "n", "pa"}. One panel per attack, all on one y-scale; colour =
    sigma, marker = P_a, each mean annotated with n (or "no RS")."""
    plt = pyplot()
    attacks = robust.attacks_of(points)
    if not attacks:
        raise ProbeError("no results to plot")
    sigmas = sorted({p["sigma"] for p in points})
    colors = {s: c for s, c in zip(sigmas, plt.cm.plasma(np.linspace(0.0, 0.8, len(sigmas))))}
    markers = {pa: m for pa, m in zip(sorted({p["pa"] for p in points}), "o^sDv")}
    cols = min(len(attacks), 3)
    rows = math.ceil(len(attacks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows + 0.9), squeeze=False, sharey=True,
                             sharex=True, constrained_layout=True)
    for ax, attack in zip(axes.flat, attacks):
        for p in (q for q in points if q["attack"] == attack and q["accuracy"] is not None):
            style = {"color": colors[p["sigma"]], "marker": markers[p["pa"]], "ms": 7, "ls": "none"}
            if p["median_l2"] is not None:  # first: a mean on the same spot covers it
                ax.plot(p["accuracy"], p["median_l2"], mfc="white", mew=1.5, **style)
            if p["mean_l2"] is not None:
                ax.plot(p["accuracy"], p["mean_l2"], **style)
                ax.annotate("no RS" if p["sigma"] == 0 else f"n={p['n']}", (p["accuracy"], p["mean_l2"]), fontsize=7,
                            xytext=(5, 3), textcoords="offset points")
        ax.set_title(robust.attack_names([attack]))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(attacks):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("clean accuracy of the defended model")
    for ax in axes[:, 0]:
        ax.set_ylabel("L2 distortion of successes")
    handles = [plt.Line2D([], [], color=colors[s], marker="o", ms=7, ls="none", label=f"sigma={s:g}") for s in sigmas]
    handles += [plt.Line2D([], [], color="0.3", marker=m, ms=7, ls="none", label=f"P_a={pa:g}")
                for pa, m in markers.items()]
    handles += [plt.Line2D([], [], color="0.3", marker="o", ms=7, ls="none", label="mean"),
                plt.Line2D([], [], color="0.3", marker="o", ms=7, mfc="white", mew=1.5, ls="none", label="median")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle("Fig. 5: adversarial L2 distortion vs clean accuracy (one point per configuration)")
    return save(fig, path)


# --------------------------------------------------------------------------- robust accuracy


STYLE_BEST = {"color": "k", "lw": 4.5, "alpha": 0.4, "zorder": 2}  # under the attacks' lines, which stay visible


def _attack_colors(plt, names: list[str]) -> dict:
    palette = plt.cm.tab10(np.arange(10))
    return {name: palette[i % 10] for i, name in enumerate(names)}


def robust_curves(groups: dict[str, list[dict]], eps: dict[str, list[float]], points: int = 400) -> dict:
    """The numbers of the robust-accuracy-vs-eps figure: per configuration and norm, a grid of
    eps from 0 past the largest distortion and, per attack and for the best, the curves."""
    out = {}
    for cid, recs in groups.items():
        per_norm = {}
        names = robust.attacks_of(recs)
        for norm, table_eps in eps.items():
            images = {name: robust.image_distances(recs, norm, [name]) for name in names}
            images[robust.BEST] = robust.image_distances(recs, norm)
            finite = [d for i in images[robust.BEST] for d in (i["adv"], i["open"]) if math.isfinite(d)]
            top = max([*finite, *table_eps]) * 1.1
            grid = np.linspace(0.0, top, points)
            series = {}
            for who, imgs in images.items():
                low, high = robust.robust_curve(imgs, grid)
                series[who] = {"robust": low.round(6).tolist(), "robust_upper": high.round(6).tolist()}
            per_norm[norm] = {"eps": grid.round(8).tolist(), "table_eps": table_eps, "images": len(images[robust.BEST]),
                              "series": series}
        out[cid] = per_norm
    return out


def _cp_band(values: list[float], upper: list[float], total: int) -> tuple[list[float], list[float]]:
    from probe.oracle import clopper_pearson

    lows = [clopper_pearson(round(v * total), total, robust.CONFIDENCE)[0] for v in values]
    highs = [clopper_pearson(round(v * total), total, robust.CONFIDENCE)[1] for v in upper]
    return lows, highs


def plot_robust_eps(curves: dict, labels: dict[str, str], path: Path) -> Path:
    """Robust accuracy against eps: a row per configuration, a column per norm; every attack on
    the same axes, the best of them in black with its 95% band; undecided points shaded."""
    plt = pyplot()
    cids = list(curves)
    norms = list(next(iter(curves.values())))
    names = [w for w in dict.fromkeys(w for c in curves.values() for n in c.values() for w in n["series"])
             if w != robust.BEST]
    colors = _attack_colors(plt, names)
    fig, axes = plt.subplots(len(cids), len(norms), figsize=(6.2 * len(norms), 3.6 * len(cids) + 0.8),
                             squeeze=False, sharey=True, constrained_layout=True)
    for row, cid in zip(axes, cids):
        for ax, norm in zip(row, norms):
            data = curves[cid][norm]
            x = data["eps"]
            for who, s in data["series"].items():
                if who == robust.BEST and len(data["series"]) <= 2:
                    continue  # one attack: its curve is the best
                style = STYLE_BEST if who == robust.BEST else {"color": colors[who], "lw": 1.4, "zorder": 3}
                ax.step(x, s["robust"], where="post", **style)
                if s["robust_upper"] != s["robust"]:
                    ax.fill_between(x, s["robust"], s["robust_upper"], step="post", color=style["color"], alpha=0.15)
            who = robust.BEST if len(data["series"]) > 2 else names[0]
            low, high = _cp_band(data["series"][who]["robust"], data["series"][who]["robust_upper"], data["images"])
            ax.fill_between(x, low, high, step="post", color="0.5", alpha=0.12, lw=0)
            for e in data["table_eps"]:
                ax.axvline(e, color="0.4", ls=":", lw=1)
            ax.set_xlim(0, x[-1])
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(f"eps ({robust.NORM_NAMES[norm]} distortion, [0, 1] pixels)")
            ax.set_title(labels.get(cid, cid), fontsize=9)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("robust accuracy")
    handles = [plt.Line2D([], [], color=colors[n], lw=1.4, label=robust.attack_names([n])) for n in names]
    if len(names) > 1:
        handles.append(plt.Line2D([], [], label="best of the attacks", **STYLE_BEST))
    handles += [plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.25, label="95% interval (Clopper-Pearson)"),
                plt.Line2D([], [], color="0.4", ls=":", label="eps of the table")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle("Robust accuracy against eps (shaded between a curve and its upper edge: undecided verdicts)")
    save(fig, path)
    write_json(Path(path).with_suffix(".json"), {"figure": "robust_accuracy_eps", "configs": curves})
    return Path(path)


def plot_robust_queries(data: dict, labels: dict[str, str], path: Path) -> Path:
    """Robust accuracy at the headline eps and median distortion against queries, a row per
    configuration, per norm two panels; every attack on the same axes (log-scaled queries)."""
    plt = pyplot()
    cids = list(data)
    norms = list(next(iter(data.values())))
    names = [w for w in dict.fromkeys(w for c in data.values() for n in c.values() for w in n["attacks"])
             if w != robust.BEST]
    colors = _attack_colors(plt, names)
    panels = [(norm, kind) for norm in norms for kind in ("robust", "median")]
    fig, axes = plt.subplots(len(cids), len(panels), figsize=(4.3 * len(panels), 3.4 * len(cids) + 0.8),
                             squeeze=False, constrained_layout=True)
    for row, cid in zip(axes, cids):
        for ax, (norm, kind) in zip(row, panels):
            curve = data[cid][norm]
            q = curve["queries"]
            wide = [*q, q[-1] * 1.3] if q else q  # the last step gets a width of its own
            for who, s in curve["attacks"].items():
                style = STYLE_BEST if who == robust.BEST else {"color": colors[who], "lw": 1.4, "zorder": 3}
                if kind == "robust":
                    low, high = [*s["robust"], s["robust"][-1]], [*s["robust_upper"], s["robust_upper"][-1]]
                    ax.step(wide, low, where="post", **style)
                    if high != low:
                        ax.fill_between(wide, low, high, step="post", color=style["color"], alpha=0.15)
                else:
                    ax.plot(q, [np.nan if v is None else v for v in s["median"]], **style)
            ax.set_xscale("log")
            ax.set_xlabel("queries")
            ax.grid(alpha=0.3)
            name = robust.NORM_NAMES[norm]
            if kind == "robust":
                ax.set_ylim(-0.02, 1.02)
                ax.set_ylabel(f"robust accuracy at {name} <= {robust.eps_label(norm, curve['eps'])}")
            else:
                ax.set_ylabel(f"median {name} distortion")
        row[0].set_title(labels.get(cid, cid), fontsize=9, loc="left")
    handles = [plt.Line2D([], [], color=colors[n], lw=1.4, label=robust.attack_names([n])) for n in names]
    if len(names) > 1:
        handles.append(plt.Line2D([], [], label="best of the attacks (each with q queries)", **STYLE_BEST))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle("Over the query budget: robust accuracy at the headline eps, and median distortion")
    save(fig, path)
    write_json(Path(path).with_suffix(".json"), {"figure": "robust_accuracy_queries", "configs": data})
    return Path(path)
