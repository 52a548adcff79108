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
