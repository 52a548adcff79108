"""`probe report DIR`: report.md and a self-contained report.html of a results folder.

Built around the answer (:mod:`probe.runs.robust`): per configuration, a headline sentence
(robust accuracy at the headline eps with its interval, and the clean accuracy) and the
robust-accuracy table at the chosen eps; robust accuracy against eps and against queries
(figures, every attack on the same axes); counts of verdicts; a table per image with its
pictures; then the per-attack distortions, the certified radii beside them when CERTIFY ran,
Fig. 5 when the sweep has several sigma, what was run (model file and its SHA-256, input
convention, images, every parameter, versions, time and inferences) and a glossary.
Figures need the ``plot`` extra; without it the report says so and keeps the tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from probe.errors import ProbeError
from probe.runs import render, robust
from probe.runs.render import fmt
from probe.runs.report_parts import COUNT_HEADERS, GLOSSARY, counts_rows, image_rows, run_rows
from probe.runs.results import RUN, load_results_dir
from probe.runs.summary import summarize_sweep
from probe.runs.sweep import versions

FIGURES = "figures"
PAPER_RATIO = 30.0


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


def _cell(entry: dict) -> str:
    if entry["accuracy"] is None:
        return "-"
    lo, hi = entry["interval"]
    text = f"{entry['accuracy']:.0%} [{lo:.0%}, {hi:.0%}]"
    if entry["undecided"]:
        text += f"\nup to {entry['accuracy_upper']:.0%} ({entry['undecided']} undecided)"
    return text


def answer_table(recs: list[dict], eps: dict[str, list[float]]) -> dict:
    """Rows: each attack, then the best of them; columns: every (norm, eps) of the table."""
    table = robust.robust_table(recs, eps)
    clean = robust.clean_entry(recs)
    points = [(norm, e) for norm, values in eps.items() for e in sorted(values)]
    headers = ["attack", "clean", *[f"{robust.NORM_NAMES[n]} <= {robust.eps_label(n, e)}" for n, e in points]]
    names = robust.attacks_of(recs)
    who = [*names, robust.BEST] if len(names) > 1 else names
    rows = [[("best of the attacks" if w == robust.BEST else robust.attack_names([w])), _cell(clean),
             *[_cell(table[n][robust.eps_key(e)][w]) for n, e in points]] for w in who]
    return {"headers": headers, "rows": rows}


def _figures(folder: Path, groups: dict, labels: dict, eps: dict, rows: list[dict], runs: dict):
    """The report's figures (robust accuracy vs eps and vs queries, Fig. 5 with several sigma, Fig. 4),
    as the items of its Figures section: ("figure", caption, path), or a sentence saying what is missing."""
    from probe.runs import figures as figs

    fig_dir = folder / FIGURES
    made: list = []
    try:
        figs.pyplot()
    except ProbeError as exc:
        return [f"Figures omitted: {exc}."]
    fig_dir.mkdir(parents=True, exist_ok=True)
    curves = figs.robust_curves(groups, eps)
    made.append(("figure", "Robust accuracy against eps, per attack and for the best of them (95% band)",
                 figs.plot_robust_eps(curves, labels, fig_dir / "robust_accuracy_eps.png")))
    with_traj = {cid: recs for cid, recs in groups.items() if robust.has_trajectory(recs)}
    if with_traj:
        data = {cid: {norm: robust.over_queries(recs, norm, eps[norm][0]) for norm in eps}
                for cid, recs in with_traj.items()}
        made.append(("figure", "Robust accuracy at the headline eps and median distortion against the queries spent",
                     figs.plot_robust_queries(data, labels, fig_dir / "robust_accuracy_queries.png")))
    else:
        made.append("No robust-accuracy-vs-queries figure: no record found a point before its last query (under "
                    "smoothing a point counts only once confirmed, at the end of each attack; compare runs at several "
                    "budgets instead), or the records predate `trajectory`.")
    if len({r["sigma"] for r in rows}) > 1:
        points = distortion_points(rows)
        if any(p["accuracy"] is not None and p["mean_l2"] is not None for p in points):
            path = figs.plot_distortion_accuracy(points, fig_dir / "distortion_accuracy.png")
            figs.write_json(path.with_suffix(".json"), {"figure": "distortion_accuracy", "points": points})
            made.append(("figure", "Fig. 5: L2 distortion against the defended model's clean accuracy", path))
    if runs:
        path = figs.plot_certified_accuracy(list(runs.values()), fig_dir / "certified_accuracy.png")
        made.append(("figure", "Fig. 4: certified accuracy (CERTIFY) per sigma", path))
    return made


def _results_table(rows: list[dict]) -> dict:
    body = [
        [r["label"], r["attack"], f"{r['successes']}/{r['attacked']}", _pct(r["success_rate"]), fmt(r["mean_l2"]),
         fmt(r["median_l2"]), fmt(r["mean_linf"], 4), fmt(r["median_linf"], 4), fmt(r["mean_queries"], 0),
         fmt(r["defended_accuracy"]), fmt(r.get("plain_accuracy")), fmt(r.get("median_l2_over_radius"), 1),
         str(r.get("below_bound_eq6", 0))]
        for r in sorted(rows, key=lambda r: (str(r.get("model")), r["sigma"], r["n"], r["pa"], r["budget"], r["attack"]))
    ]
    headers = ["configuration", "attack", "successes", "rate", "mean L2", "median L2", "mean Linf", "median Linf",
               "mean queries", "defended acc.", "plain acc.", "median L2 / radius", "below eq. 6"]
    return {"headers": headers, "rows": body}


def _certified_section(rows: list[dict], runs: dict, records: list[dict]) -> list | None:
    if runs:
        comparison = certified_vs_practical(rows, runs)
        cert_rows = [[f"{m or '-'}", f"{s:g}", f"n0={v['n0']} n={v['n']} alpha={v['alpha']:g}",
                      _pct(v["certified_fraction"]), fmt(v["median_radius_certified"], 4), fmt(v["median_radius_all"], 4),
                      fmt(v["certified_accuracy"].get("0"))]
                     for (m, s), v in runs.items()]
        ratios = [c["ratio"] for c in comparison if c["ratio"] is not None]
        verdict = (
            f"Smallest ratio median L2 / median certified radius: {min(ratios):.1f}x "
            f"({'at least' if min(ratios) >= PAPER_RATIO else 'below'} the paper's {PAPER_RATIO:.0f}x)."
            if ratios else "No ratio could be computed (no success or no certified image)."
        )
        return [
            "CERTIFY (Cohen et al.) per image; radii of the images certified correct. "
            "The paper finds practical distortions at least 30 times the certified radii.",
            {"headers": ["model", "sigma", "certification", "certified", "median radius (certified)",
                         "median radius (all, 0 if not)", "certified acc. r=0"], "rows": cert_rows},
            {"headers": ["configuration", "attack", "median L2", "median certified radius", "ratio"],
             "rows": [[c["label"], c["attack"], fmt(c["median_l2"]), fmt(c["median_certified_radius"], 4),
                       "-" if c["ratio"] is None else f"{c['ratio']:.1f}x"] for c in comparison]},
            verdict,
        ]
    if any((r.get("certified_radius") or 0) > 0 for r in records):
        return [
            "CERTIFY ran on each original: the median, over the adversarial points, of their L2 distortion over "
            "the certified radius of their original (the paper: at least 30x; below 1 would contradict the certificate).",
            {"headers": ["configuration", "attack", "median L2", "median L2 / radius"],
             "rows": [[r["label"], r["attack"], fmt(r["median_l2"]), fmt(r.get("median_l2_over_radius"), 1)]
                      for r in rows]},
        ]
    return None


def build_report(folder: Path, title: str | None = None, eps_specs: list[str] | None = None) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` into ``folder``; returns their paths."""
    folder = Path(folder)
    records, configs, cert, status = load_results_dir(folder)
    run, summary = robust.read_json(folder / RUN), robust.read_json(folder / "summary.json")
    eps = robust.folder_eps(folder, records, eps_specs)
    rows = summarize_sweep(records, configs)
    labels = {r["config"]: r["label"] for r in rows}
    groups = robust.group_configs(records)
    runs = certification_runs(cert) if cert else {}
    fig_items = _figures(folder, groups, labels, eps, rows, runs)
    title = title or f"probe report: {status.get('name', folder.name)}"
    sources = [str(s) for s in ((status.get("source") or {}).get("images") or [])]
    if isinstance((status.get("source") or {}).get("images"), str):
        sources = [status["source"]["images"]]

    answer: list = []
    for cid, recs in groups.items():
        if len(groups) > 1:
            answer.append(f"**{labels.get(cid, cid)}**")
        answer += [("headline", robust.headline(recs, eps)), answer_table(recs, eps)]
    answer.append(robust.GOOD_BAD + " Distortions are in [0, 1] pixels over the whole image.")
    if status.get("status") and status["status"] != "finished":
        answer.append(f"Sweep status: **{status['status']}** (the tables hold the jobs finished so far).")
    sections: list[tuple[str, list]] = [("The answer", answer)]
    sections.append(("Figures", fig_items))

    counts: list = []
    images: list = []
    for i, (cid, recs) in enumerate(groups.items()):
        label = f"**{labels.get(cid, cid)}**"
        pa = recs[0].get("pa")
        counts += ([label] if len(groups) > 1 else []) + [{"headers": COUNT_HEADERS, "rows": counts_rows(recs, pa)}]
        headers, body = image_rows(folder, recs, f"c{i}", sources, run.get("model") or summary.get("model"),
                                   run.get("images"))
        images += ([label] if len(groups) > 1 else []) + [{"headers": headers, "rows": body}]
        total = len({r["image"] for r in recs})
        if total > len(body):
            images.append(f"The first {len(body)} of {total} images; every one is in results.jsonl.")
        skipped = {r["image"]: r["skipped"] for r in recs if r.get("skipped")}
        if skipped:
            images.append("Skipped: " + "; ".join(f"{k} ({why})" for k, why in skipped.items()) + ".")
    sections.append(("Counts", counts + [
        "Misclassified images were not attacked and count as not robust. 8-bit failures: points adversarial "
        "as float32 but not once rounded to 8-bit pixels."]))
    sections.append(("Per image", [
        "The closest adversarial of each image (the smallest L2 among the points judged adversarial, else among "
        "all found); the perturbation is shown as grey + factor x (adversarial - original), the factor stated "
        "under it. One line per attack in the columns on the right.", *images]))
    sections.append(("Distortions per configuration", [
        "Distortions are of the successful adversarials (verdict adversarial), in [0,1] pixel space. "
        "Defended accuracy: the mean, over the clean images, of the fraction of fresh majority votes of "
        "g(sigma, n) that give the true label. Median L2 / radius: per success, its distortion over the "
        "CERTIFY radius of its original (the paper: at least 30x); below eq. 6: distortions under eq. (6)'s "
        "lower bound (any is a bug or an unsound certificate).",
        _results_table(rows),
    ]))
    certified = _certified_section(rows, runs, records)
    sections.append(("Certified radii vs practical distortions", certified or [
        "Absent: CERTIFY did not run (a sweep with `certify = true`, or `probe attack --certify-n N` under "
        "smoothing, compares them)."]))
    what: list = []
    for cid, recs in groups.items():
        if len(groups) > 1:
            what.append(f"**{labels.get(cid, cid)}**")
        what.append({"headers": ["what", "value"], "rows": run_rows(recs, run, summary, status), "plain": True})
    soft = status.get("versions") or summary.get("versions")
    what.append({"headers": ["software", "version"], "plain": True,
                 "rows": [[k, v] for k, v in (soft or versions()).items()]})
    if not soft:
        what.append("Versions: those of the software that wrote this report (the run did not store its own).")
    if status.get("source"):
        what.append({"headers": ["setting", "value"], "plain": True,
                     "rows": [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in status["source"].items()]})
    if status.get("seconds") is not None:
        what.append(f"Last run: {status.get('started', '?')} to {status.get('finished', '?')}, "
                    f"{status['seconds']:.0f} s, status {status.get('status', '?')}.")
    sections.append(("What was run", what))
    sections.append(("Glossary", GLOSSARY))

    md_path, html_path = folder / "report.md", folder / "report.html"
    try:
        md_path.write_text(render.markdown(title, sections, folder), encoding="utf-8")
        html_path.write_text(render.page(title, sections), encoding="utf-8")
    except OSError as exc:
        raise ProbeError(f"cannot write the report in {folder}: {exc.strerror or exc}") from None
    drawn = [item[2] for item in fig_items if isinstance(item, tuple)]
    return {"markdown": md_path, "html": html_path, **{f"figure{i}": path for i, path in enumerate(drawn)}}
