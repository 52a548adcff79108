"""The attacks' docstrings: every example runs (doctest), every attack class has one, and
every class follows one template (torchattacks style):

    Title line with the paper (authors; venue year).
    Distance measure: L2, Linf
    Arguments:
        name (type): meaning. (Default: value)      <- every constructor parameter
    Shape:
        - x0: ...  - candidates: ...  - returns: ...
    Examples::
        >>> ...
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import re

import pytest

from probe.attacks import ATTACKS, Attack, Confirmed

MODULES = [
    "probe.attacks.hsja",
    "probe.attacks.surfree",
    "probe.attacks.rays",
    "probe.attacks.cgba",
    "probe.attacks.psj",
    "probe.attacks.popskipjump",
    "probe.attacks.base",
    "probe.attacks.confirm",
    "probe.attacks",
]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
NORM_NAMES = {"l2": "L2", "linf": "Linf"}


@pytest.mark.parametrize("module", MODULES)
def test_doctests_pass(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=FLAGS, verbose=False, report=True)
    assert result.attempted > 0, f"{module} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {module} failed"


def _classes():
    """Every Attack subclass defined in the attack modules, the base class included."""
    found = {}
    for module in MODULES:
        mod = importlib.import_module(module)
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, Attack) and obj.__module__ == mod.__name__:
                found[obj.__qualname__] = obj
    return list(found.values())


def test_the_classes_are_all_found():
    names = {cls.__name__ for cls in _classes()}
    assert names >= {"Attack", "Confirmed", *(cls.__name__ for cls in ATTACKS.values())}


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_every_attack_class_has_a_running_example(cls):
    doc = inspect.getdoc(cls) or ""
    assert "Examples::" in doc, f"{cls.__name__} has no Examples:: section"
    tests = [t for t in doctest.DocTestFinder(recurse=False).find(cls, cls.__name__, globs={}) if t.examples]
    assert tests, f"{cls.__name__}'s docstring has no >>> example"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{cls.__name__}'s example failed"


@pytest.mark.parametrize("cls", [*ATTACKS.values(), Confirmed], ids=lambda c: c.__name__)
def test_docstring_template(cls):
    doc = inspect.getdoc(cls)
    title = doc.split("\n\n")[0]
    if cls is not Confirmed:  # the paper: "(Authors; Venue Year)"
        assert re.search(r'from ".+" \(.+; [A-Za-z&]+.* (19|20)\d\d\)\.$', " ".join(title.split())), title
    sections = ["Distance measure:", "Arguments:", "Shape:", "Examples::"]
    positions = [doc.find(s) for s in sections]
    assert -1 not in positions and positions == sorted(positions), f"{cls.__name__}: sections {sections} in order"
    measure = doc[positions[0] :].splitlines()[0]
    if cls is not Confirmed:
        assert measure == "Distance measure: " + ", ".join(NORM_NAMES[n] for n in sorted(cls.norms)), measure
    shape = doc[positions[2] : positions[3]]
    for item in ("- x0: (C, H, W), float32 in [0, 1]", "- candidates: (k, C, H, W)", "AttackOutcome"):
        assert item in shape, f"{cls.__name__}: Shape lacks {item!r}"
    arguments = doc[positions[1] : positions[2]]
    params = inspect.signature(cls).parameters
    documented = re.findall(r"^    (\w+) \((\w+)\): ", arguments, flags=re.M)
    assert [name for name, _ in documented] == list(params), f"{cls.__name__}: arguments in signature order"
    for name, p in params.items():
        entry = re.search(rf"^    {name} \(\w+\): (.*?)(?=^    \w+ \(|\Z)", arguments, flags=re.M | re.S).group(1)
        if p.default is inspect.Parameter.empty:
            assert "(Default:" not in entry
        else:
            assert f"(Default: {p.default!r})" in " ".join(entry.split()), f"{cls.__name__}.{name}: default"
            # the documented type is the default's
            assert dict(documented)[name] == type(p.default).__name__, f"{cls.__name__}.{name}: type"
