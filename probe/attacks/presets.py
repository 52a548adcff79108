"""Presets: the attacks as published (``paper``) and probe's improved variants (``probe``).

A preset is a set of constructor parameters per attack, plus whether a confirmation
phase is added under a randomized oracle (:class:`~probe.attacks.confirm.Confirmed`).
User options (``--attack-option hsja.memory=0``) are applied on top of the preset.

* ``probe`` (default): each class's defaults, and a 15% confirmation reserve under
  randomized smoothing.
* ``paper``: the attacks as published, read off the authors' code (each rule that differs
  from probe's is a named option of the class; docs/reproduction.md measures each).
  HSJA (Chen, Jordan, Wainwright 2020; Jianbo-Lab/HSJA): a fresh gradient estimate at every
  iteration (``memory=0``), i.i.d. Gaussian probes (uniform ones in Linf), 100 sqrt(t) of
  them, the geometric step ``eps = dist / sqrt(t)`` halved until adversarial, every boundary
  search a bisection of the blend factor from 0 down to an absolute theta (the start's blend
  to 0.001 first), delta from the distance before the search (``dist_post_update``), the
  last iterate reported. SurFree (Maho, Furon, Le Merrer 2021; t-maho/SurFree at c9920f2,
  HEAD, its ``config_example.json`` and ``surfree.py``): theta_max 30 degrees, rho 0.98,
  T 1, BS_gamma 0.01, BS_max_iteration 10, ternary DCT directions on the low half of the
  zig-zag order (constant weighting), Gram-Schmidt against the first direction and the last
  10 draws, the angle bisection stopped on |cos(upper) - cos(lower)| <= 0.01 with the
  opposite-angle check, no cap on theta_max, the start 0.5 N(0, I) then a boosted line
  search, and a final boosted line search. RayS (Chen, Gu 2020; uclaml/RayS): the block
  search from s = all +1 whose first attempt is the all -1 flip, bisections from 0 to 1e-3
  along the unit sign vector. CGBA (Reza, Rahmati, Wu, Dai 2023; Farhamdur/CGBA): N0 = 30
  probes times sqrt(t) of random length sigma N(0, I_k) (sigma 4.5e-5: the code's 2e-4 per
  normalised coefficient times ImageNet's std), the DCT subspace of dimension reduction
  factor 4 (``subspace`` 0.25, ``min_side`` 1: 8 a side on CIFAR-10), fresh plain-mean
  normal estimates, the angle bisection from alpha = 0, the stop at 1e-4 (relative to the distance here) or
  100 queries, the start x0 + k 0.02 N(0, I). PopSkipJump (Simon-Gabriel, Sheikh, Krause
  2021; cjsg/PopSkipJump): the class itself. PSJ: probe's own (the class defaults). No
  confirmation phase.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any

from probe.errors import ProbeError

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "probe": {"hsja": {}, "surfree": {}, "rays": {}, "cgba": {}, "psj": {}, "popskipjump": {}},
    "paper": {
        "hsja": {
            "gamma": 1.0,
            "dim_power": 1.5,
            "memory": 0.0,
            "orthogonal": False,
            "step": "geometric",
            "fit_budget": False,
            "init_num_evals": 100,
            "subspace": 1.0,
            "subspace_growth": 0.0,
            "search": "bisect",
            "delta_from": "before",
            "report": "last",
            "linf_probes": "uniform",
            "max_init_tries": 10000,
            "starts": 1,
            "max_halvings": 10000,
        },
        "surfree": {  # t-maho/SurFree at c9920f2 (HEAD): config_example.json and surfree.py
            "theta_max": 30.0,
            "rho": 0.98,
            "T": 1,
            "n_ortho": 10,
            "bs_gamma": 0.01,
            "bs_max_iter": 10,
            "freq_ratio": 0.5,
            "weighting": "constant",
            "band": "low",
            "directions": "ternary",
            "interpolation": False,
            "bs_rule": "cos",
            "opposite": True,
            "final_search": True,
            "max_angle": 180.0,
            "ortho": "first",
            "start": "official",
            "max_init_tries": 10000,
        },
        "rays": {"search": "bisect", "tol": 0.001, "start": "official"},  # uclaml/RayS, RayS_Single.py
        "cgba": {
            "init_num_evals": 30,
            "subspace": 0.25,
            "min_side": 1,  # dim_reduc_factor 4 as the code: 3x8x8 on CIFAR-10
            "subspace_growth": 0.0,
            "memory": 0.0,
            "baseline": False,
            "bracket": False,
            "tol": 1e-4,
            "max_steps": 100,
            "delta": 0.001,
            "start": "ramp",  # Farhamdur/CGBA: x0 + k 0.02 N(0, I) until adversarial
            "init_scale": 0.02,
            "sigma": 4.5e-5,  # the official 2e-4 per normalised coefficient, times ImageNet's std 0.226
            "max_init_tries": 10000,
        },
        "psj": {},
        "popskipjump": {},  # the class is the published attack (cjsg/PopSkipJump)
    },
}

#: share of the budget kept back to confirm the result under a randomized oracle
CONFIRM_SHARE = {"probe": 0.15, "paper": 0.0}


@dataclass(frozen=True, kw_only=True)
class AttackSettings:
    """Which attacks, with which preset and per-attack parameter overrides."""

    preset: str = "probe"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ProbeError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")

    def params(self, attack: str) -> dict[str, Any]:
        """The constructor parameters of ``attack`` under this preset and these options."""
        return {**PRESETS[self.preset].get(attack, {}), **self.options.get(attack, {})}

    @property
    def confirm_share(self) -> float:
        return float(self.options.get("confirm", {}).get("share", CONFIRM_SHARE[self.preset]))


def parse_option(text: str, attacks: tuple[str, ...]) -> tuple[str, str, Any]:
    """``"hsja.memory=0"`` -> ``("hsja", "memory", 0)``; the value is read as JSON when it
    parses (numbers, true/false), else kept as a string."""
    key, sep, raw = text.partition("=")
    attack, dot, name = key.strip().partition(".")
    if not sep or not dot or not name or not raw.strip():
        raise ProbeError(f"an attack option is ATTACK.NAME=VALUE (e.g. hsja.memory=0), got {text!r}")
    attack = attack.lower()
    if attack not in (*attacks, "confirm"):
        raise ProbeError(f"unknown attack {attack!r} in option {text!r}; choose from {', '.join(attacks)}")
    value: Any = raw.strip()
    try:
        value = json.loads(value)
    except json.JSONDecodeError:
        pass
    return attack, name.strip(), value


def parse_options(texts: list[str] | tuple[str, ...], attacks: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Several ``ATTACK.NAME=VALUE`` options, grouped by attack."""
    options: dict[str, dict[str, Any]] = {}
    for text in texts:
        attack, name, value = parse_option(text, attacks)
        options.setdefault(attack, {})[name] = value
    return options


def _attack_class(name: str):
    from probe.attacks import attack_class  # the package does not import this module: no cycle

    return attack_class(name)


def option_names(name: str) -> list[str]:
    """The parameters of attack ``name`` that options may set (all but its norm)."""
    signature = inspect.signature(_attack_class(name).__init__)
    return [p for p in signature.parameters if p not in ("self", "norm")]


def build_attack(name: str, *, norm: str, settings: AttackSettings):
    """Attack ``name`` with the preset's parameters and the options on top; an unknown
    option name or a bad value is a ProbeError naming it."""
    from probe.attacks import make_attack

    params = settings.params(name)
    known = option_names(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ProbeError(f"{name} has no option {', '.join(unknown)}; its options are {', '.join(known)}")
    return make_attack(name, norm=norm, **params)


def describe_options(name: str) -> list[tuple[str, object, str]]:
    """(parameter, default, meaning) of each option of attack ``name``, from its docstring."""
    cls = _attack_class(name)
    signature = inspect.signature(cls.__init__)
    meaning: dict[str, str] = {}
    current = None
    block = (cls.__doc__ or "").split("Arguments:", 1)[-1].split("Shape:", 1)[0]
    for line in block.splitlines():
        head = re.match(r"\s{8}(\w+) \(([^)]*)\):\s*(.*)", line)
        if head:
            current = head.group(1)
            meaning[current] = head.group(3).strip()
        elif current and line.strip():
            meaning[current] += " " + line.strip()
    rows = []
    for param in option_names(name):
        text = re.sub(r"\s*\(Default: [^)]*\)\s*$", "", meaning.get(param, ""))
        rows.append((param, signature.parameters[param].default, text))
    return rows
