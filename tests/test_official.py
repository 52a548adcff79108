"""The ``paper`` preset's official rules, on models where the right answer is known exactly.

* SurFree (t-maho/SurFree at c9920f2): the angle bisection stops when |cos(upper) - cos(lower)|
  <= BS_gamma, asks the opposite angle while it answers True, the attack ends with a boosted
  line search toward x0, Gram-Schmidt runs against the first direction and the last draws.
* HSJA (Jianbo-Lab/HSJA): the last iterate is reported (the bisections to an absolute theta and
  delta from dist_post_update are replayed in tests/test_presets.py).
* RayS (uclaml/RayS): the official loop, replayed point for point.
* CGBA (Farhamdur/CGBA): the start x0 + k 0.02 N(0, I), probes of random length.
* PopSkipJump (cjsg/PopSkipJump): probe radius, step dist / sqrt(t) without halving, the x1.5
  move, the info-max search on a grid, the cosine-matched probe counts and their formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from probe.attacks import SurFree, run_attack
from probe.attacks.base import Tracker, drive
from probe.attacks.official import angle_bisection
from probe.attacks.presets import AttackSettings, build_attack
from tests.linear import make_problem

PAPER = AttackSettings(preset="paper")


# -- SurFree --------------------------------------------------------------------------------

def angle_line():
    """A 1-D "circle": z(angle) encodes the angle in the first coordinate (in [0.1, 0.9])."""
    x0 = np.zeros((1, 1, 2), np.float32)

    def z(angle):
        return np.array([[[0.5 + angle / 4.0, 0.5]]], np.float32)

    def decode(pts):
        return (pts.reshape(len(pts), -1)[:, 0].astype(np.float64) - 0.5) * 4.0

    return x0, z, decode


def official_replay(th, step, lo_adv, hi_adv, gamma, max_iter, opposite):
    """The reference's rule written out: the sequence of batches (angles) and the final lower."""
    lower, upper = th, th + math.copysign(step, th)
    check, batches = opposite and lower > 0, []
    for _ in range(max_iter):
        if abs(math.cos(upper) - math.cos(lower)) <= gamma:
            break
        mid = 0.5 * (upper + lower)
        batches.append([mid, -mid] if check else [mid])
        adv, opp = lo_adv < mid < hi_adv, lo_adv < -mid < hi_adv
        if adv:
            lower = mid
        elif check and opp:
            lower, upper = -mid, -upper
        else:
            upper = mid
        check = check and (opp if len(batches[-1]) == 2 else adv) and lower > 0
    return batches, lower


@pytest.mark.parametrize("opposite", [False, True])
def test_surfree_angle_bisection_stops_on_the_cosine_rule(opposite):
    """From 30 degrees (adversarial up to 45 degrees), theta_max = 30 / 0.98 degrees: 6 steps
    to |cos(upper) - cos(lower)| <= 0.01 (a width of 0.01 theta would take 7); with the
    opposite check (adversarial down to -20 degrees) each step asks -mid too while it answers
    True: here only the first (-45.3 degrees is not adversarial)."""
    x0, z, decode = angle_line()
    rad = math.radians
    th, step, edge = rad(30.0), rad(30.0 / 0.98), rad(45.0)
    asked = []

    def oracle(pts):
        angles = decode(pts)
        asked.append(angles)
        return (angles > -rad(20.0)) & (angles < edge)

    tracker = Tracker(x0, 100, "l2")
    lower, x_lo = drive(angle_bisection(tracker, z, th, step, z(th), 0.01, 10, opposite), oracle)
    batches, expected = official_replay(th, step, -rad(20.0), edge, 0.01, 10, opposite)
    assert len(asked) == len(batches) == 6
    assert [len(b) for b in asked] == ([2] if opposite else [1]) + [1] * 5
    for got, want in zip(asked, batches):
        assert np.allclose(got, want, atol=1e-6)
    assert lower == pytest.approx(expected) and abs(math.cos(lower) - math.cos(edge)) <= 0.01
    assert np.array_equal(x_lo, z(lower))


def test_surfree_opposite_check_moves_to_the_other_side():
    """Adversarial on (-60, 40) degrees, from 30: mid = 45.3 is not adversarial, -45.3 is: the
    bracket moves to [-45.3, -60.6] and the opposite check stops (lower < 0)."""
    x0, z, decode = angle_line()
    rad = math.radians
    asked = []

    def oracle(pts):
        angles = decode(pts)
        asked.append(angles)
        return (angles > -rad(60.0)) & (angles < rad(40.0))

    tracker = Tracker(x0, 100, "l2")
    lower, _ = drive(angle_bisection(tracker, z, rad(30.0), rad(30.0 / 0.98), z(rad(30.0)), 0.01, 10, True), oracle)
    assert len(asked[0]) == 2 and all(len(b) == 1 for b in asked[1:])
    assert np.all(np.concatenate(asked[1:]) < 0)
    assert -rad(60.0) < lower < -rad(45.0) and abs(math.cos(lower) - math.cos(rad(60.0))) <= 0.01


def test_surfree_paper_preset_is_c9920f2_and_ends_with_the_boosted_search():
    attack = build_attack("surfree", norm="l2", settings=PAPER)
    params = attack.params()
    assert {k: params[k] for k in ("theta_max", "rho", "T", "n_ortho", "bs_gamma", "bs_max_iter")} == {
        "theta_max": 30.0, "rho": 0.98, "T": 1, "n_ortho": 10, "bs_gamma": 0.01, "bs_max_iter": 10}
    assert (params["bs_rule"], params["opposite"], params["final_search"], params["ortho"], params["start"]) == (
        "cos", True, True, "first", "official")
    p = make_problem((3, 8, 8), seed=0)
    trace = []

    def oracle(pts):
        answers = p.is_adv(pts)
        trace.append((pts.reshape(len(pts), -1).astype(np.float64), answers))
        return answers

    budget = 600
    out = run_attack(attack, p.x0, oracle, budget, np.random.default_rng(0))
    assert out.found and out.queries == budget
    assert any(len(pts) == 2 for pts, _ in trace)  # the opposite-angle check
    # the final boosted search: a query at 0.8 of the way from x0 to the best point so far,
    # then bisection steps on that segment, up to the budget (at most 1 + 10 queries)
    x0 = p.x0.ravel().astype(np.float64)
    points = [(q, a) for pts, ans in trace for q, a in zip(pts, ans)]
    for j in range(len(points) - 11, len(points)):
        best = min((q for q, a in points[:j] if a), key=lambda q: np.linalg.norm(q - x0))
        if np.allclose(points[j][0], x0 + 0.8 * (best - x0), atol=1e-5):
            break
    else:
        raise AssertionError("no boosted line search at the end")
    direction = (best - x0) / np.linalg.norm(best - x0)
    for q, _ in points[j:]:
        r = q - x0
        assert np.linalg.norm(r - (r @ direction) * direction) < 1e-5  # on the segment
    assert p.ratio(out.x_adv) < 2.0 and p.margin(out.x_adv[None])[0] > 0


# -- HSJA -----------------------------------------------------------------------------------

def test_hsja_paper_preset_reports_the_last_iterate():
    """The reference returns its last boundary point; probe's default the closest point ever
    answered adversarial. Same queries either way; against a randomized oracle (sigma 0.02,
    one vote) the last iterate is further than the luckiest answer (measured 1.001x, 1.06x,
    1.15x on seeds 0-2)."""
    from probe.attacks import HSJA

    params = build_attack("hsja", norm="l2", settings=PAPER).params()
    assert (params["report"], params["max_init_tries"], params["max_halvings"]) == ("last", 10000, 10000)
    worse = 0
    for seed in range(3):
        outs, hashes = {}, {}
        for report in ("last", "best"):
            p = make_problem((3, 8, 8), seed=seed, sigma=0.02, n=1)
            asked = []

            def oracle(pts, p=p, asked=asked):
                answers = p.is_adv(pts)
                asked.append((pts.copy(), answers.copy()))
                return answers

            outs[report] = run_attack(HSJA(**{**params, "report": report}), p.x0, oracle, 800, np.random.default_rng(seed))
            hashes[report] = asked
        last, best = outs["last"], outs["best"]
        assert all(np.array_equal(a[0], b[0]) for a, b in zip(hashes["last"], hashes["best"]))
        singles_true = [pts[0] for pts, ans in hashes["last"] if len(pts) == 1 and ans[0]]
        assert any(np.array_equal(last.x_adv, q) for q in singles_true)  # answered adversarial once
        assert last.distance >= best.distance
        worse += last.distance > 1.03 * best.distance
    assert worse >= 2


# -- RayS -----------------------------------------------------------------------------------

def official_rays(x0, adversarial, budget, line_steps=10, tol=1e-3):
    """uclaml/RayS (RayS_Single.py) written out from its rules: the points it asks, in order,
    and its final radius (along the unit sign vector, in L2 units)."""
    d = x0.size
    flat0 = x0.ravel().astype(np.float64)
    asked = []

    def ask(s, r_linf):
        q = np.clip(flat0 + r_linf * s, 0.0, 1.0)
        asked.append(q)
        return adversarial(q)

    sgn, d_t = np.ones(d), math.inf
    level, block = 0, 0
    while len(asked) < budget:
        size = int(math.ceil(d / 2**level))
        start, end = block * size, min(d, (block + 1) * size)
        attempt = sgn.copy()
        attempt[start:end] *= -1
        norm = math.sqrt(d)
        if d_t < math.inf:
            ok, d_end = ask(attempt, d_t / norm), d_t
        else:
            hit = next((k for k in range(1, line_steps + 1) if ask(attempt, float(k))), None)
            ok, d_end = hit is not None, (hit or 0) * norm
        if ok:
            d_start = 0.0
            while d_end - d_start > tol:
                mid = 0.5 * (d_start + d_end)
                if ask(attempt, mid / norm):
                    d_end = mid
                else:
                    d_start = mid
            if d_end < d_t:
                d_t, sgn = d_end, attempt
        block += 1
        if block == 2**level or end == d:
            level, block = level + 1, 0
    return asked[:budget], d_t


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rays_paper_preset_asks_the_official_points(seed):
    """Query for query the official loop: the first attempt is the all -1 flip (line searched
    at radii 1..10, all clipped to one corner), every bisection starts from 0 and stops at 1e-3
    along the unit sign vector; the result is its radius."""
    p = make_problem((3, 8, 8), seed=seed)
    asked = []

    def oracle(pts):
        asked.extend(pts.reshape(len(pts), -1).astype(np.float64))
        return p.is_adv(pts)

    budget = 400
    out = run_attack(build_attack("rays", norm="linf", settings=PAPER), p.x0, oracle, budget, np.random.default_rng(0))
    want, d_t = official_rays(p.x0, lambda q: bool(p.margin(q.astype(np.float32)[None])[0] > 0), budget)
    assert len(asked) == len(want) == budget
    assert np.allclose(np.array(asked), np.array(want), atol=2e-6)
    assert np.allclose(want[0], np.clip(p.x0.ravel() - 1.0, 0, 1))  # the all -1 flip comes first
    # the closest point answered True within the budget (the official loop would finish its last
    # bisection past the budget: its d_t is at most that far)
    hits = [np.abs(q - p.x0.ravel()).max() for q in want if p.margin(q.astype(np.float32)[None])[0] > 0]
    assert out.distance == pytest.approx(min(hits), rel=1e-5)
    assert d_t / math.sqrt(p.x0.size) <= out.distance * (1 + 1e-5)


# -- CGBA -----------------------------------------------------------------------------------

def test_cgba_paper_preset_starts_with_a_noise_ramp_and_probes_of_random_length():
    """Farhamdur/CGBA: the start asks x0 + k 0.02 N(0, I), k = 1, 2, ... until one is
    adversarial; the normal estimate's probes are sigma N(0, I_k) on the low-frequency subspace
    of dim_reduc_factor 4 (``find_random``: the first 32 / 4 = 8 DCT frequencies a side, k =
    3 x 8 x 8 here): lengths chi_k distributed, about sigma sqrt(k), whatever D."""
    from scipy.fft import dctn

    from probe.attacks.directions import probe_dim

    attack = build_attack("cgba", norm="l2", settings=PAPER)
    assert (attack.start, attack.init_scale, attack.sigma) == ("ramp", 0.02, 4.5e-5)
    p = make_problem((3, 32, 32), seed=0)
    trace = []

    def oracle(pts):
        answers = p.is_adv(pts)
        trace.append((pts.reshape(len(pts), -1).astype(np.float64), answers))
        return answers

    out = run_attack(attack, p.x0, oracle, 600, np.random.default_rng(0))
    assert out.found
    x0, d = p.x0.ravel().astype(np.float64), p.x0.size
    first = next(i for i, (_, ans) in enumerate(trace) if ans[0])
    assert first >= 2  # a few non-adversarial steps of the ramp first
    for k, (pts, _) in enumerate(trace[: first + 1], start=1):
        assert len(pts) == 1
        assert np.linalg.norm(pts[0] - x0) / (0.02 * k * math.sqrt(d)) == pytest.approx(1.0, abs=0.12), k
    batches = [(i, pts) for i, (pts, _) in enumerate(trace) if len(pts) > 1]
    assert len(batches) >= 3
    k_dim = probe_dim(p.x0.shape, 0.25, attack.min_side)
    assert k_dim == 3 * 8 * 8
    for i, pts in batches:
        x_b = next(q[0] for q, a in reversed(trace[:i]) if len(q) == 1 and a[0])
        lengths = np.linalg.norm(pts - x_b, axis=1) / attack.sigma
        # chi_k: mean sqrt(k - 1/2), standard deviation 1/sqrt(2) (unit probes would have none)
        assert np.mean(lengths) == pytest.approx(math.sqrt(k_dim - 0.5), rel=0.02)
        assert 0.5 < np.std(lengths) < 0.95
        coef = dctn((pts - x_b).reshape(-1, 3, 32, 32), axes=(2, 3), norm="ortho")
        outside = coef.copy()
        outside[:, :, :8, :8] = 0.0
        # nothing above frequency 8 but float32 rounding (16 a side: 3/4 of the energy)
        assert np.sum(outside**2) <= 1e-3 * np.sum(coef**2)


# -- PopSkipJump -----------------------------------------------------------------------------

def test_popskipjump_step_move_and_probe_radius_follow_the_paper():
    """cjsg/PopSkipJump on a linear model at d = 16 (more probes than dimensions: the boundary
    point x_t is the centre of the sphere its probes lie on). Each iteration t: the probes have
    radius dist_post_update sqrt(d) / grid_size (dist_post_update: of the point the last search
    started from); the step is eps = ||x_t - x0|| / sqrt(t) along the estimate (HSJA's baseline),
    never halved; the point is moved x1.5 away from x0; the next search asks only points of the
    segment from x0 to it, at grid positions; the probe count is the cosine-matched count of one
    (s, e) of the search's grid."""
    from probe.attacks import PopSkipJump
    from probe.attacks.official import expected_cos, probes_for_cos

    attack = build_attack("popskipjump", norm="l2", settings=PAPER)
    assert attack.params() == PopSkipJump().params()
    g = attack.grid_size
    p = make_problem((1, 4, 4), seed=1)
    x0 = p.x0.ravel().astype(np.float64)
    d = x0.size
    trace = []

    def oracle(pts):
        answers = p.is_adv(pts)
        trace.append((pts.reshape(len(pts), -1).astype(np.float64), answers))
        return answers

    out = run_attack(attack, p.x0, oracle, 900, np.random.default_rng(0))
    assert out.found
    batches = [i for i, (pts, _) in enumerate(trace) if len(pts) > 1]
    assert len(batches) >= 4
    start = next(pts[0] for pts, ans in trace if ans[0])
    before = np.linalg.norm(start - x0)  # dist_post_update of the first search: the random start
    theta = 1.0 / d**1.5
    counts = []
    for t, i in enumerate(batches, start=1):
        probes, answers = trace[i]
        # the centre of the probes' sphere: 2 (P_j - P_0) . c = |P_j|^2 - |P_0|^2
        a = 2.0 * (probes[1:] - probes[0])
        rhs = (probes[1:] ** 2).sum(axis=1) - (probes[0] ** 2).sum()
        x_t = np.linalg.lstsq(a, rhs, rcond=None)[0]
        radius = np.linalg.norm(probes - x_t, axis=1)
        assert np.allclose(radius, before * math.sqrt(d) / g, rtol=1e-3), (t, radius[:3], before)
        n_det = 100 * (math.sqrt(t) if t > 1 else 1.0)
        target = expected_cos(n_det, d, theta=theta, delta=theta * math.sqrt(d))
        counts.append((len(probes), target))
        if i == batches[-1] or trace[i + 1][0].shape[0] > 1:
            break
        u = (probes - x_t) / radius[:, None]
        phi = np.where(answers, 1.0, -1.0)
        grad = (phi if abs(phi.mean()) == 1.0 else phi - phi.mean()) @ u
        v = grad / np.linalg.norm(grad)
        eps = np.linalg.norm(x_t - x0) / math.sqrt(t)
        moved = np.clip(x_t + eps * v, 0, 1)
        moved = np.clip(moved + 0.5 * (moved - x0), 0, 1)
        nxt = batches[t] if t < len(batches) else len(trace)
        for q, _ in trace[i + 1 : nxt]:  # the search: on the segment, at t' = k / grid_size
            frac = np.linalg.norm(q[0] - x0) / np.linalg.norm(moved - x0)
            assert np.allclose(q[0], x0 + frac * (moved - x0), atol=2e-4), t
            assert abs(frac * g - round(frac * g)) < 0.02, (t, frac * g)
        before = np.linalg.norm(moved - x0)
    # the probe counts (the last batch is cut by the budget): cosine-matched for a fitted (s, e) of
    # the grids; here 112, 158, 194, 224 (s = 100, e = 0: a deterministic boundary)
    assert len(counts) >= 4
    for n, target in counts[:-1]:
        fits = [probes_for_cos(target, d, s=s, theta=1.0 / g, delta=math.sqrt(d) / g, eps=e)
                for s in np.logspace(-1, 2, 31) for e in np.linspace(0, 0.3, 7)]
        assert any(int(f) == n for f in fits if math.isfinite(f)), n
    assert p.ratio(out.x_adv) < 1.5


@pytest.mark.parametrize("budget", [1, 9, 200])
def test_popskipjump_budget_is_exact(budget):
    from probe.attacks import PopSkipJump

    p = make_problem((3, 8, 8), seed=4, sigma=0.05, n=1)
    out = run_attack(PopSkipJump(), p.x0, p.is_adv, budget, np.random.default_rng(0))
    assert out.queries == p.points == budget


def test_popskipjump_cosine_formulas_are_the_papers():
    """E[cos] = 1 / sqrt(1 + (d - 1) / (n alpha^2)); HSJA's probes (delta = theta sqrt(d) on a
    step boundary) have alpha = sqrt(2 / pi) exp(-1/2); the probe count inverts it exactly."""
    from probe.attacks.official import expected_cos, probes_for_cos

    d, n = 3072, 141.0
    theta = 1.0 / d**1.5
    alpha = math.sqrt(2.0 / math.pi) * math.exp(-0.5)
    cos = expected_cos(n, d, theta=theta, delta=theta * math.sqrt(d))
    assert cos == pytest.approx(1.0 / math.sqrt(1.0 + (d - 1) / (n * alpha**2)), rel=1e-12)
    assert cos == pytest.approx(0.1031, abs=1e-4)
    assert probes_for_cos(cos, d, theta=theta, delta=theta * math.sqrt(d)) == pytest.approx(n, rel=1e-9)
    # a noisier sigmoid (smaller s, flips e) needs more probes for the same cosine
    g = 300
    sharp = probes_for_cos(cos, d, s=100.0, theta=1 / g, delta=math.sqrt(d) / g, eps=0.0)
    noisy = probes_for_cos(cos, d, s=10.0, theta=1 / g, delta=math.sqrt(d) / g, eps=0.1)
    assert n < sharp < noisy and noisy > 50 * sharp


@pytest.mark.parametrize("flip", [0.0, 0.15])
def test_popskipjump_infomax_search_finds_the_boundary_and_the_noise(flip):
    """On a line with its boundary at t = 0.375 (t = 1 is x0): deterministic answers give the MAP
    within one grid step of it, the sharpest sigmoid and no flips; answers flipped with
    probability 0.15 still give the boundary within a few grid steps, a fitted flip rate > 0,
    and cost more queries."""
    from probe.attacks import PopSkipJump

    attack = PopSkipJump(grid_size=100)
    x0 = np.zeros((1, 1, 1), np.float32)
    rng = np.random.default_rng(1)
    asked = []

    def point_at(t):
        return np.array([[[t]]], np.float32)

    def oracle(pts):
        t = pts.reshape(-1).astype(np.float64)
        asked.extend(t)
        answers = t < 0.375  # adversarial on the side of the adversarial end (t = 0)
        return answers ^ (rng.random(len(t)) < flip)

    tracker = Tracker(x0, 2000, "l2")
    (t_map, s_map, e_map), n = drive(attack._infomax(tracker, point_at, None, 0.1, 16), oracle)
    if flip == 0.0:
        assert abs(t_map - 0.375) <= 0.0101 and s_map == 100.0 and e_map == 0.0
        assert 15 <= len(asked) <= 30
    else:
        assert abs(t_map - 0.375) <= 0.05 and e_map > 0.0
        assert len(asked) > 30
    assert all(abs(t * 100 - round(t * 100)) < 1e-4 for t in asked)  # on the grid (float32 points)
    assert math.isfinite(n) and n > 0


def test_surfree_official_gram_schmidt_is_against_the_first_and_the_last_draws():
    """c9920f2: a draw is made orthogonal to the start's direction and to the last n_ortho draws
    (all of them, one classical pass), not to the current direction."""
    from probe.attacks.directions import AnchoredDirections

    rng = np.random.default_rng(0)
    d, n = 200, 10
    first = rng.standard_normal(d).astype(np.float32)
    first /= np.linalg.norm(first)
    past = AnchoredDirections(n, first)
    u = rng.standard_normal(d).astype(np.float32)
    u /= np.linalg.norm(u)
    draws = [past.unit_orthogonal(rng.standard_normal(d).astype(np.float32), u) for _ in range(25)]
    last = draws[-1]
    assert abs(np.linalg.norm(last) - 1) < 1e-5
    assert abs(last @ first) < 0.02  # one classical pass: nearly, not exactly, orthogonal
    assert max(abs(last @ v) for v in draws[-1 - n : -1]) < 0.02
    assert max(abs(last @ v) for v in draws[: -1 - n]) > 0.05  # older draws are forgotten
    assert abs(last @ u) > 0.01  # the current direction is not removed
