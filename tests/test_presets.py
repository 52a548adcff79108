"""The ``paper`` presets follow the published algorithms, read off the queries they send.

On a random linear two-class model in small dimension, the oracle records every batch
an attack sends; the tests rebuild, from the recorded points and answers alone, what
the reference formulas say each query must be:

* HSJA (Chen, Jordan, Wainwright 2020, the authors' code): theta = gamma / d^1.5
  (L2; gamma = 1), a gradient batch of n_t = min(init_num_evals sqrt(t),
  max_num_evals) probes at distance delta from the boundary point x_b (delta = 0.1 at
  t = 1, sqrt(d) theta dist_{t-1} after), i.i.d. Gaussian directions, then the
  geometric step x_b + eps v, eps = dist / sqrt(t), v the fresh estimate, halved until
  adversarial.
* SurFree (Maho, Furon, Le Merrer 2021): probe's own rules replayed query by query
  (the circle search z(theta) = x0 + D cos(theta) (cos(theta) u + sin(theta) v) at
  +-theta_max, +-(T-1)/T theta_max, ..., theta_max *= rho after a failed direction and /=
  rho after a success, then the angle bisection to a width bs_gamma theta); the paper
  preset's official rules (t-maho/SurFree at c9920f2: the cosine stop, the opposite-angle
  check, the boosted line searches) are checked in tests/test_official.py.

Every checker is also run on mutated settings (memory=1, step="sum", bs_max_iter=0,
...) and must then fail: the tests can tell the reference from its variants.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from probe.attacks import HSJA, RayS, SurFree, run_attack
from probe.attacks.presets import CONFIRM_SHARE, PRESETS, AttackSettings, build_attack

PAPER = AttackSettings(preset="paper")
PROBE = AttackSettings(preset="probe")
SHAPE = (1, 8, 8)


def linear_model(shape=SHAPE, seed=0, opt=0.1):
    """w ~ N(0, I), x0 ~ U[0.4, 0.6]^d, b such that the L2 optimum is ``opt``."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    w = rng.standard_normal(d)
    x0 = rng.uniform(0.4, 0.6, size=shape).astype(np.float32)
    b = -float(w @ x0.ravel().astype(np.float64)) - opt * float(np.linalg.norm(w))
    return x0, w, b


def record(attack, budget, *, shape=SHAPE, seed=0, slab=None, x_init=None):
    """Run ``attack`` against ``(x.reshape(k, -1) @ w + b) > 0`` and return (x0, trace):
    every batch as sent, with its answers. ``slab``: answer True only for margins in
    (0, slab) (a two-sided model, where long steps overshoot)."""
    x0, w, b = linear_model(shape, seed)
    trace = []

    def oracle(x):
        m = x.reshape(len(x), -1) @ w + b
        answers = (m > 0) if slab is None else (m > 0) & (m < slab * np.linalg.norm(w))
        trace.append((np.array(x, dtype=np.float64).reshape(len(x), -1), np.array(answers, dtype=bool)))
        return answers

    out = run_attack(attack, x0, oracle, budget, np.random.default_rng(seed + 1), x_init)
    assert out.queries == sum(len(p) for p, _ in trace) <= budget
    return x0.ravel().astype(np.float64), trace


def unit(v):
    return v / np.linalg.norm(v)


# -- HSJA --------------------------------------------------------------------------------


def hsja_iterations(trace):
    """Per gradient batch (a batch of several points): t, the batch, the boundary point it
    was drawn at (the last single point answered True before it: every boundary search
    returns its last adversarial answer), the queries spent before it, and the single
    points that follow it up to the next batch."""
    spent, last_true, out, t = 0, None, [], 0
    for i, (pts, ans) in enumerate(trace):
        if len(pts) > 1:
            t += 1
            singles = []
            for later, later_ans in trace[i + 1 :]:
                if len(later) > 1:
                    break
                singles.append((later[0], bool(later_ans[0])))
            out.append({"t": t, "probes": pts, "answers": ans, "x_b": last_true, "spent": spent, "after": singles})
        elif ans[0]:
            last_true = pts[0]
        spent += len(pts)
    return out


def check_hsja_paper(x0, trace, budget, norm="l2", max_halvings=10000):
    """The reference HSJA, query by query (see the module notes); returns the iterations."""
    d = x0.size
    theta = 1.0 / d**1.5 if norm == "l2" else 1.0 / d**2  # gamma = 1
    iterations = hsja_iterations(trace)
    assert len(iterations) >= 4
    dist_of = (lambda r: float(np.linalg.norm(r))) if norm == "l2" else (lambda r: float(np.abs(r).max()))
    before = None  # dist_post_update: the distance of the point the last boundary search started from
    for n, it in enumerate(iterations):
        t, probes, x_b = it["t"], it["probes"], it["x_b"]
        # batch size: the reference schedule, cut only by the budget (no fitting)
        assert len(probes) == min(int(min(100 * math.sqrt(t), 10000)), budget - it["spent"]), t
        dist = dist_of(x_b - x0)
        delta = 0.1 if t == 1 else (math.sqrt(d) if norm == "l2" else d) * theta * before
        assert np.all((probes > 0) & (probes < 1))  # nothing clipped: the probes are x_b + delta u
        r = probes - x_b
        assert np.allclose(np.linalg.norm(r, axis=1), delta, rtol=1e-3), (t, delta)
        u = r / delta
        # i.i.d. Gaussian directions: E[(u_i . u_j)^2] = 1/d for i != j (0 if orthonormal)
        k = min(len(u), d)
        gram = u[:k] @ u[:k].T
        off = gram[~np.eye(k, dtype=bool)]
        if k >= 32:
            assert 0.75 / d < np.mean(off**2) < 1.33 / d, (t, np.mean(off**2) * d)
            # coordinates: Gaussian (L2, kurtosis 3) or uniform on [-1, 1] (Linf, kurtosis 1.8)
            kurtosis = np.mean(u**4) / np.mean(u**2) ** 2
            assert abs(kurtosis - (3.0 if norm == "l2" else 1.8)) < 0.3, (t, kurtosis)
        # the fresh estimate (memory 0): g = sum((phi - mean(phi)) u), +-mean(u) if unanimous
        phi = np.where(it["answers"], 1.0, -1.0)
        g = phi.mean() * u.mean(axis=0) if abs(phi.mean()) == 1.0 else (phi - phi.mean()) @ u
        v = unit(g) if norm == "l2" else np.sign(g)
        steps = it["after"]
        if not steps:
            continue
        # geometric step: eps = dist / sqrt(t), halved while not adversarial
        eps = dist / math.sqrt(t)
        for j, (q, adversarial) in enumerate(steps[: max_halvings + 1]):
            # q = clip(x_b + eps_j v), eps_j = eps / 2^j: exact where not clipped
            free = (q > 0) & (q < 1)
            assert free.sum() >= d // 2, (t, j, "clipped")
            target = x_b + eps / 2**j * v
            assert np.allclose(q[free], target[free], rtol=0, atol=1e-6), (t, j, "step")
            assert np.all(target[q == 0] <= 1e-6) and np.all(target[q == 1] >= 1 - 1e-6), (t, j, "clip")
            if adversarial:
                break
        accepted = next((j for j, (_, ok) in enumerate(steps) if ok), None)
        if accepted is None:
            continue
        # back to the boundary: a bisection of the blend factor on [0, 1] (Linf: of the radius on
        # [0, dist]) from 0, down to the absolute theta (Linf: min(dist theta, theta))
        p = steps[accepted][0]
        before = dist_of(p - x0)
        hi = 1.0 if norm == "l2" else before
        tol = theta if norm == "l2" else min(before * theta, theta)
        lo, bis = 0.0, steps[accepted + 1 :]
        if n + 1 < len(iterations):  # complete: exactly the steps the absolute tolerance allows
            assert len(bis) == math.ceil(math.log2(hi / tol)), (t, len(bis))
        for q, adversarial in bis:
            mid = 0.5 * (lo + hi)
            want = x0 + mid * (p - x0) if norm == "l2" else np.clip(p, x0 - mid, x0 + mid)
            assert np.allclose(q, want, atol=1e-6), (t, "bisection")
            lo, hi = (lo, mid) if adversarial else (mid, hi)
    return iterations


def paper_hsja(**change):
    return HSJA(**{**build_attack("hsja", norm=change.pop("norm", "l2"), settings=PAPER).params(), **change})


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_hsja_paper_preset_follows_the_reference_formulas(norm):
    attack = build_attack("hsja", norm=norm, settings=PAPER)
    assert (attack.memory, attack.orthogonal, attack.step, attack.fit_budget) == (0.0, False, "geometric", False)
    assert (attack.search, attack.delta_from, attack.report, attack.linf_probes) == ("bisect", "before", "last", "uniform")
    assert (attack.gamma, attack.init_num_evals, attack.max_num_evals) == (1.0, 100, 10000)
    budget = 1500
    x0, trace = record(attack, budget)
    iterations = check_hsja_paper(x0, trace, budget, norm)
    # the first iterations: 100, 141, 173, 200, ... probes; the budget cuts the last one
    assert [len(it["probes"]) for it in iterations[:4]] == [100, 141, 173, 200]
    assert len(iterations[-1]["probes"]) < int(100 * math.sqrt(len(iterations)))


def test_hsja_paper_step_is_halved_until_adversarial():
    """On a slab (adversarial for margins in (0, 0.01)), eps = dist / sqrt(t) overshoots:
    the step is halved, each candidate on the same ray, until one lands in the slab."""
    x0, w, b = linear_model()
    start = (x0.ravel() + 0.105 * unit(w)).reshape(SHAPE).astype(np.float32)
    budget = 1200
    x0f, trace = record(paper_hsja(), budget, slab=0.01, x_init=start)
    iterations = check_hsja_paper(x0f, trace, budget)
    halvings = [next((j for j, (_, ok) in enumerate(it["after"]) if ok), None) for it in iterations]
    assert sum(h for h in halvings if h) >= 4, halvings


@pytest.mark.parametrize(
    "change",
    [{"memory": 1.0}, {"step": "sum"}, {"orthogonal": True}, {"fit_budget": True}, {"gamma": 2.0},
     {"init_num_evals": 50}, {"search": "gallop"}, {"delta_from": "after"}],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_hsja_checker_rejects_other_settings(change):
    budget = 1500
    x0, trace = record(paper_hsja(**change), budget)
    with pytest.raises(AssertionError):
        check_hsja_paper(x0, trace, budget)


def test_hsja_probe_preset_probes_are_orthonormal():
    """The probe preset is the class defaults: orthonormal probes (the paper's are not; below
    16 frequencies a side the low-frequency subspace is the whole space), accumulated
    estimates, the "sum" step, the budget fitted."""
    attack = build_attack("hsja", norm="l2", settings=PROBE)
    assert attack.params() == HSJA().params()
    assert (attack.memory, attack.orthogonal, attack.step, attack.fit_budget) == (1.0, True, "sum", True)
    x0, trace = record(attack, 1500)
    first = hsja_iterations(trace)[0]
    u = (first["probes"] - first["x_b"]) / 0.1
    d = x0.size
    assert len(u) == attack.init_num_evals == 50 < d
    assert np.allclose(u @ u.T, np.eye(len(u)), atol=1e-4)  # 50 vectors of one orthonormal basis
    with pytest.raises(AssertionError):
        check_hsja_paper(x0, trace, 1500)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_hsja_probe_preset_probes_at_one_percent_of_the_distance(shape):
    """delta = sqrt(d) theta dist: probe's theta (ART's, 0.01 / sqrt(d)) makes the probes 1% of
    the boundary distance at any d (the reference's 1 / d^1.5, checked by check_hsja_paper,
    makes them dist / d: 7e-6 dist at 3x224x224). From the second iteration (the first probes
    at 0.1)."""
    attack = build_attack("hsja", norm="l2", settings=PROBE)
    assert (attack.gamma, attack.dim_power) == (0.01, 0.5)
    x0, trace = record(attack, 1200, shape=shape)
    iterations = hsja_iterations(trace)
    assert len(iterations) >= 3
    for it in iterations[1:3]:
        r = it["probes"] - it["x_b"]
        free = np.all((it["probes"] > 0) & (it["probes"] < 1), axis=1)  # unclipped probes
        assert free.sum() >= len(r) // 2
        ratio = np.linalg.norm(r[free], axis=1) / np.linalg.norm(it["x_b"] - x0)
        assert np.allclose(ratio, 0.01, rtol=1e-3), (it["t"], ratio[:3])


# -- SurFree ------------------------------------------------------------------------------


def surfree_iterations(x0, trace, theta_max=30.0, rho=0.98, T=3, bs_gamma=0.01, bs_max_iter=10):
    """Replays the reference SurFree on the recorded queries; every query is checked against
    the point the reference formulas give. Returns one record per direction tried."""
    r = [p[0] - x0 for p, _ in trace]
    ans = [bool(a[0]) for _, a in trace]
    assert all(len(p) == 1 for p, _ in trace)  # SurFree asks one point at a time
    # start: noise until adversarial, then a search on the segment toward x0
    first = ans.index(True)
    line = unit(r[first])
    i = next(j for j in range(first, len(r)) if np.linalg.norm(r[j] - (r[j] @ line) * line) > 1e-6)
    last_true = max(j for j in range(i) if ans[j])
    theta = math.radians(theta_max)
    out = []
    while i < len(r):
        D = float(np.linalg.norm(r[last_true]))
        u = r[last_true] / D
        # circle search: +-theta_max, +-(T-1)/T theta_max, ... on z(theta)
        tried, found = [], None
        for k in range(T, 0, -1):
            for sign in (1, -1):
                if i == len(r) or found:
                    break
                q = r[i]
                angle = math.acos(min(1.0, float(q @ u) / float(np.linalg.norm(q))))
                assert abs(angle - theta * k / T) < 1e-4, (i, math.degrees(angle), math.degrees(theta * k / T))
                assert abs(np.linalg.norm(q) / (D * math.cos(angle)) - 1) < 1e-4, (i, "not on z(theta)")
                if sign == -1:  # the mirror image of the + candidate across u
                    mirror = 2 * float(r[i - 1] @ u) * u - r[i - 1]
                    assert np.linalg.norm(q - mirror) < 1e-4 * D, (i, "not -theta")
                tried.append(angle)
                if ans[i]:
                    found = (k, i)
                i += 1
        record_ = {"theta_max": theta, "tried": tried, "found": found, "bisection": []}
        out.append(record_)
        if found is None:
            if len(tried) == 2 * T:
                theta *= rho
            continue
        k, j_found = found
        lo, hi = theta * k / T, min(theta * (k + 1) / T, 0.5 * math.pi * 0.999)
        tol, bracket = bs_gamma * lo, hi - lo  # the code's rule: width <= bs_gamma * |theta|
        theta = min(theta / rho, 0.45 * math.pi)
        last_true = j_found
        # bisection on the angle, in the plane (u, v) of the found point
        v = unit(r[j_found] - (r[j_found] @ u) * u)
        while i < len(r) and np.linalg.norm(r[i] - (r[i] @ u) * u - (r[i] @ v) * v) < 1e-4 * D:
            angle = math.atan2(float(r[i] @ v), float(r[i] @ u))
            assert abs(angle - 0.5 * (lo + hi)) < 1e-4, (i, "not the middle of the bracket")
            assert abs(np.linalg.norm(r[i]) / (D * math.cos(angle)) - 1) < 1e-4, (i, "not on z(theta)")
            record_["bisection"].append(angle)
            if ans[i]:
                lo, last_true = angle, i
            else:
                hi = angle
            i += 1
        if i < len(r):  # a complete bisection: as many steps as the stopping rule allows
            expected, width = 0, bracket
            while width > tol and expected < bs_max_iter:
                width, expected = width / 2, expected + 1
            assert len(record_["bisection"]) == expected, (i, len(record_["bisection"]), expected)
    return out


#: the superseded config of t-maho/SurFree at 4392fee (T = 3, n_ortho = 100) with probe's own
#: angle bisection (bracket to theta_max (k + 1) / T, stop at a width bs_gamma * theta): the
#: replay above checks these rules
OLD_SURFREE = dict(theta_max=30.0, rho=0.98, T=3, n_ortho=100, bs_gamma=0.01, bs_max_iter=10, band="low",
                   directions="ternary")


def old_surfree(**change):
    return SurFree(**{**OLD_SURFREE, **change})


def test_surfree_width_rule_follows_its_formulas():
    x0, trace = record(old_surfree(), 800)
    iterations = surfree_iterations(x0, trace)
    # the first angles tried: 30 degrees, then -30, 20, -20, 10, -10 until one is adversarial
    first = iterations[0]
    assert np.allclose(np.degrees(first["tried"]), [30, 30, 20, 20, 10, 10][: len(first["tried"])], atol=1e-3)
    done = [it for it in iterations[:-1] if it["found"]]
    failed = [it for it in iterations[:-1] if it["found"] is None]
    assert len(done) >= 10 and len(failed) >= 3  # both theta_max updates are exercised
    steps = [len(it["bisection"]) for it in done]
    assert all(1 <= s <= 10 for s in steps) and sum(steps) >= 5 * len(steps), steps


@pytest.mark.parametrize(
    "change",
    [{"bs_max_iter": 0}, {"bs_max_iter": 3}, {"rho": 0.9}, {"T": 1}, {"T": 4}, {"theta_max": 20.0},
     {"bs_gamma": 0.1}, {"bs_rule": "cos"}],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_surfree_checker_rejects_other_settings(change):
    x0, trace = record(old_surfree(**change), 800)
    with pytest.raises(AssertionError):
        surfree_iterations(x0, trace)


def test_surfree_probe_preset_differs_where_documented():
    """The probe preset is the class defaults: no angle bisection, one angle pair per
    direction (T = 1), orthogonal DCT directions from both bands, probe's start."""
    attack = build_attack("surfree", norm="l2", settings=PROBE)
    assert attack.params() == SurFree().params()
    paper = build_attack("surfree", norm="l2", settings=PAPER).params()
    differ = {k for k, v in attack.params().items() if paper[k] != v}
    assert differ == {"n_ortho", "bs_max_iter", "band", "directions", "bs_rule", "opposite", "final_search",
                      "max_angle", "ortho", "start", "max_init_tries"}
    x0, trace = record(attack, 400)
    iterations = surfree_iterations(x0, trace, T=1, bs_max_iter=0)
    assert all(len(it["tried"]) <= 2 and not it["bisection"] for it in iterations)
    assert sum(bool(it["found"]) for it in iterations) >= 10
    with pytest.raises(AssertionError):
        surfree_iterations(x0, trace)


# -- RayS and the presets themselves ------------------------------------------------------


def query_hash(attack, budget=400):
    _, trace = record(attack, budget)
    h = hashlib.sha256()
    for pts, ans in trace:
        h.update(pts.tobytes())
        h.update(ans.tobytes())
    return h.hexdigest()


def test_rays_paper_preset_is_the_official_search():
    assert PRESETS["probe"]["rays"] == {}
    paper = build_attack("rays", norm="linf", settings=PAPER)
    assert paper.params() == {**RayS().params(), "search": "bisect", "tol": 0.001, "start": "official"}
    assert query_hash(paper) != query_hash(RayS())


def test_presets_confirmation_and_probe_defaults():
    assert PAPER.confirm_share == CONFIRM_SHARE["paper"] == 0.0  # no confirmation phase
    assert PROBE.confirm_share == CONFIRM_SHARE["probe"] == 0.15
    for name, cls in (("hsja", HSJA), ("surfree", SurFree), ("rays", RayS)):
        assert PRESETS["probe"][name] == {}
        assert build_attack(name, norm=cls.norms[0], settings=PROBE).params() == cls().params()
        # an option applies on top of the preset
        options = AttackSettings(preset="paper", options={name: {"max_init_tries": 7}})
        assert build_attack(name, norm=cls.norms[0], settings=options).params() == {
            **cls(**PRESETS["paper"][name]).params(), "max_init_tries": 7}


def test_hsja_probe_preset_probes_start_in_a_growing_low_frequency_subspace():
    """On a 3x64x64 image the first probes have DCT coefficients only on the lowest 16 of
    each side's 64 frequencies (subspace 0.25); the side then grows x1.5 an iteration, so
    the second iteration's probes reach frequency 24 but not 25; the paper's are full-band."""
    from scipy import fft

    from probe.attacks.directions import unit_probes

    shape = (3, 64, 64)
    draw = unit_probes(shape, np.random.default_rng(0), True, 0.25)
    coef = fft.dctn(draw(20), axes=(-2, -1), norm="ortho")
    assert np.allclose(np.linalg.norm(draw(5).reshape(5, -1), axis=1), 1.0, atol=1e-5)
    assert np.abs(coef[..., 16:, :]).max() < 1e-5 and np.abs(coef[..., :, 16:]).max() < 1e-5
    assert np.abs(coef[..., :16, :16]).max() > 0.05
    grown = fft.dctn(unit_probes(shape, np.random.default_rng(0), True, 0.375)(20), axes=(-2, -1), norm="ortho")
    assert np.abs(grown[..., 24:, :]).max() < 1e-5 and np.abs(grown[..., 23, :]).max() > 0.01
    full = fft.dctn(unit_probes(shape, np.random.default_rng(0), False, 1.0)(20), axes=(-2, -1), norm="ortho")
    assert np.abs(full[..., 32:, 32:]).max() > 0.01
    attack = build_attack("hsja", norm="l2", settings=PROBE)
    assert (attack.subspace, attack.subspace_growth) == (0.25, 0.5)
    paper = build_attack("hsja", norm="l2", settings=AttackSettings(preset="paper"))
    assert (paper.subspace, paper.subspace_growth, paper.init_num_evals) == (1.0, 0.0, 100)
