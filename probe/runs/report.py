"""`probe report DIR`: report.md and a self-contained report.html of a sweep's results.

Contents: Fig. 5 (L2 distortion against the defended model's clean accuracy, one
panel per attack, one point per configuration), Fig. 4 when the folder holds
certification records, any other figure already in ``DIR/figures``, a table per
configuration and attack (success rate, mean/median L2, Linf, queries, defended
accuracy), the certified radii beside the practical distortions (the seed
paper's "at least 30 times larger"), and the run's settings and versions.
Figures need the ``plot`` extra; without it the report says so and keeps the tables.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from probe.errors import ProbeError
from probe.runs.results import load_results_dir
from probe.runs.summary import summarize_sweep
from probe.runs.sweep import versions

FIGURES = "figures"
PAPER_RATIO = 30.0


def _f(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0%}"


def distortion_points(rows: list[dict]) -> list[dict]:
    """The points of Fig. 5: one per (configuration, attack)."""
    return [
        {
            "config": r["config"],
            "label": r["label"],
            "attack": r["attack"],
            "accuracy": r["defended_accuracy"],
            "mean_l2": r["mean_l2"],
            "median_l2": r["median_l2"],
            "success_rate": r["success_rate"],
            "sigma": r["sigma"],
            "n": r["n"],
            "pa": r["pa"],
        }
        for r in rows
    ]


def certification_runs(cert: list[dict]) -> dict[tuple[str, float], dict]:
    """Certification records grouped per (model, sigma), in the shape of `probe certify`'s runs."""
    from probe.runs.certify import DEFAULT_RADII, certified_accuracy

    groups: dict[tuple[str, float], list[dict]] = {}
    for rec in cert:
        groups.setdefault((rec.get("model", ""), rec["sigma"]), []).append(rec)
    runs = {}
    for (model, sigma), recs in groups.items():
        latest = {r["image"]: r for r in recs}  # one record per image (the last written)
        images = list(latest.values())
        radii = np.array([r["radius"] for r in images if r["correct"] and not r["abstain"]], dtype=float)
        runs[(model, sigma)] = {
            "model": model,
            "sigma": sigma,
            "n": images[0]["n"],
            "n0": images[0]["n0"],
            "alpha": images[0]["alpha"],
            "images": images,
            "certified_accuracy": {f"{k:g}": v for k, v in certified_accuracy(images, DEFAULT_RADII).items()},
            "median_radius_certified": float(np.median(radii)) if len(radii) else None,
            "median_radius_all": float(np.median([r["radius"] if r["correct"] and not r["abstain"] else 0.0
                                                  for r in images])),
            "certified_fraction": len(radii) / len(images),
        }
    return runs


def certified_vs_practical(rows: list[dict], runs: dict[tuple[str, float], dict]) -> list[dict]:
    """Per (configuration with sigma > 0, attack): median L2 of successes / median certified radius."""
    out = []
    for r in rows:
        if r["sigma"] == 0:
            continue
        run = runs.get((r.get("model") or "", r["sigma"]))
        if run is None:
            run = next((v for (m, s), v in runs.items() if s == r["sigma"]), None)
        radius = run["median_radius_certified"] if run else None
        ratio = r["median_l2"] / radius if (radius and r["median_l2"] is not None) else None
        out.append({"config": r["config"], "label": r["label"], "attack": r["attack"], "median_l2": r["median_l2"],
                    "median_certified_radius": radius, "ratio": ratio})
    return out


def _figures(folder: Path, rows: list[dict], runs: dict) -> tuple[list[tuple[str, Path]], str | None]:
    """Draw Fig. 5 (and Fig. 4 when there are certificates); also list other PNGs of DIR/figures."""
    from probe.experiments import plots

    fig_dir = folder / FIGURES
    made: list[tuple[str, Path]] = []
    try:
        plots.pyplot()
    except ProbeError as exc:
        return [], str(exc)
    fig_dir.mkdir(parents=True, exist_ok=True)
    points = distortion_points(rows)
    if any(p["accuracy"] is not None and p["mean_l2"] is not None for p in points):
        path = plots.plot_distortion_accuracy(points, fig_dir / "distortion_accuracy.png")
        plots.write_json(path.with_suffix(".json"), {"figure": "distortion_accuracy", "points": points})
        made.append(("Fig. 5: L2 distortion against the defended model's clean accuracy", path))
    if runs:
        path = plots.plot_certified_accuracy(list(runs.values()), fig_dir / "certified_accuracy.png")
        made.append(("Fig. 4: certified accuracy (CERTIFY) per sigma", path))
    known = {p.name for _, p in made}
    for png in sorted(fig_dir.glob("*.png")):
        if png.name not in known:
            made.append((png.stem.replace("_", " "), png))
    return made, None


def _table(headers: list[str], body: list[list[str]]) -> dict:
    return {"headers": headers, "rows": body}


def build_report(folder: Path, title: str | None = None) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` into ``folder``; returns their paths."""
    folder = Path(folder)
    records, configs, cert, status = load_results_dir(folder)
    rows = summarize_sweep(records, configs)
    runs = certification_runs(cert) if cert else {}
    figures, figure_note = _figures(folder, rows, runs)
    title = title or f"probe report: {status.get('name', folder.name)}"

    sections: list[tuple[str, list]] = []
    intro = [
        f"{len(records)} results, {len({r['config'] for r in rows})} configurations, "
        f"attacks: {', '.join(dict.fromkeys(r['attack'] for r in rows))}."
    ]
    if status.get("status") and status["status"] != "finished":
        intro.append(f"Sweep status: **{status['status']}** (the tables hold the jobs finished so far).")
    sections.append(("Summary", intro))

    fig_items: list = [("figure", caption, path) for caption, path in figures]
    if figure_note:
        fig_items.append(f"Figures omitted: {figure_note}.")
    sections.append(("Figures", fig_items or ["No figure (no successful attack with a known accuracy)."]))

    body = [
        [r["label"], r["attack"], f"{r['successes']}/{r['attacked']}", _pct(r["success_rate"]), _f(r["mean_l2"]),
         _f(r["median_l2"]), _f(r["mean_linf"], 4), _f(r["median_linf"], 4), _f(r["mean_queries"], 0),
         _f(r["defended_accuracy"]), _f(r.get("plain_accuracy")), _f(r.get("median_l2_over_radius"), 1),
         str(r.get("below_bound_eq6", 0))]
        for r in sorted(rows, key=lambda r: (str(r.get("model")), r["sigma"], r["n"], r["pa"], r["budget"], r["attack"]))
    ]
    headers = ["configuration", "attack", "successes", "rate", "mean L2", "median L2", "mean Linf", "median Linf",
               "mean queries", "defended acc.", "plain acc.", "median L2 / radius", "below eq. 6"]
    sections.append(("Results per configuration", [
        "Distortions are of the successful adversarials (found, and p_adv >= P_a on fresh evaluations), "
        "in [0,1] pixel space. Defended accuracy: the mean, over the clean images, of the fraction "
        "of fresh majority votes of g(sigma, n) that give the true label. Median L2 / radius: per "
        "success, its distortion over the CERTIFY radius of its original (the paper: at least 30x); "
        "below eq. 6: distortions under eq. (6)'s lower bound (any is a bug or an unsound certificate).",
        _table(headers, body),
    ]))

    if runs:
        comparison = certified_vs_practical(rows, runs)
        cert_rows = [[f"{m or '-'}", f"{s:g}", f"n0={v['n0']} n={v['n']} alpha={v['alpha']:g}",
                      _pct(v["certified_fraction"]), _f(v["median_radius_certified"], 4), _f(v["median_radius_all"], 4),
                      _f(v["certified_accuracy"].get("0"))]
                     for (m, s), v in runs.items()]
        ratios = [c["ratio"] for c in comparison if c["ratio"] is not None]
        verdict = (
            f"Smallest ratio median L2 / median certified radius: {min(ratios):.1f}x "
            f"({'at least' if min(ratios) >= PAPER_RATIO else 'below'} the paper's {PAPER_RATIO:.0f}x)."
            if ratios else "No ratio could be computed (no success or no certified image)."
        )
        sections.append(("Certified radii vs practical distortions", [
            "CERTIFY (Cohen et al.) per image; radii of the images certified correct. "
            "The paper finds practical distortions at least 30 times the certified radii.",
            _table(["model", "sigma", "certification", "certified", "median radius (certified)",
                    "median radius (all, 0 if not)", "certified acc. r=0"], cert_rows),
            _table(["configuration", "attack", "median L2", "median certified radius", "ratio"],
                   [[c["label"], c["attack"], _f(c["median_l2"]), _f(c["median_certified_radius"], 4),
                     "-" if c["ratio"] is None else f"{c['ratio']:.1f}x"] for c in comparison]),
            verdict,
        ]))
    else:
        sections.append(("Certified radii vs practical distortions", [
            "Absent: this folder holds no certification results (certify.jsonl). Run the sweep with "
            "`certify = true` (or `certify = { n0 = 100, n = 1000, alpha = 0.001 }`) to compare them.",
        ]))

    soft = status.get("versions") or versions()
    settings = [
        _table(["setting", "value"], [[k, json.dumps(v) if not isinstance(v, str) else v]
                                      for k, v in (status.get("source") or {}).items()]),
        _table(["software", "version"], [[k, v] for k, v in soft.items()]),
    ]
    if status.get("providers"):
        settings.append(_table(["model", "providers"], [[m, ", ".join(p)] for m, p in status["providers"].items()]))
    if status.get("seconds") is not None:
        settings.append(f"Last run: {status.get('started', '?')} to {status.get('finished', '?')}, "
                        f"{status['seconds']:.0f} s, status {status.get('status', '?')}.")
    sections.append(("Settings and versions", settings))

    md_path, html_path = folder / "report.md", folder / "report.html"
    try:
        md_path.write_text(_markdown(title, sections, folder), encoding="utf-8")
        html_path.write_text(_html(title, sections), encoding="utf-8")
    except OSError as exc:
        raise ProbeError(f"cannot write the report in {folder}: {exc.strerror or exc}") from None
    return {"markdown": md_path, "html": html_path, **{f"figure{i}": p for i, (_, p) in enumerate(figures)}}


def _markdown(title: str, sections, folder: Path) -> str:
    lines = [f"# {title}", ""]
    for name, items in sections:
        lines += [f"## {name}", ""]
        for item in items:
            if isinstance(item, str):
                lines += [item, ""]
            elif isinstance(item, tuple):
                _, caption, path = item
                rel = Path(path).resolve().relative_to(folder.resolve()) if folder.resolve() in Path(path).resolve().parents else path
                lines += [f"![{caption}]({rel})", "", f"*{caption}*", ""]
            else:
                lines.append("| " + " | ".join(item["headers"]) + " |")
                lines.append("|" + "---|" * len(item["headers"]))
                lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in item["rows"]]
                lines.append("")
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escape, then render **bold** and `code` as the Markdown does."""
    out = html.escape(text)
    parts = out.split("**")
    out = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = out.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html(title: str, sections) -> str:
    css = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}figcaption{font-style:italic}"
    )
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1>"]
    for name, items in sections:
        parts.append(f"<h2>{html.escape(name)}</h2>")
        for item in items:
            if isinstance(item, str):
                parts.append(f"<p>{_inline(item)}</p>")
            elif isinstance(item, tuple):
                _, caption, path = item
                data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                parts.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                             f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            else:
                head = "".join(f"<th>{html.escape(h)}</th>" for h in item["headers"])
                body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                               for row in item["rows"])
                parts.append(f"<table><tr>{head}</tr>{body}</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
