"""Framework-free decision-based attacks: HSJA, SurFree, RayS.

Each attack is a state machine (a generator, see :mod:`probe.attacks.base`) that
sees only the oracle's booleans. They import nothing but NumPy and SciPy.

>>> attack = make_attack("hsja", norm="l2")
>>> outcome = run_attack(attack, x0, oracle, budget=2000, rng=np.random.default_rng(0))  # doctest: +SKIP
"""

from __future__ import annotations

from probe.attacks.base import (
    NORMS,
    Attack,
    AttackOutcome,
    BudgetExhausted,
    Tracker,
    distance,
    run_attack,
)
from probe.attacks.hsja import HSJA
from probe.attacks.rays import RayS
from probe.attacks.surfree import SurFree

ATTACKS: dict[str, type[Attack]] = {"hsja": HSJA, "surfree": SurFree, "rays": RayS}

#: the norms each attack supports; the first is its native one
SUPPORTED_NORMS: dict[str, tuple[str, ...]] = {"hsja": ("l2", "linf"), "surfree": ("l2",), "rays": ("linf",)}


def make_attack(name: str, norm: str | None = None, **params) -> Attack:
    """Build an attack by name ("hsja", "surfree", "rays").

    norm: "l2" or "linf"; None picks the attack's native norm (L2 for HSJA and
    SurFree, Linf for RayS). SurFree only supports L2 and RayS only Linf: asking
    them for another norm is a ValueError. Other keyword arguments go to the
    attack's constructor, which validates them.
    """
    key = str(name).strip().lower()
    if key not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")
    supported = SUPPORTED_NORMS[key]
    if norm is None:
        norm = supported[0]
    if norm not in supported:
        raise ValueError(f"{key} supports norm {' or '.join(supported)}, not {norm!r}")
    return ATTACKS[key](norm=norm, **params)


__all__ = [
    "ATTACKS",
    "NORMS",
    "SUPPORTED_NORMS",
    "Attack",
    "AttackOutcome",
    "BudgetExhausted",
    "HSJA",
    "RayS",
    "SurFree",
    "Tracker",
    "distance",
    "make_attack",
    "run_attack",
]
