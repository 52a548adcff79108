"""The shared start (probe/attacks/start.py) on linear models, where the boundary along any
blend is known exactly: the nearest candidate is kept, on its boundary, inside the budget."""

from __future__ import annotations

import numpy as np
import pytest

from probe.attacks.base import Tracker
from probe.attacks.start import first_adversarial, nearest_start
from probe.errors import BudgetExceeded
from tests.linear import make_problem


def drive(gen, oracle, log):
    try:
        points = next(gen)
        while True:
            log.extend(np.asarray(points))
            points = gen.send(oracle(points))
    except StopIteration as stop:
        return stop.value


def boundary_distance(p, x) -> float:
    """L2 distance from x0 to the boundary along the blend toward x (exact on a linear model)."""
    m0, m1 = float(p.margin(p.x0)[0]), float(p.margin(x)[0])
    a = -m0 / (m1 - m0)
    return a * float(np.linalg.norm((x - p.x0).ravel().astype(np.float64)))


@pytest.mark.parametrize("seed", range(4))
def test_the_nearest_candidate_is_kept_on_its_boundary(seed):
    p = make_problem((3, 8, 8), seed=seed)
    rtol, budget = 0.05, 1000
    tracker, log = Tracker(p.x0, budget, "l2"), []
    x = drive(nearest_start(tracker, p.x0, np.random.default_rng(seed), None, candidates=8, rtol=rtol), p.is_adv, log)
    assert x is not None and p.margin(x)[0] > 0
    # the candidates: the uniform draws the attack asked, replayed from the same seed
    replay = np.random.default_rng(seed)
    asked = {np.asarray(q).tobytes() for q in log}
    draws = [replay.random(p.x0.shape, dtype=np.float32) for _ in range(400)]
    candidates = [d for d in draws if d.tobytes() in asked and p.margin(d)[0] > 0]
    assert len(candidates) == 8
    nearest = min(boundary_distance(p, c) for c in candidates)
    first = boundary_distance(p, candidates[0])
    dist = float(np.linalg.norm((x - p.x0).ravel().astype(np.float64)))
    assert nearest <= dist <= nearest * (1 + 2 * rtol)
    assert nearest < 0.9 * first  # the comparison paid: the first candidate was far
    assert tracker.spent == len(log) <= 0.1 * budget + 16 + 8 * 10  # the draws before the cap, then the cap


def test_one_candidate_is_the_first_adversarial_query_for_query():
    p = make_problem((3, 8, 8), seed=5)
    logs = [[], []]
    a = drive(nearest_start(Tracker(p.x0, 500, "l2"), p.x0, np.random.default_rng(1), None), p.is_adv, logs[0])
    b = drive(first_adversarial(Tracker(p.x0, 500, "l2"), p.x0, np.random.default_rng(1), None), p.is_adv, logs[1])
    assert np.array_equal(a, b) and len(logs[0]) == len(logs[1]) > 0
    assert all(np.array_equal(u, v) for u, v in zip(*logs))


@pytest.mark.parametrize("budget", [1, 3, 12, 40])
def test_a_small_budget_is_never_exceeded(budget):
    p = make_problem((3, 8, 8), seed=2)
    tracker, log = Tracker(p.x0, budget, "l2"), []
    try:  # the budget's end is signalled as for every attack (run_attack catches it)
        x = drive(nearest_start(tracker, p.x0, np.random.default_rng(0), None, candidates=10, share=1.0), p.is_adv, log)
    except BudgetExceeded:
        x = None
    assert tracker.spent == len(log) <= budget
    assert x is None or p.margin(x)[0] > 0


def test_a_callers_start_is_used_alone():
    p = make_problem((3, 8, 8), seed=3)
    p2, _ = p.optimal_points()
    x_init = (p.x0 + 3.0 * (p2 - p.x0)).clip(0, 1).astype(np.float32)
    tracker, log = Tracker(p.x0, 100, "l2"), []
    x = drive(nearest_start(tracker, p.x0, np.random.default_rng(0), x_init, candidates=8), p.is_adv, log)
    assert np.array_equal(x, x_init) and tracker.spent == 1


def test_a_parameter_added_later_at_its_earlier_value_keeps_the_random_streams():
    """HSJA's and SurFree's ``starts`` and CGBA's ``min_side`` came after records were published:
    at the value that keeps the earlier behaviour they are left out of the attack's identity, so
    the same seed gives the same records as before; any other value is another attack."""
    import json

    from probe.attacks import CGBA, HSJA, SurFree
    from probe.runs.streams import attack_key, key_words

    for attack, key in ((HSJA(), "starts"), (SurFree(), "starts"), (CGBA(), "min_side")):
        earlier = {k: v for k, v in attack.params().items() if k != key}
        assert attack_key(attack) == key_words(json.dumps({"name": attack.name, **earlier}, sort_keys=True))
    assert attack_key(HSJA(starts=4)) != attack_key(HSJA())
    assert "starts" in HSJA().params()  # the record still says every parameter
