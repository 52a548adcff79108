"""The confirmation phase (:class:`probe.attacks.Confirmed`) against a randomized oracle,
on linear models with exact p_adv (the product's default criterion, P_a = 0.5)."""

from __future__ import annotations

import numpy as np
import pytest

from probe.attacks import HSJA, Attack, Confirmed, make_attack, run_attack
from probe.errors import ProbeError
from tests.linear import make_problem


@pytest.mark.parametrize("name", ["hsja", "surfree", "rays"])
def test_confirmation_raises_p_adv_above_the_level(name):
    """sigma = half the optimum, n = 10: without confirmation the closest lucky point is
    rarely adversarial; with it, most returned points reach P_a = 0.5."""
    plain, confirmed = [], []
    for seed in range(6):
        for store, confirm in ((plain, False), (confirmed, True)):
            p = make_problem((3, 8, 8), seed=seed, sigma=0.05, n=10)
            attack = make_attack(name)
            if confirm:
                attack = Confirmed(attack, votes=20, level=0.5, share=0.15)
            out = run_attack(attack, p.x0, p.is_adv, 1000, np.random.default_rng(seed))
            assert out.queries <= 1000 and p.points == out.queries
            store.append(p.p_true(out.x_adv) if out.found else 0.0)
    assert np.mean([q >= 0.5 for q in confirmed]) >= 5 / 6
    assert np.median(confirmed) > np.median(plain)


def test_confirmation_is_cheap_on_a_deterministic_oracle():
    p = make_problem((3, 8, 8), seed=1)
    out = run_attack(Confirmed(make_attack("hsja"), votes=10, level=0.5, share=0.1), p.x0, p.is_adv, 2000,
                     np.random.default_rng(0))
    assert out.found and p.ratio(out.x_adv) < 1.1  # accepted at once: the search's best point
    # the search ran within 2000 - 200, the check cost one batch of 10 identical points
    assert out.queries <= 1800 + 10 and p.calls >= 2
    assert p.points == out.queries


def test_confirmed_wraps_without_touching_the_inner_attack():
    inner = HSJA(norm="linf", memory=0.5)
    before = repr(inner)
    wrapped = Confirmed(inner, votes=12, level=0.6, share=0.2)
    assert isinstance(wrapped, Attack) and wrapped is not inner and wrapped.attack is inner
    assert repr(inner) == before and not hasattr(inner, "votes")
    assert wrapped.name == "hsja" and wrapped.norm == "linf" and wrapped.norms == ("l2", "linf")
    assert repr(wrapped) == f"Confirmed(attack={before}, votes=12, level=0.6, share=0.2)"
    assert wrapped.params() == {"attack": {"name": "hsja", **inner.params()}, "votes": 12, "level": 0.6, "share": 0.2}
    # the inner attack alone still runs without a confirmation phase: the same run as a fresh one
    p, q = make_problem((3, 8, 8), seed=2), make_problem((3, 8, 8), seed=2)
    a = run_attack(inner, p.x0, p.is_adv, 400, np.random.default_rng(3))
    b = run_attack(HSJA(norm="linf", memory=0.5), q.x0, q.is_adv, 400, np.random.default_rng(3))
    assert np.array_equal(a.x_adv, b.x_adv) and a.queries == b.queries == 400


def test_confirmation_keeps_back_its_share_and_spends_it_on_checks():
    """A randomized oracle that says True to everything but the confirmation batches: the
    search stops at budget - int(share * budget), then each check is one batch of
    ``votes`` identical points until the budget ends."""
    p = make_problem((3, 8, 8), seed=0)
    batches = []

    def oracle(points):
        batches.append(len(points))
        same = len(points) > 1 and np.all(points == points[0])
        return np.zeros(len(points), bool) if same else p.is_adv(points)

    budget, votes, share = 1000, 7, 0.15
    out = run_attack(Confirmed(make_attack("surfree"), votes=votes, share=share), p.x0, oracle, budget,
                     np.random.default_rng(0))
    search = budget - int(share * budget)
    assert sum(batches) == out.queries == budget and out.found
    spent, i = 0, 0
    while spent < search:
        spent += batches[i]
        i += 1
    assert spent == search  # the search alone used exactly its part
    reserve = budget - search
    assert batches[i:] == [votes] * (reserve // votes) + ([reserve % votes] if reserve % votes else [])


@pytest.mark.parametrize(
    "params, match",
    [({"votes": 0}, "votes"), ({"votes": 2.5}, "votes"), ({"level": 1.5}, "level"), ({"level": 0.0}, "level"),
     ({"share": 1.0}, "share"), ({"share": -0.1}, "share")],
)
def test_confirmation_parameters_are_validated(params, match):
    with pytest.raises(ProbeError, match=match):
        Confirmed(make_attack("rays"), **params)


def test_confirmed_needs_an_attack_and_keyword_knobs():
    with pytest.raises(ProbeError, match="attack"):
        Confirmed("hsja")
    with pytest.raises(TypeError):
        Confirmed(make_attack("rays"), 20)


class Plants(Attack):
    """Asks two planted points: ``first`` (answered first) and then ``best``."""

    name = "plants"

    def __init__(self, first: np.ndarray, best: np.ndarray, *, norm: str = "l2") -> None:
        self.first, self.best, self.norm = first, best, norm

    def _search(self, x0, tracker, rng, x_init):
        yield from tracker.query(self.first[None])
        yield from tracker.query(self.best[None])


@pytest.mark.parametrize("budget, expected", [(400, 21.0), (146, "halfway")])
def test_confirmation_climbs_past_8x_before_jumping_to_the_first_adversarial(budget, expected):
    """A lucky best point at 1/20 of the boundary's distance D, the first adversarial at 40 D.
    The search's two questions are answered True, the checks the truth (True past the
    boundary). With checks to spare the ladder goes on past 8x (0.4 D) and 13x (0.65 D) and
    passes at 21x (1.05 D), not at the point halfway to the first adversarial (about 20 D);
    with one check left after 8x (146 queries: 2 for the search, 8 checks of 16, one more),
    it asks that sure point."""
    d = 4 * 8 * 8
    w = np.random.default_rng(0).standard_normal(d)
    w /= np.linalg.norm(w)
    x0 = np.full((4, 8, 8), 0.5, np.float32)
    D = 0.3  # the boundary w.(x - x0) = D
    best, first = x0 + (D / 20) * w.reshape(x0.shape), x0 + (40 * D / np.sqrt(d)) * np.sign(w).reshape(x0.shape)
    best, first = best.astype(np.float32), np.clip(first, 0, 1).astype(np.float32)
    assert w @ (first - x0).ravel() > D  # the first adversarial is past the boundary

    def oracle(points):
        if len(points) == 1:  # the search's two questions: both answered True
            return np.ones(1, bool)
        return (points - x0).reshape(len(points), -1) @ w > D

    attack = Confirmed(Plants(first, best), votes=16, level=0.5, share=0.99)
    out = run_attack(attack, x0, oracle, budget, np.random.default_rng(0))
    dist = float(np.linalg.norm(out.x_adv - x0))
    if expected == "halfway":
        assert out.found and dist == pytest.approx(float(np.linalg.norm((best + first) / 2 - x0)), rel=1e-5)
        assert dist > 10 * D
    else:
        assert out.found and dist == pytest.approx(expected * D / 20, rel=1e-4)
        assert D < dist < 1.1 * D


def test_confirmation_ladder_reach_is_measured_in_the_attacks_norm():
    """An Linf attack: the best point 0.001 from x0 on every pixel (Linf 0.001, L2 0.004), the
    first adversarial 0.03 from x0 on one pixel (Linf and L2 0.03). Half the first adversarial's
    distance is 15x the best's in Linf but 3.75x in L2, so in the attack's norm the ladder may
    climb to 13x, and it passes there (the checks are True from 12x on); measured in L2 it would
    stop at 8x and fall back to the best, unconfirmed."""
    x0 = np.full((1, 4, 4), 0.5, np.float32)
    best = x0 + np.float32(0.001)
    first = x0.copy()
    first[0, 0, 0] += 0.03

    def oracle(points):
        if len(points) == 1:  # the search's two questions: both answered True
            return np.ones(1, bool)
        return (points - x0).reshape(len(points), -1).mean(axis=1) > 0.012

    attack = Confirmed(Plants(first, best, norm="linf"), votes=8, level=0.5, share=0.99)
    out = run_attack(attack, x0, oracle, 200, np.random.default_rng(0))
    assert out.found and out.norm == "linf"
    assert out.distance == pytest.approx(0.013, rel=1e-3)
