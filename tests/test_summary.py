"""Summaries count what was judged: a record whose p_adv could not be measured is no failure."""

from __future__ import annotations

from probe.runs.summary import summarize


def _record(image: str, *, success: bool | None, l2: float | None = None, skipped: str | None = None) -> dict:
    return {"image": image, "attack": "hsja", "success": success, "l2": l2, "linf": None if l2 is None else l2 / 10,
            "queries": 100, "skipped": skipped, "clean_accuracy": 1.0, "certified_radius": None}


def test_an_unjudged_record_is_left_out_of_the_success_rate() -> None:
    records = [
        _record("a", success=True, l2=2.0),
        _record("b", success=False, l2=1.0),
        _record("c", success=None, l2=0.5),  # endpoint budget spent before p_adv
        _record("d", success=False, skipped="misclassified"),
    ]
    row = summarize(records)["hsja"]
    assert row["attacked"] == 3 and row["skipped"] == 1 and row["unjudged"] == 1
    assert row["success_rate"] == 0.5
    assert row["median_l2"] == 2.0


def test_no_judged_record_gives_no_rate() -> None:
    row = summarize([_record("a", success=None, l2=0.5)])["hsja"]
    assert row["unjudged"] == 1 and row["success_rate"] is None and row["median_l2"] is None
