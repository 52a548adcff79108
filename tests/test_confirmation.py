"""The confirmation phase against a randomized oracle, on linear models with exact p_adv."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from probe.attacks import make_attack, run_attack
from tests.linear import make_problem


def exact_p_adv(problem, x: np.ndarray) -> float:
    """P[majority of n noisy copies is adversarial] at x, in closed form."""
    p = stats.norm.cdf(problem.margin(x[None])[0] / problem.sigma)
    return float(stats.binom.sf(problem.n // 2, problem.n, p))


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
                attack.confirm_with(votes=20, level=0.5, share=0.15)
            out = run_attack(attack, p.x0, p.is_adv, 1000, np.random.default_rng(seed))
            assert out.queries <= 1000 and p.points == out.queries
            store.append(exact_p_adv(p, out.x_adv) if out.found else 0.0)
    assert np.mean([q >= 0.5 for q in confirmed]) >= 5 / 6
    assert np.median(confirmed) > np.median(plain)


def test_confirmation_is_cheap_on_a_deterministic_oracle():
    p = make_problem((3, 8, 8), seed=1)
    out = run_attack(make_attack("hsja").confirm_with(10, 0.5, 0.1), p.x0, p.is_adv, 2000, np.random.default_rng(0))
    assert out.found and p.ratio(out.x_adv) < 1.1  # accepted at once: the search's best point


def test_confirmation_parameters_are_validated():
    with pytest.raises(ValueError):
        make_attack("rays").confirm_with(votes=0)
    with pytest.raises(ValueError):
        make_attack("rays").confirm_with(level=1.5)
    with pytest.raises(ValueError):
        make_attack("rays").confirm_with(share=1.0)
