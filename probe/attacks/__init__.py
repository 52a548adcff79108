"""Framework-free decision-based attacks: HSJA, SurFree, RayS, CGBA, PopSkipJump and PSJ (probe's noise-aware HSJA).

Each attack is a state machine (a generator, see :mod:`probe.attacks.base`) that
sees only the oracle's booleans. They import nothing but NumPy, SciPy and the
pure-Python :mod:`probe.errors` and :mod:`probe.validate`. Knobs are keyword-only;
``norms`` on each class says which norms it supports (the first is its native one).

>>> import numpy as np
>>> x0 = np.full((1, 8, 8), 0.5, dtype=np.float32)
>>> oracle = lambda pts: pts.reshape(len(pts), -1).mean(axis=1) > 0.55  # optimum: L2 0.4, Linf 0.05
>>> attack = make_attack("hsja", norm="l2")
>>> attack  # doctest: +ELLIPSIS
HSJA(norm='l2', gamma=0.01, ...)
>>> outcome = run_attack(attack, x0, oracle, budget=300, rng=np.random.default_rng(0))
>>> outcome.found, outcome.queries, bool(0.4 <= outcome.distance < 0.45)
(True, 300, True)
>>> resolve_norm("rays", "l2"), resolve_norm("hsja", "linf"), SUPPORTED_NORMS["surfree"]
('linf', 'linf', ('l2',))
"""

from __future__ import annotations

from probe.attacks.base import (
    NORMS,
    Attack,
    AttackOutcome,
    Tracker,
    distance,
    run_attack,
)
from probe.attacks.confirm import Confirmed
from probe.attacks.cgba import CGBA
from probe.attacks.hsja import HSJA
from probe.attacks.popskipjump import PopSkipJump
from probe.attacks.psj import PSJ
from probe.attacks.rays import RayS
from probe.attacks.surfree import SurFree
from probe.errors import BudgetExceeded, ProbeError
from probe.validate import check_choice

ATTACKS: dict[str, type[Attack]] = {cls.name: cls for cls in (HSJA, SurFree, RayS, CGBA, PSJ, PopSkipJump)}

#: the norms each attack supports, read from the classes (``norms``); the first is its native one
SUPPORTED_NORMS: dict[str, tuple[str, ...]] = {key: cls.norms for key, cls in ATTACKS.items()}


def attack_class(name: str) -> type[Attack]:
    """The class of attack ``name`` (case-insensitive); ProbeError for an unknown name."""
    key = str(name).strip().lower()
    if key not in ATTACKS:
        raise ProbeError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")
    return ATTACKS[key]


def resolve_norm(name: str, norm: str | None) -> str:
    """The norm attack ``name`` will use when ``norm`` is asked for.

    The requested norm when the attack supports it, else (or when ``norm`` is None) its
    native one: HSJA runs in L2 or Linf, SurFree in L2 only, RayS in Linf only. A norm
    that no attack knows, or an unknown attack, is a ProbeError.
    """
    cls = attack_class(name)
    if norm is None:
        return cls.norms[0]
    check_choice("norm", norm, NORMS)
    return norm if norm in cls.norms else cls.norms[0]


def make_attack(name: str, *, norm: str | None = None, **params) -> Attack:
    """Build an attack by name ("hsja", "surfree", "rays").

    norm: "l2" or "linf"; None picks the attack's native norm (L2 for HSJA and
    SurFree, Linf for RayS). SurFree only supports L2 and RayS only Linf: asking
    them for another norm is a ProbeError (:func:`resolve_norm` maps a requested norm
    to a supported one). Other keyword arguments go to the attack's constructor,
    which validates them.
    """
    cls = attack_class(name)
    if norm is None:
        norm = cls.norms[0]
    if norm not in cls.norms:
        raise ProbeError(f"{cls.name} supports norm {' or '.join(cls.norms)}, not {norm!r}")
    return cls(norm=norm, **params)


__all__ = [
    "ATTACKS",
    "NORMS",
    "SUPPORTED_NORMS",
    "Attack",
    "AttackOutcome",
    "BudgetExceeded",
    "CGBA",
    "Confirmed",
    "attack_class",
    "HSJA",
    "PSJ",
    "PopSkipJump",
    "RayS",
    "SurFree",
    "Tracker",
    "distance",
    "make_attack",
    "resolve_norm",
    "run_attack",
]
