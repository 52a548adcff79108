"""The command line's parse path: help, --version and argument errors answer at once, as one
``error:`` line and exit code 2, without importing anything heavy (issue #35, items 1 and 9).

Everything here runs in process (:func:`tests.entry.run_entry`) except one fresh interpreter
that checks which modules the parse path imports."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.entry import run_entry

#: never imported by --help, --version or an argument error
HEAVY = ("onnx", "onnxruntime", "scipy", "numpy", "PIL", "matplotlib", "probe.attacks", "probe.oracle",
         "probe.runtime", "probe.smoothing", "probe.remote")  # fmt: skip

#: argument errors of every command that opens a model or images, and of the others
BAD_ARGUMENTS = [
    (["attack", "--budget", "-1"], "--budget must be an integer in [1, inf], got -1"),
    (["attack", "--budget", "0"], "--budget"),
    (["attack", "--attack", "nope"], "unknown attack nope"),
    (["attack", "--criterion", "votes"], "--criterion must be one of label, paper"),
    (["attack", "--preset", "best"], "--preset must be one of probe, paper"),
    (["attack", "--norm", "l3"], "--norm must be one of l2, linf"),
    (["attack", "--pa", "1.5"], "--pa"),
    (["attack", "--sigma", "-0.1"], "--sigma"),
    (["attack", "--n", "0"], "--n"),
    (["attack", "--n", "2.5"], "Invalid value for '--n'"),
    (["attack", "--max-jobs", "0"], "--max-jobs"),
    (["attack", "--save-images"], "--save-images needs --out"),
    (["attack", "--resume"], "--resume and --overwrite need --out"),
    (["attack", "--seed", "-1"], "'--seed'"),
    (["attack", "-o", "rays.bisection=bayes", "--attack", "hsja"], "which this run does not attack with"),
    (["attack", "-o", "hsja.memory"], "ATTACK.NAME=VALUE"),
    (["attack", "-o", "nope.x=1"], "unknown attack 'nope'"),
    (["attack", "--mean", "a,b,c"], "--mean expects comma-separated numbers"),
    (["attack", "--layout", "NCWH"], "--layout must be NCHW or NHWC"),
    (["attack", "--scale", "0"], "--scale must be positive"),
    (["attack", "--size", "0x4"], "--size expects HxW"),
    (["attack", "--batch-size", "many"], "--batch-size must be auto or an integer"),
    (["attack", "--limit", "0"], "'--limit'"),
    (["attack", "--budgt", "3"], "No such option: --budgt"),
    (["predict", "--seed", "-1"], "'--seed'"),
    (["predict", "--sigma", "-1"], "--sigma"),
    (["predict", "--alpha", "2"], "--alpha"),
    (["accuracy", "--n", "0"], "--n"),
    (["certify", "--seed", "-5"], "'--seed'"),
    (["certify", "--sigma", "0"], "--sigma must be in (0.0, inf)"),
    (["certify", "--plot", "out.xyz"], "--plot must name a png/"),
    (["certify", "--plot", "/no/such/folder/cert.png"], "no such folder"),
    (["certify", "--radii", "a"], "--radii expects comma-separated numbers"),
    (["info", "--std", "1,0,1"], "--std values must be positive"),
    (["info", "--endpoint", "http://[::1"], "--endpoint must be an http:// or https:// URL, got 'http://[::1'"),
    (["attack", "--endpoint", "http://h:99999"], "Port out of range"),
    (["predict", "--endpoint", "ftp://h"], "--endpoint must be an http:// or https:// URL"),
    (["profile", "--sigma", "-1"], "--sigma must be in (0.0, inf)"),
    (["profile", "--out", "x.jpg"], "--out must name a .png file"),
    (["slice", "--grid", "0"], "--grid must be an integer in [2, inf]"),
    (["bsearch", "--n", "0"], "--n must be an integer"),
    (["bench", "--images", "0"], "--images must be an integer"),
    (["serve", "--seed", "-1"], "--seed must be an integer in [0, inf]"),
    (["serve", "--port", "70000"], "--port"),
    (["sweep", "/no/such/sweep.toml", "--out", "/no/such/out"], "no such sweep file"),
    (["sweep", "x.toml", "--out", "o", "--ray-cpus", "2"], "--ray-cpus needs --ray"),
    (["report", "/no/such/results"], "no such results folder"),
    (["check", "/no/such/results", "--min-accuracy", "2"], "--min-accuracy must be in [0, 1]"),
    (["nosuch"], "No such command 'nosuch'"),
]


@pytest.mark.parametrize("args, message", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_an_argument_error_is_one_line_and_exit_2(args, message):
    result = run_entry(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert result.stdout == ""


def test_version_and_help():
    version = run_entry("--version")
    from probe import __version__

    assert version.returncode == 0 and version.stdout.strip() == f"probe {__version__}" and version.stderr == ""
    for args in (["--help"], ["attack", "--help"], ["certify", "--help"], ["models", "--help"]):
        helped = run_entry(*args)
        assert helped.returncode == 0 and "Usage: probe" in helped.stdout and helped.stderr == "", args
    assert "--version" in run_entry("--help").stdout


def test_the_registries_of_the_parse_path_are_the_libraries():
    """The names that the parse path checks without importing the libraries are theirs."""
    from probe.attacks import ATTACKS
    from probe.attacks.presets import PRESETS
    from probe.cli import checks
    from probe.oracle import RULES

    assert checks.ATTACK_NAMES == tuple(ATTACKS)
    assert checks.CRITERIA == tuple(RULES)
    assert checks.PRESET_NAMES == tuple(PRESETS)
    from probe.attacks.base import DOMAINS
    from probe.runs import settings

    assert settings.DOMAINS == tuple(DOMAINS)


def test_the_attack_option_form_is_the_presets():
    """What the parse path accepts as ``-o ATTACK.NAME=VALUE`` the presets' parser accepts too,
    and what it refuses the parser refuses (or, for an attack left out, the run would ignore)."""
    from probe.attacks.presets import parse_option
    from probe.cli.checks import ATTACK_NAMES, attack_option_targets
    from probe.errors import ProbeError

    for text in ("hsja.memory=0", "confirm.share=0.1", "HSJA.gamma = 2", "rays.bisection=bayes"):
        attack_option_targets([text], ATTACK_NAMES)
        parse_option(text, ATTACK_NAMES)
    for text in ("hsja.memory", "hsja=1", ".x=1", "hsja.x=", "nope.x=1"):
        with pytest.raises(ProbeError):
            attack_option_targets([text], ATTACK_NAMES)
        with pytest.raises(ProbeError):
            parse_option(text, ATTACK_NAMES)


def test_the_parse_path_imports_nothing_heavy():
    """In a fresh interpreter: --help, --version and every argument error above leave ONNX,
    ONNX Runtime, SciPy, NumPy, PIL, the attacks and the oracle unimported."""
    script = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        from probe.cli import main
        runs = {json.dumps([["--help"], ["attack", "--help"], ["certify", "--help"], ["--version"],
                            *(args for args, _ in BAD_ARGUMENTS)])}
        codes = []
        for args in runs:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                try:
                    main(args)
                    codes.append(0)
                except SystemExit as exc:
                    codes.append(exc.code)
        heavy = {list(HEAVY)!r}
        print(json.dumps({{"codes": codes, "imported": [m for m in heavy if m in sys.modules]}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["codes"] == [0, 0, 0, 0, *([2] * len(BAD_ARGUMENTS))]
    assert result["imported"] == []
