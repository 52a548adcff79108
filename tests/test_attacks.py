"""The NumPy attacks (HSJA, SurFree, RayS) on linear models with exactly known optima.

Quality targets at 2,000 queries are the issue's (the reference codes reach:
ART HSJA 1.10x / 2.0x, official SurFree 1.54x / 2.6x, official RayS 1.00x / 3.4x at
d = 3x8x8 / 3x32x32). The protocol tests (budget, randomness, degenerate answers)
are what every decision-based attack must survive under randomized smoothing.
"""

from __future__ import annotations

import ast
import inspect
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from probe.attacks import (
    ATTACKS,
    HSJA,
    NORMS,
    SUPPORTED_NORMS,
    Confirmed,
    RayS,
    SurFree,
    distance,
    make_attack,
    resolve_norm,
    run_attack,
)
from probe.attacks.base import Attack, Tracker
from probe.attacks.search import bisect, blend, gallop_down
from probe.attacks.surfree import zigzag_mask
from probe.errors import BudgetExceeded, ProbeError
from tests.linear import LinearProblem, information_limit, make_problem

SMALL, MEDIUM = (3, 8, 8), (3, 32, 32)
BUDGET = 2000
ALL = [("hsja", "l2"), ("hsja", "linf"), ("surfree", "l2"), ("rays", "linf")]


def attack_problem(name, problem, budget=BUDGET, seed=0, norm=None, x_init=None, **params):
    attack = make_attack(name, norm=norm, **params)
    out = run_attack(attack, problem.x0, problem.is_adv, budget, np.random.default_rng(seed), x_init)
    return attack, out


def median_ratio(name, shape, norm, seeds=(0, 1, 2), budget=BUDGET):
    ratios = []
    for s in seeds:
        p = make_problem(shape, seed=s)
        attack, out = attack_problem(name, p, budget, seed=100 + s)
        assert out.queries == p.points <= budget
        ratios.append(p.ratio(out.x_adv, norm))
    return float(np.median(ratios)), ratios


# -- the product on problems with a known optimum ------------------------------------


class Asks(Attack):
    """Asks the given points in one batch (to look at the Tracker's bookkeeping)."""

    name = "asks"

    def __init__(self, points: np.ndarray, *, norm: str = "l2") -> None:
        self.points, self.norm = points, norm

    def _search(self, x0, tracker: Tracker, rng, x_init):
        yield from tracker.query(self.points)


@pytest.mark.parametrize("shape", [SMALL, MEDIUM, (3, 224, 224)])
def test_tracker_keeps_the_closest_verified_point_at_the_known_optimum(shape):
    """Around the exact optimum (L2 and Linf), the outcome is the closest point answered
    True, at the distance the product's float32 ``distance`` gives, to 1e-6 of float64."""
    p = make_problem(shape, seed=1)
    p2, pinf = p.optimal_points()
    x = p.x0.astype(np.float64)
    # preconditions: the closed-form optimum is inside the box and on the hyperplane
    for pt in (p2, pinf):
        assert pt.min() >= 0.0 and pt.max() <= 1.0 and abs(p.margin(pt)[0]) < 1e-9
    for norm, pt, opt in (("l2", p2, p.opt_l2), ("linf", pinf, p.opt_linf)):
        factors = (3.0, 1.01, 0.99, 0.5, 1.2)
        cands = np.stack([x + f * (pt - x) for f in factors]).astype(np.float32)
        assert p.is_adv(cands).tolist() == [True, True, False, False, True]
        out = run_attack(Asks(cands, norm=norm), p.x0, p.is_adv, 10, np.random.default_rng(0))
        assert out.found and out.queries == 5 and out.norm == norm
        assert np.array_equal(out.x_adv, cands[1])  # the closest True, not the closest point
        exact = (np.abs(cands[1].astype(np.float64) - x).max() if norm == "linf"
                 else np.linalg.norm(cands[1].astype(np.float64) - x))
        assert out.distance == distance(out.x_adv, p.x0, norm) == pytest.approx(exact, rel=1e-6)
        assert out.distance == pytest.approx(1.01 * opt, rel=1e-3)


def _criteria():
    """The product's default criterion, and the paper's P_a rule (ties of an even n adversarial)."""
    import probe.oracle as oracle

    paper = {"rule": "paper", "pa": 0.5} if "paper" in getattr(oracle, "RULES", ()) else {"pa": 0.5}
    return [oracle.Criterion(0), oracle.Criterion(0, **paper)]


@pytest.mark.parametrize("which", [0, 1], ids=["default", "paper"])
@pytest.mark.parametrize("n", [2, 5])
def test_linear_oracle_answers_as_the_products_smoothed_oracle(tmp_path, n, which):
    """The tests' randomized linear oracle is the product's: a real Oracle over the smoothed
    ONNX linear model answers True as often as the closed form and as tests/linear.py, at the
    boundary and inside, with the product's tie rule (n = 2 at the boundary: a tie half the
    time, adversarial for the paper's rule, the original's for the default plurality vote)."""
    from probe.oracle import Oracle
    from probe.runtime import Runtime
    from probe.smoothing import SmoothedClassifier

    from tests.onnx_models import linear_weights, save_linear

    criterion = _criteria()[which]
    w, b = linear_weights((3, 8, 8), seed=2)  # f(x) = 1[w.x + b > 0], the hyperplane through 0.5
    sigma, k = 0.05, 3000
    clf = SmoothedClassifier(Runtime(save_linear(tmp_path / "lin.onnx", w, b)), sigma, n, in_graph=False)
    unit_w = (w / np.linalg.norm(w)).astype(np.float64)
    for m in (0.0, 0.5 * sigma):
        x = (0.5 + m * unit_w).astype(np.float32)  # margin m: the hyperplane passes through 0.5
        problem = LinearProblem(w=w.astype(np.float64), b=b, x0=np.full_like(x, 0.3), sigma=sigma, n=n,
                                criterion=criterion, rng=np.random.default_rng([n, 1]))
        oracle = Oracle(clf, criterion, budget=k, rng=np.random.default_rng([n, 2]))
        batch = np.repeat(x[None], k, axis=0)
        product, helper, exact = oracle(batch).mean(), problem.is_adv(batch).mean(), problem.p_true(x)
        assert abs(product - exact) < 0.04 and abs(helper - exact) < 0.04, (m, product, helper, exact)
        if n == 2 and m == 0.0:
            tie_is_adversarial = bool(criterion(np.array([[1, 1]]))[0])
            assert exact == pytest.approx(0.75 if tie_is_adversarial else 0.25, abs=1e-6)
    assert LinearProblem(w=w, b=b, x0=x).criterion == _criteria()[0]  # the default is the product's


# -- quality on linear models -----------------------------------------------------------


@pytest.mark.parametrize(
    "name, shape, norm, target",
    [
        ("hsja", SMALL, "l2", 1.05),
        ("surfree", SMALL, "l2", 1.10),
        ("rays", SMALL, "linf", 1.01),
        ("hsja", MEDIUM, "l2", 1.9),
        ("surfree", MEDIUM, "l2", 2.2),
        ("rays", MEDIUM, "linf", 3.4),
    ],
)
def test_quality_at_2000_queries(name, shape, norm, target):
    med, ratios = median_ratio(name, shape, norm)
    assert med <= target, f"{name} {shape}: median {norm} ratio {med:.3f} > {target} ({ratios})"
    assert min(ratios) >= 1.0 - 1e-4  # deterministic oracle: nothing beats the optimum


def test_hsja_linf_quality():
    ratios = []
    for s in (0, 1, 2):
        p = make_problem(SMALL, seed=s)
        _, out = attack_problem("hsja", p, norm="linf", seed=s)
        ratios.append(p.ratio(out.x_adv, "linf"))
    assert np.median(ratios) <= 1.3, ratios


# -- the information limit --------------------------------------------------------------


def below_information_limit(ratio: float, d: int, budget: int, slack: float = 0.9) -> bool:
    """True when an L2 ratio is clearly below what one bit per query allows."""
    return ratio < slack * information_limit(d, budget)


class Cheater(Attack):
    """Reads the model's weights (forbidden): a bisection along w reaches the optimum."""

    name = "cheater"
    norm = "l2"

    def __init__(self, w: np.ndarray) -> None:
        self.w = (w / np.linalg.norm(w)).astype(np.float32)

    def _search(self, x0, tracker: Tracker, rng, x_init):
        far = np.clip(x0 + 10.0 * self.w, 0.0, 1.0)
        if (yield from tracker.is_adversarial(far)):
            yield from bisect(tracker, blend(x0, far), 0.0, 1.0, tol=1e-9)


def test_information_limit_check_flags_a_cheater():
    assert information_limit(3 * 8 * 8, 2000) == pytest.approx(1.0, abs=1e-3)  # the bound's figures
    assert information_limit(3 * 32 * 32, 2000) == pytest.approx(1.30, abs=0.01)
    assert information_limit(3 * 224 * 224, 2000) == pytest.approx(7.4, abs=0.05)
    p = make_problem(MEDIUM, seed=0)
    out = run_attack(Cheater(p.w), p.x0, p.is_adv, BUDGET, np.random.default_rng(0))
    ratio = p.ratio(out.x_adv, "l2")
    assert ratio < 1.01
    assert below_information_limit(ratio, p.d, BUDGET)


# L2 ratios measured at d = 3x32x32, 2,000 queries, problem seeds 0-7 (attack seed = problem
# seed): HSJA 1.73-1.85 (its probes start in a low-frequency subspace, which pays on real
# models and costs a little on a random linear one; 1.62-1.65 in the whole space), SurFree
# 2.00-2.09, RayS (an Linf attack, its L2 ratio) 3.29-3.58. The band is the measured range
# widened by about 5-8%, HSJA's top being the bound issue #12 sets (1.9): below it, an attack
# did better than it can (an unverified point, a leak of the model); above it, it got weaker.
MEASURED_L2_BAND = {"hsja": (1.60, 1.90), "surfree": (1.85, 2.25), "rays": (3.0, 3.9)}


@pytest.mark.parametrize("name", ["hsja", "surfree", "rays"])
def test_no_attack_beats_the_information_limit(name):
    p = make_problem(MEDIUM, seed=7)
    _, out = attack_problem(name, p, seed=7)
    assert out.found and out.queries == BUDGET
    ratio = p.ratio(out.x_adv, "l2")
    assert not below_information_limit(ratio, p.d, BUDGET), f"{name}: L2 ratio {ratio:.3f}"
    low, high = MEASURED_L2_BAND[name]
    assert low <= ratio <= high, f"{name}: L2 ratio {ratio:.3f} outside the measured band [{low}, {high}]"


# -- protocol: budget, randomness, degenerate answers ------------------------------------


@pytest.mark.parametrize("name, norm", ALL)
def test_randomized_oracle_twenty_seeds(name, norm):
    """sigma > 0, n = 1: every answer near the boundary is a coin flip."""
    for seed in range(20):
        p = make_problem(SMALL, seed=seed, sigma=0.05, n=1)
        answered_true = set()
        oracle = p.is_adv

        def recording(points, oracle=oracle, seen=answered_true):
            answers = oracle(points)
            seen.update(points[i].tobytes() for i in np.flatnonzero(answers))
            return answers

        budget = 300
        out = run_attack(make_attack(name, norm=norm), p.x0, recording, budget, np.random.default_rng(seed))
        assert out.queries == p.points <= budget
        if out.found:  # a verified adversarial: one that the oracle did answer True
            assert out.x_adv.tobytes() in answered_true
            assert out.x_adv.dtype == np.float32 and out.x_adv.shape == p.shape
            assert out.distance == pytest.approx(p.ratio(out.x_adv, out.norm) * getattr(p, f"opt_{out.norm}"))
        else:
            assert out.x_adv is None and out.distance == math.inf


@pytest.mark.parametrize("name, norm", ALL)
@pytest.mark.parametrize("budget", [0, 1, 2, 5, 37, 250])
def test_budget_is_exact(name, norm, budget):
    p = make_problem(SMALL, seed=3)
    _, out = attack_problem(name, p, budget=budget, norm=norm)
    assert out.queries == p.points <= budget
    assert out.budget == budget
    if budget == 0:
        assert not out.found and p.calls == 0
    if budget >= 37:
        assert out.queries == budget  # a working attack spends what it is given


@pytest.mark.parametrize("name, norm", ALL)
@pytest.mark.parametrize("kind", ["true", "false", "alternate", "coin"])
def test_degenerate_oracles(name, norm, kind):
    p = make_problem(SMALL, seed=4)
    sent = [0]

    def oracle(points):
        k = len(points)
        first = sent[0]
        sent[0] += k
        if kind == "true":
            return np.ones(k, bool)
        if kind == "false":
            return np.zeros(k, bool)
        if kind == "alternate":
            return (np.arange(first, first + k) % 2) == 0
        return np.random.default_rng(first).random(k) < 0.5

    for budget in (3, 150):
        sent[0] = 0
        out = run_attack(make_attack(name, norm=norm), p.x0, oracle, budget, np.random.default_rng(0))
        assert out.queries == sent[0] <= budget
        if kind == "false":
            assert not out.found
        if kind == "true":
            assert out.found and np.isfinite(out.distance)
        if out.found:
            assert 0.0 <= out.x_adv.min() and out.x_adv.max() <= 1.0


@pytest.mark.parametrize("name, norm", ALL)
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 2), (3, 1, 1), (10,), (1, 28, 28), (2, 3), (5000,)])
def test_odd_shapes(name, norm, shape):
    """Tiny or non-image shapes: no crash, no endless loop, exact budget, a valid result."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape)
    x0 = np.full(shape, 0.5, np.float32)
    b = -float(np.sum(w * x0)) - 0.05 * np.linalg.norm(w)
    p = LinearProblem(w=w, b=b, x0=x0)
    _, out = attack_problem(name, p, budget=120, norm=norm)
    assert out.queries == p.points <= 120
    assert out.found and out.x_adv.shape == shape and p.margin(out.x_adv)[0] > 0
    if p.d <= 10:
        assert p.ratio(out.x_adv, norm) < 1.5


@pytest.mark.parametrize("name, norm", ALL)
def test_input_untouched_outputs_in_box_and_seeded(name, norm):
    p = make_problem(SMALL, seed=5)
    x0 = p.x0.copy()
    _, a = attack_problem(name, p, budget=400, seed=11, norm=norm)
    assert np.array_equal(p.x0, x0)  # never mutated
    assert a.found and a.x_adv.min() >= 0.0 and a.x_adv.max() <= 1.0
    assert a.x_adv.dtype == np.float32
    _, b = attack_problem(name, make_problem(SMALL, seed=5), budget=400, seed=11, norm=norm)
    assert np.array_equal(a.x_adv, b.x_adv) and a.queries == b.queries  # same seed, same run
    _, c = attack_problem(name, make_problem(SMALL, seed=5), budget=400, seed=12, norm=norm)
    if name != "rays":  # RayS is deterministic once it starts from all +1 directions
        assert not np.array_equal(a.x_adv, c.x_adv)


def test_rays_different_seeds_differ_when_random_starts_are_needed():
    p = make_problem(SMALL, seed=5)
    # an oracle that refuses the all +1 and all -1 rays: RayS must draw random signs
    def oracle(points, p=p):
        ans = p.is_adv(points)
        flat = (points - p.x0).reshape(len(points), -1)
        uniform = np.all(flat >= 0, axis=1) | np.all(flat <= 0, axis=1)
        return ans & ~uniform

    outs = [run_attack(RayS(), p.x0, oracle, 300, np.random.default_rng(s)) for s in (1, 2)]
    assert all(o.found for o in outs)
    assert not np.array_equal(outs[0].x_adv, outs[1].x_adv)


@pytest.mark.parametrize("name, norm", ALL)
def test_targeted_start_from_x_init(name, norm):
    """A problem where noise never finds an adversarial: the attack must use x_init."""
    p = make_problem(SMALL, seed=6, opt=1.2)
    p2, _ = p.optimal_points()
    x = p.x0.astype(np.float64)
    x_init = np.clip(x + 1.3 * (p2 - x) + 0.05 * np.random.default_rng(0).standard_normal(p.shape), 0, 1)
    x_init = x_init.astype(np.float32)
    assert p.is_adv(x_init[None])[0]
    init = x_init.copy()
    _, out = attack_problem(name, p, budget=1000, norm=norm, x_init=x_init)
    assert np.array_equal(x_init, init)
    assert out.found
    assert p.ratio(out.x_adv, norm) < p.ratio(x_init, norm)


# -- imports, parameters, registry --------------------------------------------------------

ALLOWED_ROOTS = {"numpy", "scipy"} | set(sys.stdlib_module_names)  # no other third-party package
ALLOWED_PROBE = ("probe.attacks", "probe.errors", "probe.validate")  # the pure-Python modules
FORBIDDEN = ("runtime", "oracle", "onnxruntime", "onnx", "engine", "torch", "smoothing")


def test_attack_modules_import_only_numpy_scipy_and_themselves():
    root_dir = Path(__file__).resolve().parents[1] / "probe"
    files = sorted((root_dir / "attacks").glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "base.py", "search.py", "hsja.py", "surfree.py", "rays.py"}
    for f in files + [root_dir / "errors.py", root_dir / "validate.py"]:
        tree = ast.parse(f.read_text(), filename=str(f))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{f.name}: relative import"
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
                raise AssertionError(f"{f.name}: dynamic import")
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                assert not any(bad in name.split(".") for bad in FORBIDDEN), f"{f.name} imports {name}"
                if root == "probe":
                    assert name.startswith(ALLOWED_PROBE), f"{f.name} imports {name}"
                else:
                    assert root in ALLOWED_ROOTS, f"{f.name} imports {name}"


def test_registry_and_make_attack():
    assert set(ATTACKS) == {"hsja", "surfree", "rays", "cgba", "psj", "popskipjump"}
    assert isinstance(make_attack("hsja"), HSJA) and make_attack("hsja").norm == "l2"
    assert make_attack("HSJA", norm="linf").norm == "linf"
    assert isinstance(make_attack("surfree"), SurFree)
    assert make_attack("rays").norm == "linf"
    assert make_attack("surfree", theta_max=10.0).theta_max == 10.0
    with pytest.raises(ProbeError, match="unknown attack 'boundary'"):
        make_attack("boundary")
    with pytest.raises(ProbeError, match="rays supports norm linf, not 'l2'"):
        make_attack("rays", norm="l2")
    with pytest.raises(ProbeError, match="surfree supports norm l2, not 'linf'"):
        make_attack("surfree", norm="linf")
    with pytest.raises(TypeError):
        make_attack("hsja", "linf")  # the norm is keyword-only


def test_norms_are_declared_once_per_class():
    assert (HSJA.norms, SurFree.norms, RayS.norms) == (("l2", "linf"), ("l2",), ("linf",))
    assert SUPPORTED_NORMS == {key: cls.norms for key, cls in ATTACKS.items()}
    for key, cls in ATTACKS.items():
        assert cls.name == key
        assert inspect.signature(cls).parameters["norm"].default == cls.norms[0]  # native first
        assert make_attack(key).norm == cls.norms[0]
        for norm in NORMS:
            expected = norm if norm in cls.norms else cls.norms[0]
            assert resolve_norm(key, norm) == expected
            if norm in cls.norms:
                assert make_attack(key, norm=norm).norm == norm
            else:
                with pytest.raises(ProbeError, match="norm"):
                    cls(norm=norm)
        assert resolve_norm(key, None) == cls.norms[0]
    assert resolve_norm(" RayS ", "l2") == "linf"
    with pytest.raises(ProbeError, match="norm must be one of l2, linf"):
        resolve_norm("hsja", "l3")
    with pytest.raises(ProbeError, match="unknown attack"):
        resolve_norm("boundary", "l2")


def test_campaign_builds_each_attack_in_the_norm_resolve_norm_gives():
    from probe.runs.campaign import AttackConfig

    for key in ATTACKS:
        for norm in NORMS:
            for sigma in (0.0, 0.1):  # under smoothing the attack is wrapped in Confirmed, same norm
                assert AttackConfig(norm=norm).attack(key, sigma).norm == resolve_norm(key, norm)


@pytest.mark.parametrize("cls", [HSJA, SurFree, RayS])
def test_knobs_are_keyword_only_and_listed_by_params_and_repr(cls):
    sig = inspect.signature(cls)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in sig.parameters.values())
    with pytest.raises(TypeError):
        cls(cls.norms[0])
    default = cls()
    assert default.params() == {name: p.default for name, p in sig.parameters.items()}
    assert eval(repr(default), {cls.__name__: cls}).params() == default.params()
    changed = {
        HSJA: {"norm": "linf", "gamma": 2.0, "memory": 0.0, "step": "geometric", "orthogonal": False},
        SurFree: {"theta_max": 10.0, "T": 3, "band": "low", "interpolation": True},
        RayS: {"rtol": 0.01, "line_steps": 5},
    }[cls]
    attack = cls(**changed)
    assert attack.params() == {**default.params(), **changed}
    assert list(attack.params()) == list(sig.parameters)  # signature order
    text = repr(attack)
    assert text.startswith(f"{cls.__name__}(") and all(f"{k}={v!r}" in text for k, v in attack.params().items())
    assert eval(text, {cls.__name__: cls}).params() == attack.params()
    wrapped = Confirmed(attack, votes=9)
    assert wrapped.params()["attack"] == {"name": cls.name, **attack.params()}


@pytest.mark.parametrize(
    "cls, params",
    [
        (HSJA, {"norm": "l1"}),
        (HSJA, {"gamma": 0}),
        (HSJA, {"gamma": -1.0}),
        (HSJA, {"init_num_evals": 0}),
        (HSJA, {"max_num_evals": 2.5}),
        (HSJA, {"memory": 1.5}),
        (HSJA, {"step": "jump"}),
        (SurFree, {"theta_max": 0}),
        (SurFree, {"theta_max": 95}),
        (SurFree, {"rho": 1.0}),
        (SurFree, {"T": 0}),
        (SurFree, {"n_ortho": -1}),
        (SurFree, {"freq_ratio": 0.0}),
        (SurFree, {"band": "middle"}),
        (SurFree, {"weighting": "relu"}),
        (SurFree, {"bs_max_iter": True}),
        (RayS, {"rtol": 0.0}),
        (RayS, {"line_steps": 0}),
        (RayS, {"norm": "l2"}),
        (RayS, {"rtol": 1.0}),
        (SurFree, {"rho": 0.0}),
        (SurFree, {"init_scale": math.inf}),
        (HSJA, {"tol": "1"}),
    ],
)
def test_parameters_are_validated(cls, params):
    (name,) = params
    with pytest.raises(ProbeError, match=f"^{name} must be"):
        cls(**params)


def test_validation_bounds_are_the_documented_intervals():
    """Open and closed ends, as the docstrings say (the old check_float was low-open, high-closed)."""
    HSJA(memory=0.0), HSJA(memory=1.0)  # [0, 1]
    SurFree(bs_gamma=1.0), SurFree(freq_ratio=1.0), SurFree(init_tol=1.0)  # (0, 1]
    SurFree(n_ortho=0), SurFree(bs_max_iter=0), RayS(max_init_tries=0), HSJA(max_halvings=0)
    SurFree(max_init_tries=np.int64(3)), HSJA(gamma=np.float32(0.5))  # NumPy scalars are numbers
    for cls, name, value in [(HSJA, "memory", -0.01), (SurFree, "bs_gamma", 0.0), (SurFree, "theta_max", 90.0),
                             (RayS, "rtol", 1.0), (HSJA, "gamma", 0.0), (HSJA, "max_halvings", -1)]:
        with pytest.raises(ProbeError, match=f"{name} must be"):
            cls(**{name: value})


# -- pieces -------------------------------------------------------------------------------


def test_zigzag_mask_order_and_fraction():
    m = zigzag_mask(8, 8, 3 / 64)
    assert m.sum() == 3 and m[0, 0] and m[0, 1] and m[1, 0]
    m = zigzag_mask(8, 8, 0.5)
    assert m.sum() == 32 and m[0, 0] and not m[7, 7]
    assert np.all(m[np.add.outer(np.arange(8), np.arange(8)) <= 6])  # whole low anti-diagonals
    assert zigzag_mask(4, 4, 1.0).all()


@pytest.mark.parametrize("directions", ["orthogonal", "ternary"])
def test_surfree_low_band_directions_are_low_frequency(directions):
    from scipy import fft

    x0 = np.random.default_rng(0).random((3, 16, 16), dtype=np.float32)
    (basis,) = SurFree(band="low", freq_ratio=0.25, directions=directions)._bases(x0)
    rng = np.random.default_rng(1)
    vs = np.stack([basis.draw(rng) for _ in range(40)])
    mask = zigzag_mask(16, 16, 0.25)
    for v in vs[:5]:
        coef = fft.dctn(v.reshape(3, 16, 16).astype(np.float64), axes=(-2, -1), norm="ortho")
        assert np.abs(coef[:, ~mask]).max() < 1e-5
        assert np.abs(coef[:, mask]).max() > 0.01
    if directions == "orthogonal":  # orthonormal by construction, no Gram-Schmidt needed
        gram = vs.astype(np.float64) @ vs.T.astype(np.float64)
        assert np.allclose(gram, np.eye(len(vs)), atol=1e-5)


def test_surfree_bands():
    x0 = np.zeros((3, 8, 8), np.float32)
    assert len(SurFree(band="adaptive")._bases(x0)) == 2  # low and high frequencies
    assert [b.m for b in SurFree(band="adaptive", freq_ratio=0.25)._bases(x0)] == [48, 144]
    assert [b.m for b in SurFree(band="full")._bases(x0)] == [192]
    assert [b.m for b in SurFree(band="adaptive", freq_ratio=1.0)._bases(x0)] == [192]
    w = SurFree(weighting="tanh")._bases(np.random.default_rng(0).random((3, 8, 8)).astype(np.float32))[0].weights
    assert np.all((w > 0) & (w <= 1)) and np.mean(w < 1) > 0.5  # tanh, float32 (1.0 at the top)


def test_surfree_interpolation_runs_within_budget():
    p = make_problem(SMALL, seed=2)
    _, out = attack_problem("surfree", p, budget=600, interpolation=True, bs_max_iter=5)
    assert out.found and out.queries == p.points <= 600
    assert p.ratio(out.x_adv, "l2") < 3.0


def test_hsja_reference_variant_runs():
    p = make_problem(SMALL, seed=2)
    _, out = attack_problem("hsja", p, budget=800, memory=0.0, orthogonal=False, step="geometric")
    assert out.found and out.queries == p.points <= 800
    assert p.ratio(out.x_adv, "l2") < 1.5


def test_bisection_keeps_the_adversarial_end_and_stops():
    x0 = np.zeros((1, 1, 4), np.float32)
    x1 = np.ones((1, 1, 4), np.float32)
    tracker = Tracker(x0, 100, "linf")
    gen = bisect(tracker, blend(x0, x1), 0.0, 1.0, tol=1e-3, x_hi=x1)
    pts = next(gen)
    asked = 0
    try:
        while True:
            asked += 1
            pts = gen.send(pts.reshape(len(pts), -1).mean(axis=1) > 0.3)
    except StopIteration as stop:
        hi, x_hi = stop.value
    assert 0.3 < hi <= 0.3 + 1e-3 and asked <= 11
    assert np.array_equal(x_hi, blend(x0, x1)(hi))
    # gallop_down from an adversarial end close to the boundary costs few queries
    tracker = Tracker(x0, 100, "linf")
    gen = gallop_down(tracker, blend(x0, x1), 1.0, step=0.01, tol=1e-4, x_hi=x1)
    pts = next(gen)
    asked = 0
    try:
        while True:
            asked += 1
            pts = gen.send(pts.reshape(len(pts), -1).mean(axis=1) > 0.97)
    except StopIteration as stop:
        hi, _ = stop.value
    assert 0.97 < hi <= 0.97 + 1e-4 and asked <= 12


@pytest.mark.parametrize("name, norm", ALL)
def test_queries_are_batched_and_every_point_is_counted(name, norm):
    """HSJA sends its gradient probes as one batch per iteration; SurFree and RayS ask one
    point per call. Every point asked is one query, answered in one oracle call per batch.
    HSJA's comparison of starts asks one point per call, within 10% of the budget."""
    p = make_problem(SMALL, seed=3)
    _, out = attack_problem(name, p, budget=500, norm=norm)
    assert out.queries == p.points == 500
    if name == "hsja":
        assert p.calls < p.points / 5
        p2 = make_problem(SMALL, seed=3)
        _, out = attack_problem(name, p2, budget=500, norm=norm, starts=4)
        assert out.queries == p2.points == 500 and p2.calls < p.points / 5 + 0.1 * 500
    else:
        assert p.calls == p.points


def test_budget_end_is_the_one_budget_exception():
    """The Tracker ends a search with probe.errors.BudgetExceeded, after answering what fits;
    Attack.run catches it (run_attack returned normally above)."""
    x0 = np.zeros((1, 1, 2), np.float32)
    tracker = Tracker(x0, 3, "l2")
    gen = tracker.query(np.ones((5, 1, 1, 2), np.float32))
    asked = next(gen)
    assert len(asked) == 3
    with pytest.raises(BudgetExceeded, match="budget of 3"):
        gen.send(np.ones(3, bool))
    assert tracker.spent == 3 and tracker.best is not None
    with pytest.raises(BudgetExceeded):
        next(tracker.query(np.ones((1, 1, 1, 2), np.float32)))
    with pytest.raises(ProbeError, match="budget"):
        Tracker(x0, -1, "l2")
    with pytest.raises(ProbeError, match="norm"):
        Tracker(x0, 3, "l1")


# -- starts that work when the attacks' own initialisation does not ---------------------


@pytest.mark.parametrize("name", ["hsja", "surfree", "rays"])
def test_a_start_is_found_where_random_images_almost_never_are(name):
    """3x32x32 linear models with the optimum at L2 1.0: a uniform random image is adversarial
    with probability about 3e-4 (its margin is N(0, 0.29^2)), so HSJA's 100 uniform tries fail
    about 97% of the time (SurFree's Gaussian ones likewise); the corners of the box along sign
    patterns (margin about N(0, 0.5^2) at pixel level) find one within the budget, on 6 of 6
    models, charged to it."""
    found = 0
    for seed in range(6):
        p = make_problem((3, 32, 32), seed=seed, opt=1.0)
        uniform = np.random.default_rng(seed).random((100, 3, 32, 32), dtype=np.float32)
        assert not p.is_adv(uniform).any()  # the published start fails here
        p.points = 0
        _, out = attack_problem(name, p, budget=600, seed=seed)
        assert out.queries == p.points <= 600
        found += out.found
        if out.found:
            assert p.is_adv(out.x_adv[None].astype(np.float32))[0]
            assert p.ratio(out.x_adv, "l2") >= 1.0
    assert found == 6


def test_the_original_is_never_the_best_adversarial():
    """A randomized oracle may answer "adversarial" at x0 itself (an image whose smoothed label
    is unstable); the Tracker keeps the closest *other* point: a distance of 0 is no attack."""
    x0 = np.full((1, 4, 4), 0.5, dtype=np.float32)
    tracker = Tracker(x0, 10, "l2")
    gen = tracker.query(np.stack([x0, x0 + 0.1, x0 + 0.2]))
    next(gen)
    with pytest.raises(StopIteration):
        gen.send(np.array([True, True, True]))
    assert tracker.best_distance == pytest.approx(0.4, rel=1e-5)
    assert tracker.spent == 3
