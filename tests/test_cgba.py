"""CGBA / CGBA-H on linear models (exact optimum), and the noise-aware bisection."""

from __future__ import annotations

import numpy as np
import pytest

from probe.attacks import CGBA, HSJA, Confirmed, make_attack, run_attack
from probe.attacks.base import Tracker, drive
from probe.attacks.noisy_search import bayes_search, crossing_probe_size
from probe.attacks.presets import PRESETS
from probe.attacks.search import bisect, blend
from probe.errors import ProbeError
from tests.linear import make_problem

BUDGET = 2000
# measured L2 ratio over the optimum at 2,000 queries (seeds 0-1: 1.045-1.053 and 2.07-2.18, the
# subspace grown x1.1 an iteration as chosen on EfficientNet-Lite0; x1.5 gave 1.04 and 1.75, a
# fixed subspace 2.7); HSJA's bounds in tests/test_attacks.py are 1.05 and 1.9
MEASURED_L2_BAND = {(3, 8, 8): (1.0, 1.08), (3, 32, 32): (1.95, 2.3)}


@pytest.mark.parametrize("shape", list(MEASURED_L2_BAND))
def test_cgba_reaches_the_linear_optimum_within_the_measured_band(shape):
    low, high = MEASURED_L2_BAND[shape]
    for seed in (0, 1):
        p = make_problem(shape, seed=seed)
        out = run_attack(CGBA(), p.x0, p.is_adv, BUDGET, np.random.default_rng(seed))
        assert out.found and out.queries == BUDGET == p.points
        ratio = p.ratio(out.x_adv)
        assert low <= ratio <= high, f"{shape} seed {seed}: L2 ratio {ratio:.3f} outside [{low}, {high}]"
        assert p.margin(out.x_adv[None])[0] > 0  # verified: on the adversarial side


def test_cgba_paper_preset_runs_within_budget_and_is_weaker_than_probe_at_32():
    p = make_problem((3, 32, 32), seed=0)
    paper = make_attack("cgba", **PRESETS["paper"]["cgba"])
    out = run_attack(paper, p.x0, p.is_adv, BUDGET, np.random.default_rng(0))
    assert out.found and out.queries == BUDGET
    # measured 4.28: the code's fixed subspace, 8x8 of 32x32, holds 1/16 of a random w (16x16: 2.70)
    assert 3.2 <= p.ratio(out.x_adv) <= 5.4


@pytest.mark.parametrize("budget", [1, 7, 333])
def test_budget_is_exact(budget):
    p = make_problem((3, 8, 8), seed=3, sigma=0.05, n=1)
    out = run_attack(CGBA(), p.x0, p.is_adv, budget, np.random.default_rng(0))
    assert out.queries == p.points == budget


def test_targeted_cgba_h_from_x_init():
    p = make_problem((3, 8, 8), seed=1)
    p2, _ = p.optimal_points()
    noise = 0.2 * np.random.default_rng(1).standard_normal(p.shape)
    x_init = np.clip(p.x0 + 5 * (p2 - p.x0) + noise, 0, 1).astype(np.float32)
    assert p.is_adv(x_init[None])[0] and p.ratio(x_init) > 20
    cgba_h = CGBA()  # method "auto": CGBA-H when x_init is given
    out = run_attack(cgba_h, p.x0, p.is_adv, 1000, np.random.default_rng(0), x_init=x_init)
    assert out.found and out.queries == 1000
    ratio = p.ratio(out.x_adv)
    assert ratio <= 1.03, ratio  # measured 1.015 (HSJA: 1.017)
    hsja = run_attack(HSJA(), p.x0, p.is_adv, 1000, np.random.default_rng(0), x_init=x_init)
    assert ratio <= 1.01 * p.ratio(hsja.x_adv)


def test_knobs_are_validated():
    with pytest.raises(ProbeError):
        CGBA(method="geoda")
    with pytest.raises(ProbeError):
        CGBA(delta=0.0)
    with pytest.raises(ProbeError):
        CGBA(norm="linf")


def test_bayes_bisection_locates_a_noisy_boundary_better_than_plain_bisection():
    """Randomized linear oracle (one vote, sigma 0.05 on a line where the boundary lies at
    a = 0.25 of a 0.4 segment): 40 queries each, mean error over 20 seeds."""
    errors = {"plain": [], "bayes": []}
    for seed in range(20):
        p = make_problem((3, 8, 8), seed=seed, sigma=0.05, n=1)
        p2, _ = p.optimal_points()
        point_at = blend(p.x0, (p.x0 + 4.0 * (p2 - p.x0)).astype(np.float32))  # boundary at a = 0.25
        tracker = Tracker(p.x0, 40, "l2")
        hi, _ = drive(bisect(tracker, point_at, 0.0, 1.0, tol=0.0, max_steps=40), p.is_adv)
        errors["plain"].append(abs(hi - 0.25))
        tracker = Tracker(p.x0, 40, "l2")
        found = drive(bayes_search(tracker, point_at, 0.0, 1.0, tol=0.0, max_steps=40), p.is_adv)
        assert tracker.spent <= 40
        errors["bayes"].append(abs(found.median - 0.25))
    plain, bayes = np.mean(errors["plain"]), np.mean(errors["bayes"])
    assert bayes < 0.5 * plain, (bayes, plain)  # measured 0.023 against 0.072


def test_bayes_bisection_is_a_bisection_on_a_deterministic_oracle():
    p = make_problem((3, 8, 8), seed=0)
    p2, _ = p.optimal_points()
    point_at = blend(p.x0, (p.x0 + 4.0 * (p2 - p.x0)).astype(np.float32))
    tracker = Tracker(p.x0, 100, "l2")
    found = drive(bayes_search(tracker, point_at, 0.0, 1.0, tol=1e-4, max_steps=40), p.is_adv)
    assert abs(found.median - 0.25) < 1e-3 and tracker.spent <= 25  # measured 14 queries


def test_bayes_bisection_tells_a_random_oracle_from_a_deterministic_one():
    """PSJ switches its probes to the noisy regime only once a search's answers contradict each
    other: never on deterministic linear oracles (searched to float32 resolution), on most
    searches against one vote at sigma 0.05 (measured: 10 of 10)."""
    seen = {0.0: 0, 0.05: 0}
    for seed in range(10):
        for sigma in seen:
            p = make_problem((3, 32, 32), seed=seed, sigma=sigma, n=1)
            p2, _ = p.optimal_points()
            point_at = blend(p.x0, (p.x0 + 4.0 * (p2 - p.x0)).astype(np.float32))
            search = bayes_search(Tracker(p.x0, 40, "l2"), point_at, 0.0, 1.0, tol=0.0, rtol=1e-6, max_steps=40)
            found = drive(search, p.is_adv)
            seen[sigma] += found.contradicted
    assert seen[0.0] == 0 and seen[0.05] >= 7, seen


def test_crossing_probes_reach_across_the_band_along_the_normal():
    """Once the oracle is seen to be random (PSJ and CGBA's bayes mode), a probe in a k-dim
    subspace must be long enough that its component along the normal (about 1 / sqrt(k) of
    it) crosses ``factor`` band widths, capped; never shorter than the plain probe size."""
    band, factor, k = 0.3, 2.0, 400
    size = crossing_probe_size(band, 0.01, factor, k, cap=100.0)
    assert size == pytest.approx(factor * band * np.sqrt(k))  # 12.0
    probes = np.random.default_rng(0).standard_normal((2000, k))
    along = size * np.abs(probes[:, 0]) / np.linalg.norm(probes, axis=1)
    assert np.median(along) > 0.6 * factor * band  # measured 0.67 * size / sqrt(k)
    assert crossing_probe_size(band, 0.01, factor, k, cap=5.0) == pytest.approx(5.0)  # the cap
    assert crossing_probe_size(band, 0.01, factor, k, cap=0.1) == pytest.approx(factor * band)  # never below
    assert crossing_probe_size(band, 20.0, factor, k, cap=5.0) == pytest.approx(20.0)  # the base step
    assert crossing_probe_size(float("nan"), 0.5, factor, k, cap=5.0) == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["rays", "surfree", "cgba"])
def test_bayes_bisection_option_of_rays_surfree_and_cgba(name):
    p = make_problem((3, 8, 8), seed=2, sigma=0.05, n=1)
    attack = make_attack(name, bisection="bayes")
    out = run_attack(attack, p.x0, p.is_adv, 600, np.random.default_rng(0))
    assert out.found and out.queries == p.points == 600
    with pytest.raises(ProbeError):
        make_attack(name, bisection="fancy")


def test_noise_aware_cgba_keeps_the_linear_optimum_against_a_deterministic_oracle():
    for seed in (0, 1):
        p = make_problem((3, 8, 8), seed=seed)
        out = run_attack(CGBA(bisection="bayes"), p.x0, p.is_adv, BUDGET, np.random.default_rng(seed))
        assert out.found and out.queries == BUDGET == p.points
        assert 1.0 <= p.ratio(out.x_adv) <= 1.15  # measured 1.085, 1.096 (plain: 1.045, 1.057)


@pytest.mark.parametrize("n", [4, 5])
def test_noise_aware_cgba_beats_plain_cgba_against_a_randomized_oracle(n):
    """sigma 0.05, n votes (even and odd: a tie is no majority); both confirmed (15% reserve);
    the median L2 ratio over 5 seeds."""
    ratios = {"plain": [], "bayes": []}
    for seed in range(5):
        for kind in ratios:
            p = make_problem((3, 8, 8), seed=seed, sigma=0.05, n=n)
            attack = Confirmed(CGBA(bisection=kind), votes=20, share=0.15)
            out = run_attack(attack, p.x0, p.is_adv, BUDGET, np.random.default_rng(seed))
            assert out.found and out.queries <= BUDGET
            ratios[kind].append(p.ratio(out.x_adv))
    bayes, plain = np.median(ratios["bayes"]), np.median(ratios["plain"])
    assert bayes < 0.6 * plain, (bayes, plain)  # measured 2.40 against 6.89 (n 4), 2.63 against 6.73 (n 5)
