"""One run configuration: :class:`probe.runs.settings.RunSettings`, built by one function from the
command line's options or a sweep file's table, with each default written once."""

from __future__ import annotations

import dataclasses

import pytest

from probe.errors import ParameterError, ProbeError
from probe.runs.settings import DEFAULT_ATTACKS, FIELDS, RunSettings, build_settings
from probe.runs.sweep_file import parse_sweep
from tests.entry import run_entry


def test_a_bad_value_is_named_in_the_callers_terms():
    with pytest.raises(ParameterError, match=r"^budget must be an integer in \[1, inf\], got 0"):
        RunSettings(budget=0)  # the library's own name
    with pytest.raises(ProbeError, match=r"^--budget must be an integer in \[1, inf\], got 0"):
        build_settings({"budget": 0}, terms=lambda key: "--" + key)
    with pytest.raises(ProbeError, match=r"^s.toml: 'budget' must be an integer in \[1, inf\], got 0"):
        parse_sweep({"models": ["m"], "budget": 0}, where="s.toml")
    result = run_entry("attack", "--budget", "0")
    assert result.returncode == 2 and "--budget must be an integer in [1, inf], got 0" in result.stderr


def test_the_cli_and_a_sweep_build_the_same_settings():
    """Every setting a sweep file takes, the same values give equal settings from the table and
    from the builder the command line calls; defaults come from one place."""
    table = {"attacks": ["rays", "hsja"], "norm": "linf", "seed": 7, "targeted": 2, "criterion": "paper",
             "domain": "uint8", "preset": "paper", "p_adv_samples": 40, "confidence": 0.95, "full_votes": True,
             "max_jobs": 3, "attack": {"hsja": {"memory": 0}}}  # fmt: skip
    sweep = parse_sweep({"models": ["m"], "sigma": 0.1, "n": 7, "pa": 0.8, "budget": 300, **table})
    (cfg,) = sweep.configs
    values = {**{k: v for k, v in table.items() if k != "attack"}, "options": {"hsja": {"memory": 0}},
              "sigma": 0.1, "n": 7, "pa": 0.8, "budget": 300}  # fmt: skip
    assert cfg.settings == build_settings(values)
    assert set(values) == set(FIELDS) - {"certify_n0", "certify_n", "certify_alpha"}  # the certify table sets those
    default = parse_sweep({"models": ["m"]}).configs[0].settings
    assert default == RunSettings() and default.attacks == DEFAULT_ATTACKS


def test_without_noise_one_vote_and_a_defended_endpoint_keeps_its_level():
    assert RunSettings(sigma=0, n=10).n == 1
    plain = parse_sweep({"models": ["m"], "sigma": 0, "n": [5, 10], "pa": [0.5, 0.8]}).configs
    assert [(c.n, c.pa) for c in plain] == [(1, 0.5)]  # deduplicated: P_a plays no part without noise
    served = parse_sweep({"models": ["m"], "sigma": 0, "pa": [0.5, 0.8], "endpoint": {"url": "http://h:1",
                                                                                    "defended": True}})  # fmt: skip
    assert sorted(c.pa for c in served.configs) == [0.5, 0.8]  # the server smooths: P_a judges its answers


def test_a_sweep_reaches_grpc_and_labels_only_servers(tmp_path):
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    sweep = parse_sweep({"models": ["m"], "sigma": 0, "endpoint": {"url": "grpc://127.0.0.1:1", "protocol": "grpc",
                         "num_classes": 2, "classes": "classes.txt", "max_rate": 5}}, base=tmp_path)  # fmt: skip
    options = sweep.endpoint.options("m", "auto")
    assert options.protocol == "grpc" and options.num_classes == 2 and options.classes == str(tmp_path / "classes.txt")
    with pytest.raises(ProbeError, match="'endpoint.protocol' must be one of v2, probe, grpc, got 'soap'"):
        parse_sweep({"models": ["m"], "endpoint": {"url": "http://h:1", "protocol": "soap"}})


def test_identities_of_older_sweeps_do_not_change():
    """A configuration's id hashes its settings; settings added later count only when set, so a
    sweep folder written before them resumes."""
    cfg = parse_sweep({"models": ["m"]}).configs[0]
    assert set(cfg.identity()) == {"model", "sigma", "n", "pa", "budget", "norm", "seed", "p_adv_samples",
                                   "criterion", "preset", "options"}  # fmt: skip
    moved = dataclasses.replace(cfg.settings, targeted=3, max_jobs=2)
    assert type(cfg)(cfg.model, moved).identity()["targeted"] == 3
    assert "max_jobs" not in type(cfg)(cfg.model, moved).identity()  # the job cap changes no record


def test_probe_sweep_full_votes_changes_every_configuration():
    """``probe sweep --full-votes`` (Sweep.with_settings): all n votes in every configuration, each
    a configuration of its own (another id), the rest of the settings kept."""
    sweep = parse_sweep({"models": ["m"], "sigma": [0.05, 0.15], "n": 5, "budget": 300})
    full = sweep.with_settings(full_votes=True)
    assert [c.full_votes for c in full.configs] == [True, True]
    assert [c.sigma for c in full.configs] == [0.05, 0.15] and all(c.budget == 300 for c in full.configs)
    assert not {c.id for c in full.configs} & {c.id for c in sweep.configs}
    with pytest.raises(ProbeError, match="full_votes must be true or false"):
        sweep.with_settings(full_votes="yes")
