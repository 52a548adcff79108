"""Summaries count what was judged, the three verdicts apart: an undecided or unmeasured
record is neither a success nor a failure."""

from __future__ import annotations

import pytest

from probe.runs.summary import summarize


def _record(image: str, *, verdict: str | None, l2: float | None = None, skipped: str | None = None,
            verdict_8bit: str | None = None, attack: str = "hsja") -> dict:  # fmt: skip
    found = l2 is not None
    success = None if skipped or (found and verdict is None) else verdict == "adversarial"
    return {"image": image, "attack": attack, "found": found, "verdict": verdict, "success": success, "l2": l2,
            "linf": None if l2 is None else l2 / 10, "queries": 100, "skipped": skipped, "clean_accuracy": 1.0,
            "certified_radius": None, "verdict_8bit": verdict_8bit or verdict}  # fmt: skip


def test_an_unjudged_record_is_left_out_of_the_success_rate() -> None:
    records = [
        _record("a", verdict="adversarial", l2=2.0),
        _record("b", verdict="not adversarial", l2=1.0),
        _record("c", verdict=None, l2=0.5),  # endpoint budget spent before p_adv
        _record("d", verdict=None, skipped="misclassified"),
    ]
    row = summarize(records)["hsja"]
    assert row["attacked"] == 3 and row["skipped"] == 1 and row["unjudged"] == 1
    assert row["success_rate"] == 0.5
    assert row["median_l2"] == 2.0


def test_no_judged_record_gives_no_rate() -> None:
    row = summarize([_record("a", verdict=None, l2=0.5)])["hsja"]
    assert row["unjudged"] == 1 and row["success_rate"] is None and row["median_l2"] is None


def test_the_three_verdicts_and_the_8bit_ones_are_counted_apart() -> None:
    """2 adversarial (one failing at 8 bits), 1 not, 3 undecided, 1 found nothing: the rate is
    2 of the 4 decided (undecided never folded into either side); at 8 bits 1 of 4."""
    records = [
        _record("a", verdict="adversarial", l2=1.0),
        _record("b", verdict="adversarial", l2=3.0, verdict_8bit="not adversarial"),
        _record("c", verdict="not adversarial", l2=0.2),
        *(_record(k, verdict="undecided", l2=0.4) for k in "def"),
        _record("g", verdict=None),
    ]
    row = summarize(records)["hsja"]
    assert (row["adversarial"], row["not_adversarial"], row["undecided"], row["not_found"]) == (2, 1, 3, 1)
    assert row["success_rate"] == pytest.approx(2 / 4) and row["success_rate_8bit"] == pytest.approx(1 / 4)
    assert row["adversarial_8bit"] == 1 and row["median_l2"] == 2.0  # the successes' distortions only
