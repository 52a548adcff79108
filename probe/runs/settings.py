"""The settings of a run, in one validated object, built by one function.

:class:`RunSettings` holds everything an attack run depends on but the model and the
images: the attacks and their parameters, the defense (sigma, n), the verdict (P_a, its
evaluations and confidence), CERTIFY of the originals and the engine's job cap. Each default
is written here once. :func:`build_settings` builds it from a table of values, whether the
command line's options (``probe attack``) or one point of a sweep file's grid (a sweep is a
grid over these same settings, :mod:`probe.runs.sweep_file`); it names a bad value in the
caller's terms (``--budget``, ``sweep.toml: 'budget'``).

Pure Python: the command line checks its arguments with it before anything heavy is
imported (the attacks' own option names and values are checked when the attacks are built,
:meth:`RunSettings.attack`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from probe.errors import ParameterError, ProbeError, braces
from probe.validate import check_alpha, check_choice, check_int, check_n, check_pa, check_real, check_sigma

if TYPE_CHECKING:
    from probe.attacks.base import Attack
    from probe.attacks.presets import AttackSettings

#: probe.attacks.ATTACKS, in its order (``tests/test_cli_fast.py`` holds them equal)
ATTACK_NAMES = ("hsja", "surfree", "rays", "cgba", "psj", "popskipjump")
#: the attacks a run uses when none are named: the paper's three
DEFAULT_ATTACKS = ("hsja", "surfree", "rays")
#: probe.oracle.RULES
CRITERIA = ("label", "paper")
#: probe.attacks.presets.PRESETS
PRESET_NAMES = ("probe", "paper")
#: probe.attacks.base.DOMAINS
DOMAINS = ("float", "uint8")
NORMS = ("l2", "linf")


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """Settings of an attack run (validated on construction; scikit-learn style errors).

    attacks : the attacks' registry names, in the order they run.
    norm : "l2" or "linf" (HSJA's; SurFree is L2, RayS Linf).
    sigma, n : randomized smoothing's noise and votes per query (sigma = 0: no smoothing, n = 1).
    pa : eq. (4)'s level P_a.
    budget : queries per image and attack.
    seed : the seed of every random stream.
    targeted : the target class, or None (untargeted).
    criterion : the attacker's answer per query, "label" or "paper" (:class:`~probe.oracle.Criterion`).
    domain : "float" (any float32 point) or "uint8" (every query rounded to the 8-bit grid).
    preset, options : the attacks' parameters (:mod:`probe.attacks.presets`): options maps an
        attack's name to {parameter: value}.
    p_adv_samples, confidence : the most fresh evaluations of the sequential tests (clean
        label, p_adv) and their confidence.
    certify_n0, certify_n, certify_alpha : CERTIFY of each original under smoothing (n = 0: off).
    full_votes : draw all n votes of every query (no early stop once decided).
    max_jobs : (image, attack) jobs at once (None: what a quarter of the memory holds).
    """

    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    norm: str = "l2"
    sigma: float = 0.05
    n: int = 10
    pa: float = 0.5
    budget: int = 2000
    seed: int = 0
    targeted: int | None = None
    criterion: str = "label"
    domain: str = "float"
    preset: str = "probe"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    p_adv_samples: int = 100
    confidence: float = 0.99
    certify_n0: int = 100
    certify_n: int = 1000
    certify_alpha: float = 0.001
    full_votes: bool = False
    max_jobs: int | None = None

    def __post_init__(self) -> None:
        for key, value in _checked(dataclasses.asdict(self)).items():
            object.__setattr__(self, key, value)

    @property
    def settings(self) -> AttackSettings:
        from probe.attacks.presets import AttackSettings

        return AttackSettings(preset=self.preset, options=self.options)

    def confirm_level(self) -> float:
        """The True rate a confirmation asks for: P_a under the ``label`` criterion (its answer
        is eq. (4)'s event), 1/2 under ``paper`` (its answers already need ceil(n P_a) wrong
        votes: P_a is not applied twice)."""
        return self.pa if self.criterion == "label" else 0.5

    def attack(self, name: str, randomized: bool) -> Attack:
        """The attack ``name`` as these settings build it (confirmed against a randomized
        oracle: smoothing, or a defended endpoint)."""
        from probe.attacks import Confirmed, resolve_norm
        from probe.attacks.presets import build_attack

        attack = build_attack(name, norm=resolve_norm(name, self.norm), settings=self.settings)
        share = self.settings.confirm_share
        if randomized and share > 0:  # a randomized oracle: keep part of the budget to confirm the final point
            attack = Confirmed(attack, level=self.confirm_level(), share=share)
        return attack


FIELDS = tuple(f.name for f in dataclasses.fields(RunSettings))


def _attack_list(value: object, name: str) -> tuple[str, ...]:
    """Names as a comma string, a list, or ``all``."""
    if isinstance(value, str):
        value = ATTACK_NAMES if value.strip().lower() == "all" else value.split(",")
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(a, str) for a in value):
        raise ParameterError(f"{{name}} must be a non-empty list of attack names, got {braces(repr(value))}", name=name)
    names = tuple(a.strip().lower() for a in value)
    unknown = [a for a in names if a not in ATTACK_NAMES]
    if unknown:
        raise ParameterError(
            f"{{name}}: unknown attack {', '.join(unknown)}; choose from {', '.join(ATTACK_NAMES)} or all", name=name
        )
    return tuple(dict.fromkeys(names))


def _options(value: object, name: str) -> dict[str, dict[str, Any]]:
    """{attack: {parameter: value}}: the attacks' names here, their parameters where they are built."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ParameterError(f"{{name}} must map attack names to tables of parameters, got {braces(repr(value))}",
                             name=name)  # fmt: skip
    unknown = [a for a in value if a not in ATTACK_NAMES and a != "confirm"]
    if unknown:
        raise ParameterError(
            f"{{name}}: unknown attack {', '.join(unknown)}; choose from {', '.join(ATTACK_NAMES)}", name=name
        )
    return {attack: dict(params) for attack, params in value.items()}


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ParameterError(f"{{name}} must be true or false, got {braces(repr(value))}", name=name)
    return value


def _optional_int(minimum: int) -> Callable[[object, str], int | None]:
    return lambda value, name: None if value is None else check_int(name, value, minimum)


_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "attacks": _attack_list,
    "norm": lambda v, name: check_choice(name, v, NORMS),
    "sigma": lambda v, name: check_sigma(v, name=name),
    "n": lambda v, name: check_n(v, name=name),
    "pa": lambda v, name: check_pa(v, name=name),
    "budget": lambda v, name: check_int(name, v, 1),
    "seed": lambda v, name: check_int(name, v, 0),
    "targeted": _optional_int(0),
    "criterion": lambda v, name: check_choice(name, v, CRITERIA),
    "domain": lambda v, name: check_choice(name, v, DOMAINS),
    "preset": lambda v, name: check_choice(name, v, PRESET_NAMES),
    "options": _options,
    "p_adv_samples": lambda v, name: check_int(name, v, 1),
    "confidence": lambda v, name: check_alpha(v, name=name),
    "certify_n0": lambda v, name: check_int(name, v, 1),
    "certify_n": lambda v, name: check_int(name, v, 0),
    "certify_alpha": lambda v, name: check_alpha(v, name=name),
    "full_votes": _bool,
    "max_jobs": _optional_int(1),
}
assert set(_CHECKS) == set(FIELDS)


def _checked(values: Mapping[str, Any]) -> dict[str, Any]:
    """Each value checked and normalised (attack names lower case, n = 1 without noise)."""
    out = {key: _CHECKS[key](value, key) for key, value in values.items()}
    if out.get("sigma") == 0 and "n" in out:
        out["n"] = 1  # no noise: one vote is the answer (probe.smoothing.SmoothedClassifier does the same)
    return out


def build_settings(values: Mapping[str, Any], *, terms: Callable[[str], str] | Mapping[str, str] | None = None,
                   base: RunSettings | None = None) -> RunSettings:  # fmt: skip
    """:class:`RunSettings` from ``values`` (a table of the fields' names; the others keep
    ``base``'s values, or the defaults). A bad value or an unknown name raises
    :class:`~probe.errors.ProbeError` naming it ``terms(name)`` (the caller's terms: a flag,
    a key of a file)."""
    terms = terms or {}
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ProbeError(f"{_term(terms, unknown[0])} is not a setting; the settings are {', '.join(FIELDS)}")
    try:
        checked = _checked(values)
    except ParameterError as exc:
        raise ProbeError(exc.render(terms)) from None
    start = dataclasses.asdict(base) if base is not None else {}
    return RunSettings(**{**start, **checked})


def _term(terms: Callable[[str], str] | Mapping[str, str], key: str) -> str:
    return terms(key) if callable(terms) else terms.get(key, key)
