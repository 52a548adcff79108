"""The verdict: eq. (4) applied once, the attacker's two criteria, identity-keyed records,
saved adversarials, CERTIFY and eq. (6) beside each record, and a budget charged first.

Exact oracles: on a linear two-class model f, each noisy vote is class 1 with
probability q = Phi(margin / sigma), so the plurality of n votes is class 1 with
probability P[Bin(n, q) > n / 2] (an n/2 : n/2 tie goes to class 0, the lowest index).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from probe.attacks import run_attack
from probe.engine import Engine, Job
from probe.errors import BudgetExceeded
from probe.oracle import Criterion, Oracle, clean_label, estimate_p_adv
from probe.runs.campaign import AttackConfig, attack_images
from probe.runtime import Runtime
from probe.smoothing import SmoothedClassifier, pa_vote_threshold
from probe.smoothing.theory import level_vote_count
from tests.onnx_models import linear_weights, save_linear

SIGMA = 0.1


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    """A linear model on (3, 8, 8) and a way to place a point at a given margin."""
    w, b = linear_weights((3, 8, 8), seed=4)
    path = save_linear(tmp_path_factory.mktemp("verdict") / "lin.onnx", w, b)
    unit = (w / np.linalg.norm(w)).astype(np.float32)
    x_mid = np.full(w.shape, 0.5, dtype=np.float32)  # on the hyperplane (linear_weights puts it there)

    def at(margin: float) -> np.ndarray:
        return (x_mid + np.float32(margin) * unit).astype(np.float32)

    return Runtime(path), at


def plurality_one(n: int, q: float) -> float:
    """P[the plurality of n votes is class 1] when each vote is 1 with probability q."""
    return float(stats.binom.sf(n // 2, n, q))  # P[Bin(n, q) >= floor(n/2) + 1]


def margin_for(n: int, p1: float) -> float:
    """The margin at which the plurality of n votes is class 1 with probability p1."""
    from scipy import optimize

    q = optimize.brentq(lambda q: plurality_one(n, q) - p1, 1e-9, 1 - 1e-9)
    return float(SIGMA * special.ndtri(q))


@pytest.mark.parametrize("n", [10, 11])
@pytest.mark.parametrize("pa", [0.5, 0.8])
@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("exact", [0.3, 0.65, 0.92])
def test_p_adv_is_eq4_against_the_exact_binomial(line, n, pa, targeted, exact):
    runtime, at = line
    clf = SmoothedClassifier(runtime, SIGMA, n)
    # untargeted away from class 0, or targeted to class 1: both "plurality is class 1"
    x = at(margin_for(n, exact))
    label = 1 if targeted else 0
    est = estimate_p_adv(clf, x, label=label, targeted=targeted, pa=pa, rng=np.random.default_rng(7),
                         max_evaluations=2000, confidence=0.999)  # fmt: skip
    assert est.low <= exact <= est.high, (est, exact)
    assert (est.p >= pa) == (exact >= pa), (est, exact)
    assert est.decided  # |exact - P_a| >= 0.12: the sequential test decides before the maximum
    assert est.evaluations < 2000


@pytest.mark.parametrize("n, exact", [(10, stats.binom.sf(5, 10, 0.5)), (11, 0.5)])
def test_a_tie_is_not_adversarial_at_even_n(line, n, exact):
    """On f's boundary (q = 1/2): at n = 10 a 5:5 tie keeps class 0, so p_adv = P[Bin >= 6] = 0.377,
    not the 0.623 that the old rule (>= ceil(n P_a) = 5 wrong votes) gave; at n = 11 exactly 1/2."""
    runtime, at = line
    clf = SmoothedClassifier(runtime, SIGMA, n)
    est = estimate_p_adv(clf, at(0.0), label=0, pa=float(exact), rng=np.random.default_rng(1),
                         max_evaluations=4000)  # fmt: skip
    assert est.evaluations == 4000 and not est.decided  # P_a at the exact value: never decided
    assert abs(est.p - exact) < 4 * np.sqrt(exact * (1 - exact) / 4000), (est.p, exact)
    if n == 10:
        old_rule = stats.binom.sf(level_vote_count(n, 0.5) - 1, n, 0.5)  # P[Bin(10, 1/2) >= 5]
        assert abs(est.p - old_rule) > 0.2


def test_p_adv_without_smoothing_is_one_evaluation(line):
    runtime, at = line
    clf = SmoothedClassifier(runtime, 0.0, 10)
    assert estimate_p_adv(clf, at(0.01), label=0, rng=np.random.default_rng(0)).p == 1.0
    res = estimate_p_adv(clf, at(-0.01), label=0, rng=np.random.default_rng(0))
    assert (res.p, res.evaluations, res.decided) == (0.0, 1, True)


def test_clean_label_stops_early_when_clear_and_records_its_margin(line):
    runtime, at = line
    clf = SmoothedClassifier(runtime, SIGMA, 10)
    clear = clean_label(clf, at(-3 * SIGMA), rng=np.random.default_rng(0), true_label=0)
    assert (clear.label, clear.evaluations, clear.accuracy) == (0, 8, 1.0)
    assert clear.margin == pytest.approx(1.0, abs=0.02)  # almost every vote for class 0
    close = clean_label(clf, at(0.0), rng=np.random.default_rng(0), true_label=0, max_evaluations=64)
    assert close.evaluations == 64 and abs(close.margin) < 0.1


@pytest.mark.parametrize("n", [10, 11])
@pytest.mark.parametrize("pa", [0.5, 0.8])
def test_paper_criterion_is_the_ceil_n_pa_rule_and_label_is_the_plurality(n, pa):
    need = level_vote_count(n, pa)
    rows = np.array([[n - k, k] for k in range(n + 1)])
    assert Criterion(0, rule="paper", pa=pa)(rows).tolist() == [k >= need for k in range(n + 1)]
    assert Criterion(1, targeted=True, rule="paper", pa=pa)(rows).tolist() == [k >= need for k in range(n + 1)]
    # the label rule ignores P_a: adversarial when class 1 has strictly more votes (a tie stays 0)
    assert Criterion(0, pa=pa)(rows).tolist() == [k > n - k for k in range(n + 1)]
    assert Criterion(1, pa=pa)(rows).tolist() == [k <= n - k for k in range(n + 1)]


def test_engine_charges_before_inference_and_ends_only_the_refused_job(line):
    runtime, at = line
    clf = SmoothedClassifier(runtime, 0.0, 1)
    x = at(-0.5)

    def greedy():  # asks more points in one request than its budget allows
        try:
            yield np.broadcast_to(x, (50, *x.shape)).copy()
        except BudgetExceeded:
            return "refused"
        return "answered"

    def modest():
        answers = yield np.broadcast_to(x, (3, *x.shape)).copy()
        return int(np.sum(answers))

    before = runtime.inferences
    jobs = [
        Job(greedy(), Oracle(clf, Criterion(0), budget=10, rng=np.random.default_rng(0))),
        Job(modest(), Oracle(clf, Criterion(0), budget=10, rng=np.random.default_rng(1))),
    ]
    Engine(clf).run(jobs)
    assert jobs[0].outcome == "refused" and jobs[0].oracle.queries == 0
    assert jobs[1].outcome == 0 and jobs[1].oracle.queries == 3
    assert runtime.inferences - before == 3  # the refused 50 points never reached the model


def _records(runtime, images, config, sigma=0.05, n=5):
    recs = attack_images(SmoothedClassifier(runtime, sigma, n), images, config)
    return {(r["image"], r["attack"]): {k: v for k, v in r.items() if k != "seconds"} for r in recs}


def test_records_do_not_depend_on_order_or_companions(make_linear):
    lin = make_linear((3, 8, 8), seed=2, images=3, image_seed=5, spread=0.05)
    from probe.data import load_images

    runtime = Runtime(lin.model)
    images = load_images([str(lin.folder)], (8, 8))
    config = AttackConfig(attacks=("hsja", "rays"), budget=120, p_adv_samples=16, certify_n=64)
    everything = _records(runtime, images, config)
    assert len(everything) == 6
    order = [2, 0, 1]
    reordered = images.__class__(images.x[order], [images.ids[i] for i in order], images.labels[order])
    swapped = AttackConfig(attacks=("rays", "hsja"), budget=120, p_adv_samples=16, certify_n=64)
    assert _records(runtime, reordered, swapped) == everything
    alone = images.__class__(images.x[1:2], images.ids[1:2], images.labels[1:2])
    only_rays = AttackConfig(attacks=("rays",), budget=120, p_adv_samples=16, certify_n=64)
    ((key, rec),) = _records(runtime, alone, only_rays).items()
    assert rec == everything[key]


def test_record_carries_the_verdict_the_radius_and_eq6(make_linear, tmp_path):
    lin = make_linear((3, 8, 8), seed=3, images=2, image_seed=1, spread=0.05)
    from probe.data import load_images

    runtime = Runtime(lin.model)
    images = load_images([str(lin.folder)], (8, 8))
    config = AttackConfig(attacks=("hsja",), budget=200, p_adv_samples=32, certify_n=400, pa=0.8)
    for rec in attack_images(SmoothedClassifier(runtime, 0.05, 11), images, config):
        if rec["skipped"]:
            continue
        assert rec["criterion"] == "label" and rec["preset"] == "probe" and rec["params"]["attack"]["name"] == "hsja"
        assert rec["success"] == (rec["verdict"] == "adversarial")
        low, high = rec["p_adv_interval"]
        assert rec["verdict"] == ("adversarial" if low >= 0.8 else "not adversarial" if high < 0.8 else "undecided")
        assert rec["domain"] == "float" and rec["confirmed"] in (True, False) and rec["verdict_note"] is None
        assert rec["trajectory"]["queries"][-1] == rec["queries"]
        assert low <= rec["p_adv"] <= high and 8 <= rec["p_adv_evaluations"] <= 32
        assert 0.0 <= rec["p_adv_8bit"] <= 1.0
        # CERTIFY of x_o can never certify more than the true distance to f's hyperplane (g_sigma = f)
        true_margin = abs(lin.margin(images.x[images.ids.index(rec["image"])]))
        assert 0 < rec["certified_radius"] <= true_margin
        expected = rec["certified_radius"] + 0.05 * special.ndtri(1 - pa_vote_threshold(11, 0.8))
        assert rec["bound_eq6"] == pytest.approx(expected)
        assert rec["bound_eq6"] > rec["certified_radius"]  # P_a = 0.8 > 1/2 adds a positive term
        assert not rec["below_bound_eq6"] and rec["l2"] >= rec["bound_eq6"]


def test_saved_array_reloads_to_the_recorded_distance(make_linear, tmp_path):
    from probe.runs.results import save_record_array

    lin = make_linear((3, 8, 8), seed=5)
    x0 = np.full((3, 8, 8), 0.3, dtype=np.float32)
    oracle = lambda pts: (pts.reshape(len(pts), -1) @ lin.w.ravel() + lin.b) > 0  # noqa: E731
    from probe.attacks import make_attack

    out = run_attack(make_attack("hsja"), x0, oracle, budget=200, rng=np.random.default_rng(0))
    rec = {"image": "a.png", "attack": "hsja", "params": {"x": 1}, "l2": out.distance}
    path = save_record_array(tmp_path, rec, out.x_adv)
    back = np.load(tmp_path / path)
    assert back.dtype == np.float32 and back.shape == x0.shape
    assert float(np.linalg.norm((back - x0).ravel())) == pytest.approx(rec["l2"], rel=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--attack-option", "hsja.nope=1"], "hsja has no option nope"),
        (["--attack-option", "hsja.memory=2"], "memory must be"),
        (["--attack-option", "memory=0"], "ATTACK.NAME=VALUE"),
        (["--attack-option", "zzz.memory=0"], "unknown attack 'zzz'"),
        (["--preset", "best"], "preset must be one of probe, paper"),
        (["--criterion", "votes"], "--criterion must be one of label, paper"),
    ],
)
def test_bad_attack_settings_are_one_line_and_exit_2(make_linear, run_main, args, message):
    lin = make_linear((3, 8, 8), seed=1, images=1)
    result = run_main("attack", "--model", lin.model, "--images", lin.folder, "--budget", 10, *args)
    assert result.returncode == 2 and result.stderr.startswith("error:") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_list_options_names_every_parameter_and_the_paper_preset(run_main):
    import json

    from probe.attacks import ATTACKS
    from probe.attacks.presets import PRESETS, option_names

    result = run_main("attack", "--list-options", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for name in ATTACKS:
        assert [row["name"] for row in data["attacks"][name]] == option_names(name)
        assert all(row["meaning"] for row in data["attacks"][name]), name
    assert data["presets"] == json.loads(json.dumps(PRESETS))


def test_preset_options_and_criterion_reach_the_records(make_linear, run_cli, tmp_path):
    import json

    lin = make_linear((3, 8, 8), seed=1, images=2, image_seed=3, spread=0.05)
    out = tmp_path / "r"
    result = run_cli("attack", "--model", str(lin.model), "--images", str(lin.folder), "--budget", "60",
                     "--sigma", "0.05", "--n", "4", "--preset", "paper", "--criterion", "paper",
                     "--attack-option", "hsja.gamma=2", "--attack", "hsja,surfree", "--certify-n", "0",
                     "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["attack"] for r in recs} == {"hsja", "surfree"}
    for r in recs:
        assert r["preset"] == "paper" and r["criterion"] == "paper" and r["certified_radius"] is None
        params = r["params"]
        assert "votes" not in params  # the paper preset runs without the confirmation phase
        if r["attack"] == "hsja":
            assert (params["gamma"], params["memory"], params["step"], params["orthogonal"]) == (
                2,
                0.0,
                "geometric",
                False,
            )
        else:
            assert (params["bs_max_iter"], params["T"], params["theta_max"]) == (10, 1, 30.0)  # t-maho/SurFree@c9920f2
        if r["found"]:
            assert (out / r["adv_file"]).is_file()


def test_sweep_file_takes_attack_tables_and_refuses_unknown_options(tmp_path):
    from probe.errors import ProbeError
    from probe.runs.sweep_file import parse_sweep

    sweep = parse_sweep({"attacks": ["hsja"], "preset": "paper", "criterion": "paper",
                         "attack": {"hsja": {"memory": 0.5}}})  # fmt: skip
    (cfg,) = sweep.configs
    assert (cfg.preset, cfg.criterion, cfg.options) == ("paper", "paper", {"hsja": {"memory": 0.5}})
    assert cfg.id != parse_sweep({"attacks": ["hsja"]}).configs[0].id
    with pytest.raises(ProbeError, match=r"\[attack.hsja\] has no option nope"):
        parse_sweep({"attacks": ["hsja"], "attack": {"hsja": {"nope": 1}}})


def test_certify_images_is_keyed_by_identity_and_agrees_with_the_records(make_linear):
    from probe.data import load_images
    from probe.runs.certify import certify_images

    lin = make_linear((3, 8, 8), seed=3, images=3, image_seed=1, spread=0.05)
    runtime = Runtime(lin.model)
    images = load_images([str(lin.folder)], (8, 8))
    clf = SmoothedClassifier(runtime, 0.05, 11)
    first = {r["image"]: r for r in certify_images(clf, images, n0=100, n=400, alpha=0.001, seed=0)}
    order = [2, 0, 1]
    reordered = images.__class__(images.x[order], [images.ids[i] for i in order], images.labels[order])
    assert {r["image"]: r for r in certify_images(clf, reordered, n0=100, n=400, alpha=0.001, seed=0)} == first
    config = AttackConfig(attacks=("rays",), budget=60, p_adv_samples=16, certify_n=400)
    found = [rec for rec in attack_images(clf, images, config) if rec["found"]]
    assert found
    for rec in found:
        assert rec["certified_radius"] == first[rec["image"]]["radius"]


@pytest.mark.parametrize("n", [10, 11])
@pytest.mark.parametrize("true_p, wrong", [(0.45, "adversarial"), (0.5, "not adversarial"), (0.55, "not adversarial")])
def test_the_verdict_errs_at_most_its_stated_rate_near_the_level(line, n, true_p, wrong):
    """p_adv exactly 0.45 / 0.5 / 0.55 (the plurality of n votes on a linear model), P_a = 0.5:
    the wrong verdict ("adversarial" below P_a, "not adversarial" at or above it) may come
    out at most (1 - confidence) / 2 = 0.005 of the time. Over 120 tests more than 3 would
    have probability < 0.003 at that rate; the point estimate alone called 0.45 a success
    37% of the time. Near the level most tests end undecided. (Full votes: the same answer
    distribution as early-stopped ones, in fewer model calls.)"""
    runtime, at = line
    clf = SmoothedClassifier(runtime, SIGMA, n, early_stop=False)
    x = at(margin_for(n, 1.0 - true_p))  # P[the plurality is class 1] = 1 - true_p: p_adv (away from 1) = true_p
    verdicts = [
        estimate_p_adv(clf, x, label=1, pa=0.5, rng=np.random.default_rng([n, 7, k]), max_evaluations=100).verdict
        for k in range(120)
    ]
    assert verdicts.count(wrong) <= 3
    assert verdicts.count("undecided") >= 90  # within 0.05 of the level, 100 evaluations rarely decide


def test_a_sure_point_costs_16_evaluations_at_half_and_32_at_0_8(line):
    runtime, at = line
    clf = SmoothedClassifier(runtime, SIGMA, 10)
    far = at(-10 * SIGMA)  # p_adv = 1 for label 1
    for pa, cost in ((0.5, 16), (0.8, 32)):
        est = estimate_p_adv(clf, far, label=1, pa=pa, rng=np.random.default_rng(0))
        assert (est.verdict, est.evaluations, est.p) == ("adversarial", cost, 1.0)


@pytest.mark.parametrize("n", [9, 10])
@pytest.mark.parametrize("label", [0, 1])
@pytest.mark.parametrize("pa", [0.5, 0.8])
def test_eq6_bound_is_exact_for_the_plurality_vote_and_its_tie_rule(n, label, pa):
    """Linear f: g_sigma = f, CERTIFY's exact radius is x_o's margin m0, and the closest
    point of level P_a lies along the normal at the margin m_a where the plurality of n
    votes leaves ``label`` with probability exactly P_a. The exact bound is then the
    distance m0 - m_a itself (tight); at even n with label 1 (ties go against it) the
    paper's n~ = n/2 + 1 overstates it, which made legitimate points look like bugs."""
    from scipy import optimize

    from probe.runs.verdict import Certificate, eq6_bound

    other = 1 - label

    def p_leave(m: float) -> float:  # P[the plurality of n votes is not `label`] at margin m (for label)
        q = special.ndtr(m / SIGMA)  # each vote for label
        counts = np.arange(n + 1)
        pmf = stats.binom.pmf(counts, n, q)
        loses = (counts < n - counts) | ((counts == n - counts) & (other < label))
        return float(pmf[loses].sum())

    m0 = 3 * SIGMA
    m_a = optimize.brentq(lambda m: p_leave(m) - pa, -2.0, 2.0, xtol=1e-14)
    cert = Certificate(label, float(special.ndtr(m0 / SIGMA)), m0, {})
    bound = eq6_bound(cert, sigma=SIGMA, n=n, pa=pa, label=label)
    assert bound == pytest.approx(m0 - m_a, abs=1e-9)
    paper = m0 + SIGMA * special.ndtri(1 - pa_vote_threshold(n, pa))
    if n % 2 == 0 and label == 1:
        assert paper > m0 - m_a + 1e-4  # the printed formula would flag a legitimate point
    # the bound applies only when CERTIFY's class is the one the attack leaves
    assert eq6_bound(cert, sigma=SIGMA, n=n, pa=pa, label=other) is None
    assert eq6_bound(cert, sigma=SIGMA, n=n, pa=pa, label=other, targeted=True) == pytest.approx(bound)
    assert eq6_bound(cert, sigma=SIGMA, n=n, pa=pa, label=label, targeted=True) is None


def test_uint8_domain_sends_only_8bit_points_to_the_model(make_linear):
    """--domain uint8: every point that reaches the model (the attacks' queries, the clean
    label, the verdict's evaluations are all rounded first) lies on the 8-bit grid, and the
    recorded adversarial and distances are those of a grid point."""
    from probe.data import load_images

    lin = make_linear((3, 8, 8), seed=3, images=2, image_seed=1, spread=0.05)
    runtime = Runtime(lin.model)
    seen = []
    labels = runtime.labels

    def spy(x):
        seen.append(np.array(x, copy=True))
        return labels(x)

    runtime.labels = spy
    images = load_images([str(lin.folder)], (8, 8))
    config = AttackConfig(attacks=("hsja", "rays"), budget=150, p_adv_samples=16, certify_n=0, domain="uint8")
    records = [r for r in attack_images(SmoothedClassifier(runtime, 0.0, 1), images, config) if not r["skipped"]]
    rows = np.concatenate([s.reshape(len(s), -1) for s in seen])
    assert len(rows) > 300 and np.array_equal(rows * 255, np.round(rows * 255))
    assert records and all(r["domain"] == "uint8" for r in records)
    for r in records:
        assert r["verdict_8bit"] == r["verdict"] and r["p_adv_8bit"] == r["p_adv"]
