"""Robust accuracy at eps on hand-built records with known distances."""

from __future__ import annotations

import pytest
from scipy import stats

from probe.errors import ProbeError
from probe.runs.robust import (
    clean_entry,
    default_eps,
    headline,
    image_distances,
    over_queries,
    parse_eps,
    robust_accuracy,
    robust_at,
    status_of,
)


def rec(image: str, attack: str, verdict: str | None, l2: float | None = None, *, skipped: str | None = None,
        trajectory: dict | None = None, **extra) -> dict:
    found = l2 is not None
    return {"image": image, "attack": attack, "label": 3, "clean_label": 3 if not skipped else 5,
            "verdict": verdict, "success": None if verdict in (None, "undecided") and found else verdict == "adversarial",
            "found": found, "l2": l2, "linf": None if l2 is None else l2 / 20, "skipped": skipped,
            "sigma": 0.05, "n": 10, "pa": 0.5, "budget": 1000, "model": "m.onnx", "norm": "l2",
            "clean_accuracy": 0.9, "queries": 1000, **({"trajectory": trajectory} if trajectory else {}), **extra}


# ten images, two attacks:
#   a: hsja adversarial at 0.3, rays adversarial at 0.8   -> best 0.3
#   b: hsja adversarial at 1.2, rays not adversarial 0.4  -> best 1.2
#   c: hsja undecided at 0.45, rays nothing found         -> open 0.45
#   d: hsja not found, rays adversarial at 0.6            -> best 0.6
#   e, f, g: nothing found by either                      -> robust everywhere
#   h, i: misclassified (skipped)                         -> never robust
#   j: hsja undecided at 2.0, rays adversarial at 0.9     -> best 0.9, open 2.0
RECORDS = [
    rec("a", "hsja", "adversarial", 0.3), rec("a", "rays", "adversarial", 0.8),
    rec("b", "hsja", "adversarial", 1.2), rec("b", "rays", "not adversarial", 0.4),
    rec("c", "hsja", "undecided", 0.45), rec("c", "rays", None),
    rec("d", "hsja", None), rec("d", "rays", "adversarial", 0.6),
    *[rec(i, a, None) for i in "efg" for a in ("hsja", "rays")],
    *[rec(i, a, None, skipped="misclassified") for i in "hi" for a in ("hsja", "rays")],
    rec("j", "hsja", "undecided", 2.0), rec("j", "rays", "adversarial", 0.9),
]


def cp(k: int, m: int) -> tuple[float, float]:
    low = 0.0 if k == 0 else stats.beta.ppf(0.025, k, m - k + 1)
    high = 1.0 if k == m else stats.beta.ppf(0.975, k + 1, m - k)
    return low, high


@pytest.mark.parametrize(
    "eps, who, low, high",
    [
        (0.1, None, 8, 8),   # nothing within 0.1: the 8 correct images
        (0.5, None, 6, 7),   # a broken; c undecided at 0.45: both ways
        (0.5, "hsja", 6, 7),  # hsja alone: a broken at 0.3, c open
        (0.5, "rays", 8, 8),  # rays: nothing within 0.5 (b's 0.4 is not adversarial)
        (1.0, None, 4, 5),   # a, d, j broken; c open
        (1.0, "rays", 5, 5),  # a, d, j broken by rays
        (1.5, None, 3, 4),   # + b (1.2)
        (2.5, None, 3, 4),   # j's undecided 2.0 changes nothing (j is broken at 0.9): c stays the open one
    ],
)
def test_robust_accuracy_counts_and_clopper_pearson_bounds(eps, who, low, high):
    images = image_distances(RECORDS, "l2", None if who is None else [who])
    entry = robust_at(images, eps)
    assert entry["images"] == 10
    assert (entry["robust"], entry["robust_upper"], entry["undecided"]) == (low, high, high - low)
    assert entry["accuracy"] == pytest.approx(low / 10) and entry["accuracy_upper"] == pytest.approx(high / 10)
    assert entry["interval"] == pytest.approx([cp(low, 10)[0], cp(high, 10)[1]])


def test_misclassified_images_are_never_robust_and_set_the_clean_accuracy():
    clean = clean_entry(RECORDS)
    assert clean["images"] == 10 and clean["robust"] == 8 and clean["accuracy"] == pytest.approx(0.8)
    assert clean["interval"] == pytest.approx(list(cp(8, 10)))


def test_summary_is_keyed_by_norm_and_eps_and_linf_uses_linf_distances():
    table = robust_accuracy(RECORDS, parse_eps(["l2:0.5,1", "linf:0.03"]))
    ((cid, doc),) = table.items()
    assert set(doc["table"]) == {"l2", "linf"} and set(doc["table"]["l2"]) == {"0.5", "1"}
    assert set(doc["table"]["l2"]["0.5"]) == {"hsja", "rays", "best"}
    assert doc["table"]["l2"]["1"]["best"]["robust"] == 4
    # Linf distances are L2 / 20: at 0.03 the L2-equivalent is 0.6 -> a (0.015), d (0.03) broken, c open (0.0225)
    best = doc["table"]["linf"]["0.03"]["best"]
    assert (best["robust"], best["robust_upper"]) == (5, 6)


def test_old_records_without_a_three_valued_verdict_are_read_by_success():
    old = {"image": "x", "attack": "hsja", "success": True, "l2": 0.2, "skipped": None,
           "verdict": "endpoint budget spent: p_adv not measured", "found": True}
    assert status_of(old) == "adversarial"
    assert status_of({**old, "success": None}) == "not measured"
    assert status_of({**old, "success": False, "verdict": None}) == "not adversarial"
    assert status_of({"image": "x", "attack": "a", "success": False, "l2": None, "skipped": None}) == "not found"


def test_headline_sentence():
    text = headline(RECORDS, parse_eps(["l2:0.5"]))
    low, high = cp(6, 10)[0], cp(7, 10)[1]
    assert text == (f"Against the best of HSJA and RayS with 1,000 queries each, the defended model keeps 60% "
                    f"[{100 * low:.0f}%, {100 * high:.0f}%] of 10 images at L2 <= 0.5 (up to 70% if the 1 "
                    f"undecided are not adversarial) (clean accuracy 80%).")


def test_eps_parsing_and_defaults():
    assert parse_eps(["linf:8/255,2/255"])["linf"] == pytest.approx([8 / 255, 2 / 255])
    assert default_eps(3 * 32 * 32)["l2"][0] == 0.5 and default_eps(3 * 224 * 224)["l2"][0] == 1.0
    for bad in ("l3:0.5", "l2", "l2:abc", "l2:-1", "l2:1/0"):
        with pytest.raises(ProbeError):
            parse_eps([bad])


def test_robust_accuracy_over_queries_from_trajectories():
    traj = lambda *l2: {"queries": [10, 100, 1000], "l2": list(l2), "linf": [None if v is None else v / 20 for v in l2]}
    records = [
        rec("a", "hsja", "adversarial", 0.3, trajectory=traj(None, 2.0, 0.3)),
        rec("b", "hsja", "adversarial", 0.4, trajectory=traj(5.0, 0.4, 0.4)),
        rec("c", "hsja", "not adversarial", 0.2, trajectory=traj(None, None, 0.2)),
        rec("d", "hsja", None, skipped="misclassified"),
    ]
    curve = over_queries(records, "l2", 0.5)
    assert curve["queries"] == [10, 100, 1000]
    series = curve["attacks"]["hsja"]
    assert series["robust"] == [0.75, 0.5, 0.25]  # d never; b broken from 100 queries, a from 1000
    # medians over the 3 correct images, inf where none yet: (inf, 5, inf) -> None, (2, 0.4, inf) -> 2,
    # (0.3, 0.4, 0.2) -> 0.3 (c's point counts for the distortion though its verdict is "not adversarial")
    assert series["median"] == [None, 2.0, 0.3]


def test_the_best_of_the_attacks_over_queries_and_its_undecided_band():
    traj = lambda *l2: {"queries": [10, 100, 1000], "l2": list(l2), "linf": list(l2)}
    records = [
        rec("a", "hsja", "adversarial", 0.3, trajectory=traj(None, 2.0, 0.3)),
        rec("a", "rays", "adversarial", 0.4, trajectory=traj(0.4, 0.4, 0.4)),
        rec("b", "hsja", "undecided", 0.45, trajectory=traj(None, None, 0.45)),
        rec("b", "rays", None, trajectory=traj(None, None, None)),
    ]
    series = over_queries(records, "l2", 0.5)["attacks"]
    assert series["hsja"]["robust"] == [1.0, 1.0, 0.0] and series["hsja"]["robust_upper"] == [1.0, 1.0, 0.5]
    assert series["rays"]["robust"] == [0.5, 0.5, 0.5]
    assert series["best"]["robust"] == [0.5, 0.5, 0.0] and series["best"]["robust_upper"] == [0.5, 0.5, 0.5]
    assert series["best"]["median"] == [None, None, pytest.approx(0.375)]  # (0.3, 0.45) at 1000; inf before


def test_a_curve_over_queries_needs_a_point_before_the_end():
    """Under smoothing a point counts only once confirmed, at the end of the attack: such
    trajectories alone draw no curve; one record with an earlier point does."""
    from probe.runs.robust import has_trajectory

    end_only = {"queries": [10, 100, 914], "l2": [None, None, 3.1], "linf": [None, None, 0.1]}
    early = {"queries": [10, 100, 1000], "l2": [None, 2.0, 1.5], "linf": [None, 0.1, 0.1]}
    assert not has_trajectory([rec("a", "hsja", "adversarial", 3.1, trajectory=end_only)])
    assert has_trajectory([rec("a", "hsja", "adversarial", 3.1, trajectory=end_only),
                           rec("b", "rays", "adversarial", 1.5, trajectory=early)])  # fmt: skip
    assert not has_trajectory([rec("a", "hsja", "adversarial", 3.1)])  # older records: none
