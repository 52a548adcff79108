"""Summaries of result records: per attack and per configuration."""

from __future__ import annotations

import numpy as np

from probe.runs.results import record_config


def defended_accuracy(records: list[dict]) -> float | None:
    """Accuracy of the defended classifier g_{sigma,n} on the labelled originals
    (per image, the fraction of fresh majority votes that give the true label)."""
    seen = {r["image"]: r["clean_accuracy"] for r in records if r["clean_accuracy"] is not None}
    if not seen:
        return None
    return float(np.mean(list(seen.values())))


def summarize(records: list[dict]) -> dict[str, dict]:
    """Per attack: the verdicts counted apart, success rate, mean/median L2 and Linf of
    successes, mean queries.

    ``adversarial``, ``not_adversarial`` and ``undecided`` count the found points by their
    verdict (eq. (4) as a test), ``not_found`` the jobs that found nothing; ``unjudged`` the
    records whose verdict could not be measured (an endpoint's budget spent before the
    fresh p_adv evaluations). ``success_rate`` is adversarial over the decided records
    (adversarial + not adversarial + not found): an undecided or unjudged record is neither
    a success nor a failure. ``success_rate_8bit`` is the same for the adversarials rounded
    to 8 bits (what a PNG holds)."""
    accuracy = defended_accuracy(records)
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r["attack"] for r in records):
        rows = [r for r in records if r["attack"] == name and not r["skipped"]]
        wins = [r for r in rows if r["success"]]
        found = [r for r in rows if r.get("found")]
        count = {v: sum(1 for r in found if _verdict(r) == v) for v in ("adversarial", "not adversarial", "undecided")}
        count8 = {v: sum(1 for r in found if r.get("verdict_8bit") == v) for v in ("adversarial", "undecided")}
        unjudged = sum(1 for r in found if _verdict(r) is None)
        decided = len(rows) - count["undecided"] - unjudged
        decided8 = len(rows) - count8["undecided"] - unjudged
        l2 = np.array([r["l2"] for r in wins], dtype=float)
        linf = np.array([r["linf"] for r in wins], dtype=float)
        out[name] = {
            "attacked": len(rows),
            "skipped": sum(1 for r in records if r["attack"] == name and r["skipped"]),
            "adversarial": count["adversarial"],
            "not_adversarial": count["not adversarial"],
            "undecided": count["undecided"],
            "not_found": len(rows) - len(found),
            "unjudged": unjudged,
            "success_rate": count["adversarial"] / decided if decided else None,
            "adversarial_8bit": count8["adversarial"],
            "success_rate_8bit": count8["adversarial"] / decided8 if decided8 else None,
            "mean_l2": float(l2.mean()) if len(l2) else None,
            "median_l2": float(np.median(l2)) if len(l2) else None,
            "mean_linf": float(linf.mean()) if len(linf) else None,
            "median_linf": float(np.median(linf)) if len(linf) else None,
            "mean_queries": float(np.mean([r["queries"] for r in rows])) if rows else None,
            "median_l2_over_radius": _median_ratio(wins),
            "below_bound_eq6": sum(1 for r in rows if r.get("below_bound_eq6")),
            "defended_accuracy": accuracy,
        }
    return out


def _verdict(record: dict) -> str | None:
    """A found record's verdict; older records (a point estimate in ``success``) read as decided."""
    verdict = record.get("verdict")
    if verdict in ("adversarial", "not adversarial", "undecided"):
        return verdict
    if record.get("success") is None:
        return None
    return "adversarial" if record["success"] else "not adversarial"


def summarize_sweep(records: list[dict], configs: dict[str, dict] | None = None) -> list[dict]:
    """One row per (configuration, attack): success rate, L2/Linf of successes, queries, accuracy."""
    configs = configs or {}
    groups: dict[str, list[dict]] = {}
    for rec in records:
        groups.setdefault(record_config(rec), []).append(rec)
    rows = []
    for cid, recs in groups.items():
        meta = configs.get(cid, {})
        first = recs[0]
        accuracy = meta.get("clean_accuracy", defended_accuracy(recs))
        sigma = first["sigma"]
        label = (
            meta.get("label")
            or (
                f"{first.get('model') or ''} "
                + ("no RS" if sigma == 0 else f"sigma={sigma:g} n={first['n']} P_a={first['pa']:g}")
                + f" budget={first['budget']}"
            ).strip()
        )
        for attack, row in summarize(recs).items():
            rows.append(
                {
                    "config": cid,
                    "label": label,
                    "model": first.get("model"),
                    "sigma": sigma,
                    "n": first["n"],
                    "pa": first["pa"],
                    "budget": first["budget"],
                    "attack": attack,
                    **{k: v for k, v in row.items() if k != "defended_accuracy"},
                    "successes": sum(1 for r in recs if r["attack"] == attack and r["success"]),
                    "defended_accuracy": accuracy,
                    "plain_accuracy": meta.get("plain_accuracy"),
                }
            )
    return rows


def _median_ratio(wins: list[dict]) -> float | None:
    """Median of L2 distortion / certified radius over successes whose original is certified
    (the seed paper's "at least 30 times larger")."""
    ratios = [r["l2"] / r["certified_radius"] for r in wins if (r.get("certified_radius") or 0) > 0]
    return float(np.median(ratios)) if ratios else None
