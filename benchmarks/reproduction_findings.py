"""The seed paper's five findings, read off one reproduction sweep image by image (issue #37).

    python benchmarks/reproduction_findings.py runs/reproduction_cifar > findings.md

Input: a ``probe sweep`` folder of ``examples/reproduction_cifar.toml`` (records with sigma 0 /
0.05 / 0.15, n 1 / 5 / 10, P_a 0.5 and 0.8, both presets). Output: markdown tables, one per
finding, each a **paired** comparison: for one attack and preset, the ratio of two settings' L2
on the same image, over the images where both settings ended on an adversarial (the verdict of
eq. (4) as a test); the geometric mean, the median and every ratio. Success counts stand beside
them, since an attack that fails against one setting is also evidence (those images have no ratio).

1. Fewer samples are more robust: L2(n = 1 or 5) / L2(n = 10), sigma 0.05 and 0.15.
2. A larger sigma costs accuracy, adds no robustness: defended accuracy and L2(0.15) / L2(0.05).
3. P_a = 0.8 raises distortion a little: L2(P_a 0.8) / L2(P_a 0.5), sigma 0.05, n 5.
4. RayS is the attack the defense disturbs least: L2(smoothed) / L2(no smoothing) per attack.
5. Practical distortions are at least 30x the certified radius: L2 / CERTIFY radius of the original.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ATTACKS = ("hsja", "surfree", "rays")
NAMES = {"hsja": "HSJA", "surfree": "SurFree", "rays": "RayS"}


def _read(folder: Path) -> tuple[list[dict], list[dict]]:
    def lines(name: str) -> list[dict]:
        path = folder / name
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []

    return lines("results.jsonl"), lines("configs.jsonl")


def _key(sigma: float, n: int, pa: float = 0.5) -> tuple[float, int, float]:
    return (round(float(sigma), 4), int(n) if sigma else 1, round(float(pa), 4))


class Runs:
    """The records of one sweep, by (preset, attack, setting) and image."""

    def __init__(self, records: list[dict], configs: list[dict]) -> None:
        self.cells: dict[tuple, dict[str, dict]] = {}
        for r in records:
            if r.get("skipped"):
                continue
            cell = (r["preset"], r["attack"], _key(r["sigma"], r["n"], r["pa"]))
            self.cells.setdefault(cell, {})[r["image"]] = r
        self.accuracy = {(c["preset"], _key(c["sigma"], c["n"], c["pa"])): c["clean_accuracy"] for c in configs}

    def wins(self, preset: str, attack: str, setting: tuple) -> dict[str, float]:
        """image -> L2 of the runs whose verdict is adversarial."""
        cell = self.cells.get((preset, attack, setting), {})
        return {im: r["l2"] for im, r in cell.items() if r["success"]}

    def count(self, preset: str, attack: str, setting: tuple) -> str:
        cell = self.cells.get((preset, attack, setting), {})
        return f"{sum(r['success'] for r in cell.values())}/{len(cell)}" if cell else "-"

    def ratios(self, preset: str, attack: str, top: tuple, bottom: tuple) -> list[float]:
        a, b = self.wins(preset, attack, top), self.wins(preset, attack, bottom)
        return [a[im] / b[im] for im in sorted(set(a) & set(b)) if b[im] > 0]


def _summary(ratios: list[float]) -> str:
    if not ratios:
        return "- | - | -"
    geo = math.exp(statistics.fmean(math.log(x) for x in ratios))
    every = ", ".join(f"{x:.2f}" for x in sorted(ratios))
    return f"{geo:.2f} | {statistics.median(ratios):.2f} | {every}"


def _label(setting: tuple) -> str:
    sigma, n, pa = setting
    if not sigma:
        return "no RS"
    return f"sigma {sigma:g}, n {n}" + (f", P_a {pa:g}" if pa != 0.5 else "")


def paired(runs: Runs, title: str, pairs: list[tuple[tuple, tuple]], presets: list[str]) -> None:
    print(f"\n### {title}\n")
    print("| preset | attack | top / bottom | successes (top, bottom) | paired | geo-mean | median | every image |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in presets:
        for attack in ATTACKS:
            for top, bottom in pairs:
                r = runs.ratios(preset, attack, top, bottom)
                counts = f"{runs.count(preset, attack, top)}, {runs.count(preset, attack, bottom)}"
                print(f"| {preset} | {NAMES[attack]} | {_label(top)} / {_label(bottom)} | {counts} | "
                      f"{len(r)} | {_summary(r)} |")


def outcomes(runs: Runs, presets: list[str], settings: list[tuple]) -> None:
    print("\n### Verdicts and distortions (attacked: the images g(sigma, n) gets right, of the first 12)\n")
    print("| setting | preset | " + " | ".join(f"{NAMES[a]}: adv / not / undecided, median L2" for a in ATTACKS) + " |")
    print("|---|---|" + "---|" * len(ATTACKS))
    for s in settings:
        for preset in presets:
            cells = []
            for attack in ATTACKS:
                cell = runs.cells.get((preset, attack, s), {})
                if not cell:
                    cells.append("-")
                    continue
                verdicts = [r["verdict"] for r in cell.values()]
                wins = sorted(r["l2"] for r in cell.values() if r["success"])
                median = f"{statistics.median(wins):.2f}" if wins else "-"
                cells.append(f"{verdicts.count('adversarial')} / {verdicts.count('not adversarial')} / "
                             f"{verdicts.count('undecided')}, {median}")
            print(f"| {_label(s)} | {preset} | " + " | ".join(cells) + " |")


def certified(runs: Runs, presets: list[str], settings: list[tuple]) -> None:
    print("\n### 5. L2 of each success / CERTIFY radius of its original (abstentions left out)\n")
    print("| preset | attack | setting | successes with a radius | geo-mean | min | share >= 30x |")
    print("|---|---|---|---|---|---|---|")
    for preset in presets:
        for attack in ATTACKS:
            for s in settings:
                cell = runs.cells.get((preset, attack, s), {})
                r = [x["l2"] / x["certified_radius"] for x in cell.values()
                     if x["success"] and (x.get("certified_radius") or 0) > 0]
                if not r:
                    print(f"| {preset} | {NAMES[attack]} | {_label(s)} | 0 | - | - | - |")
                    continue
                geo = math.exp(statistics.fmean(math.log(x) for x in r))
                share = sum(x >= 30 for x in r) / len(r)
                print(f"| {preset} | {NAMES[attack]} | {_label(s)} | {len(r)} | {geo:.0f}x | {min(r):.0f}x | {share:.0%} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a probe sweep folder (results.jsonl, configs.jsonl)")
    args = parser.parse_args(argv)
    records, configs = _read(args.folder)
    if not records:
        print(f"no records in {args.folder}", file=sys.stderr)
        return 1
    runs = Runs(records, configs)
    presets = sorted({p for p, _, _ in runs.cells}, key=lambda p: p != "paper")
    bare = _key(0, 1)
    smoothed = [_key(s, n) for s in (0.05, 0.15) for n in (1, 5, 10)]

    print("### Defended accuracy (clean accuracy of g(sigma, n) on all 20 images, fresh votes)\n")
    print("| preset | " + " | ".join(_label(s) for s in [bare, *smoothed]) + " |")
    print("|---|" + "---|" * (1 + len(smoothed)))
    for preset in presets:
        cells = [runs.accuracy.get((preset, s)) for s in [bare, *smoothed]]
        print(f"| {preset} | " + " | ".join("-" if a is None else f"{a:.2f}" for a in cells) + " |")

    outcomes(runs, presets, [bare, *smoothed, _key(0.05, 5, 0.8)])
    n_pairs = [(_key(s, n), _key(s, 10)) for s in (0.05, 0.15) for n in (1, 5)]
    paired(runs, "1. Fewer samples: L2(n) / L2(n = 10); above 1 = fewer samples more robust", n_pairs, presets)
    sigma_pairs = [(_key(0.15, n), _key(0.05, n)) for n in (1, 5, 10)]
    paired(runs, "2. Larger sigma: L2(sigma 0.15) / L2(sigma 0.05); above 1 = more robust", sigma_pairs, presets)
    paired(runs, "3. Level P_a: L2(P_a 0.8) / L2(P_a 0.5) at sigma 0.05, n 5",
           [(_key(0.05, 5, 0.8), _key(0.05, 5))], presets)
    paired(runs, "4. What smoothing costs each attack: L2(smoothed) / L2(no RS)",
           [(s, bare) for s in smoothed], presets)
    certified(runs, presets, [*smoothed, _key(0.05, 5, 0.8)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
