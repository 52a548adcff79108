"""Sweep files: a grid of configurations (model, sigma, n, P_a, budget) x attacks x images.

A sweep is described by a TOML file (parsed with the standard ``tomllib``)::

    name = "paper-reduced"
    models = ["efficientnet-lite0"]      # names or ONNX paths (relative to this file)
    images = []                          # files/folders/globs [default: each model's samples]
    limit = 10                           # first N images (the clean accuracy is measured on all of them)
    attack_limit = 5                     # optional: attack only the first N of those
    attacks = ["hsja", "surfree", "rays"]
    budget = 1000                        # a number or a list
    sigma = [0, 0.05, 0.15]              # sigma = 0: no smoothing (n and P_a are then irrelevant)
    n = [10, 50]
    pa = [0.5]
    seed = 0
    certify = { n0 = 100, n = 1000, alpha = 0.001 }   # optional: CERTIFY radii per (model, sigma)
    criterion = "label"                  # the attacker's answer: "label" or "paper" (ceil(n P_a) votes)
    domain = "float"                     # "float" or "uint8" (every query rounded to the 8-bit grid)
    preset = "probe"                     # the attacks' settings: "probe" or "paper" (as published)
    batch_size = "auto"                  # images per model call: a number, or auto (measured, cached)
    full_votes = false                   # true: all n votes of every query (no early stop once decided)
    endpoint = "http://127.0.0.1:8000"   # optional: the models are served there (their names on it);
                                         # or a table {url, protocol, concurrency, timeout, defended}
                                         # (the key: PROBE_API_KEY); a model may also be a URL itself

    [attack.hsja]                        # optional: any attack parameter (probe attack --list-options)
    memory = 0

    [[extra]]                            # more configurations: these keys override the top level
    sigma = [0.05]
    n = [10]
    pa = [0.8]

The configurations are the product of the top level's lists, plus one product per
``[[extra]]`` table, deduplicated (sigma = 0 is recorded as n = 1, P_a = 0.5).

:func:`load_sweep` validates it into a :class:`Sweep`; :mod:`probe.runs.sweep` runs it.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.attacks import ATTACKS
from probe.attacks.presets import PRESETS, option_names
from probe.oracle import RULES
from probe.runs.results import config_id
from probe.validate import check_int, check_real

_GRID_KEYS = ("models", "sigma", "n", "pa", "budget")
_TOP_KEYS = {
    "name": str,
    "models": (list, str),
    "model": str,
    "images": (list, str),
    "labels": str,
    "limit": int,
    "attack_limit": int,
    "attacks": (list, str),
    "budget": (list, int),
    "sigma": (list, int, float),
    "n": (list, int),
    "pa": (list, int, float),
    "seed": int,
    "norm": str,
    "p_adv_samples": int,
    "batch_size": (int, str),
    "full_votes": bool,
    "endpoint": (str, dict),
    "device": str,
    "save_images": bool,
    "certify": (bool, dict),
    "criterion": str,
    "domain": str,
    "preset": str,
    "attack": dict,
    "extra": list,
}
_EXTRA_KEYS = {"models", "model", "sigma", "n", "pa", "budget", "attacks", "criterion", "domain", "preset", "attack"}
_CERTIFY_KEYS = {"n0": int, "n": int, "alpha": float}
_ENDPOINT_KEYS = {"url": str, "protocol": str, "concurrency": int, "timeout": (int, float), "defended": bool}


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SweepConfig:
    """One configuration of the grid: everything a job depends on but the image and the attack."""

    model: str
    sigma: float
    n: int
    pa: float
    budget: int
    attacks: tuple[str, ...]
    norm: str = "l2"
    seed: int = 0
    p_adv_samples: int = 100
    criterion: str = "label"
    domain: str = "float"
    preset: str = "probe"
    options: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)
    full_votes: bool = False  # all n votes of every query (other noise streams, so another configuration)

    def identity(self) -> dict[str, Any]:
        """The parameters that tell configurations apart (attacks are per job, not per configuration)."""
        return {**({"full_votes": True} if self.full_votes else {}),
            **({"domain": self.domain} if self.domain != "float" else {}),
            "model": self.model,
            "sigma": self.sigma,
            "n": self.n,
            "pa": self.pa,
            "budget": self.budget,
            "norm": self.norm,
            "seed": self.seed,
            "p_adv_samples": self.p_adv_samples,
            "criterion": self.criterion,
            "preset": self.preset,
            "options": self.options,
        }

    @property
    def id(self) -> str:
        return config_id(self.identity())

    @property
    def label(self) -> str:
        smooth = "no RS" if self.sigma == 0 else f"sigma={self.sigma:g} n={self.n} P_a={self.pa:g}"
        return f"{Path(self.model).stem if self.model.endswith('.onnx') else self.model} {smooth} budget={self.budget}"


@dataclass(frozen=True, kw_only=True)
class EndpointSettings:
    """Where the sweep's models are served (``url`` None: each model that is a URL is its own
    endpoint); the API key comes from ``PROBE_API_KEY`` where the sweep is read (Ray workers get
    it with the sweep; it is never written to a results folder). A defended endpoint smooths itself."""

    url: str | None = None
    protocol: str = "v2"
    concurrency: int = 4
    timeout: float = 30.0
    defended: bool = False
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CertifySettings:
    n0: int = 100
    n: int = 1000
    alpha: float = 0.001


@dataclass
class Sweep:
    """A parsed sweep file."""

    configs: list[SweepConfig]
    name: str = "sweep"
    images: list[str] | None = None
    labels: str | None = None
    limit: int | None = None
    attack_limit: int | None = None
    batch_size: int | str = "auto"
    device: str = "auto"
    save_images: bool = False
    certify: CertifySettings | None = None
    endpoint: EndpointSettings = field(default_factory=EndpointSettings)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(c.model for c in self.configs))


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list) else [value]


def _check_type(where: str, key: str, value: Any, kinds) -> None:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise ProbeError(f"{where}: '{key}' must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")


def _numbers(
    where: str, key: str, values: list, kind: type, *, low: float, high: float | None = None, low_open: bool = False
) -> list:
    """Each value checked by :mod:`probe.validate`, named ``where: 'key'`` in the message."""
    if not values:
        raise ProbeError(f"{where}: '{key}' is an empty list")
    name = f"{where}: '{key}'"
    if kind is int:
        return [check_int(name, v, int(low), None if high is None else int(high)) for v in values]
    return [check_real(name, v, low, high, low_closed=not low_open) for v in values]


def _attack_options(tag: str, table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``[attack.hsja]`` tables: per-attack parameters, checked against the attack's options."""
    options = {}
    for name, params in table.items():
        if name not in ATTACKS and name != "confirm":
            raise ProbeError(f"{tag}: [attack.{name}]: unknown attack; choose from {', '.join(ATTACKS)}")
        if not isinstance(params, dict):
            raise ProbeError(f"{tag}: [attack.{name}] must be a table of parameters")
        if name != "confirm":
            unknown = sorted(set(params) - set(option_names(name)))
            if unknown:
                raise ProbeError(
                    f"{tag}: [attack.{name}] has no option {', '.join(unknown)}; "
                    f"its options are {', '.join(option_names(name))}"
                )
        options[name] = dict(params)
    return options


def parse_sweep(data: dict[str, Any], base: Path | None = None, where: str = "sweep") -> Sweep:
    """Validate a sweep dict (from TOML) into a :class:`Sweep`; ProbeError on anything wrong."""
    base = base or Path(".")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ProbeError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOP_KEYS))}")
    for key, value in data.items():
        _check_type(where, key, value, _TOP_KEYS[key])
    if "model" in data and "models" in data:
        raise ProbeError(f"{where}: give 'models' or 'model', not both")

    def resolve_model(name: str) -> str:
        if name.endswith(".onnx") or "/" in name or os.sep in name:
            candidate = Path(name).expanduser()
            if not candidate.is_absolute() and (base / candidate).exists():
                return str((base / candidate).resolve())
        return name

    def grid(table: dict[str, Any], tag: str) -> list[SweepConfig]:
        models = _as_list(table.get("models", table.get("model", ["efficientnet-lite0"])))
        if not models or not all(isinstance(m, str) and m for m in models):
            raise ProbeError(f"{tag}: 'models' must be a non-empty list of model names or paths")
        attacks = table.get("attacks", ["hsja", "surfree", "rays"])
        attacks = list(ATTACKS) if attacks == "all" else _as_list(attacks)
        if not attacks or not all(isinstance(a, str) for a in attacks):
            raise ProbeError(f"{tag}: 'attacks' must be a non-empty list of names")
        bad = [a for a in attacks if a.lower() not in ATTACKS]
        if bad:
            raise ProbeError(f"{tag}: unknown attack(s) {', '.join(bad)}; choose from {', '.join(ATTACKS)}")
        sigmas = _numbers(tag, "sigma", _as_list(table.get("sigma", [0.05])), float, low=0.0)
        ns = _numbers(tag, "n", _as_list(table.get("n", [10])), int, low=1)
        pas = _numbers(tag, "pa", _as_list(table.get("pa", [0.5])), float, low=0.0, high=1.0, low_open=True)
        budgets = _numbers(tag, "budget", _as_list(table.get("budget", [2000])), int, low=1)
        criterion = table.get("criterion", "label")
        if criterion not in RULES:
            raise ProbeError(f"{tag}: 'criterion' must be one of {', '.join(RULES)}, got {criterion!r}")
        domain = table.get("domain", "float")
        if domain not in ("float", "uint8"):
            raise ProbeError(f"{tag}: 'domain' must be float or uint8, got {domain!r}")
        preset = table.get("preset", "probe")
        if preset not in PRESETS:
            raise ProbeError(f"{tag}: 'preset' must be one of {', '.join(PRESETS)}, got {preset!r}")
        options = _attack_options(tag, table.get("attack", {}))
        configs = []
        for model, sigma, n, pa, budget in itertools.product(models, sigmas, ns, pas, budgets):
            if sigma == 0:
                n, pa = 1, 0.5
            configs.append(
                SweepConfig(
                    model=resolve_model(model),
                    sigma=sigma,
                    n=n,
                    pa=pa,
                    budget=budget,
                    attacks=tuple(a.lower() for a in attacks),
                    norm=norm,
                    seed=seed,
                    p_adv_samples=p_adv_samples,
                    criterion=criterion,
                    domain=domain,
                    preset=preset,
                    options=options,
                    full_votes=data.get("full_votes", False),
                )
            )
        return configs

    norm = data.get("norm", "l2")
    if norm not in ("l2", "linf"):
        raise ProbeError(f"{where}: 'norm' must be l2 or linf, got {norm!r}")
    seed = data.get("seed", 0)
    p_adv_samples = _numbers(where, "p_adv_samples", [data.get("p_adv_samples", 100)], int, low=1)[0]
    configs = grid(data, where)
    for k, extra in enumerate(data.get("extra", [])):
        tag = f"{where} [[extra]] #{k + 1}"
        if not isinstance(extra, dict):
            raise ProbeError(f"{tag}: must be a table")
        unknown = sorted(set(extra) - _EXTRA_KEYS)
        if unknown:
            raise ProbeError(f"{tag}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_EXTRA_KEYS))}")
        merged = {k2: v for k2, v in data.items() if k2 != "extra"}
        if "model" in extra or "models" in extra:
            merged.pop("model", None)
            merged.pop("models", None)
        merged.update(extra)
        configs += grid(merged, tag)
    merged_configs: dict[str, SweepConfig] = {}
    for cfg in configs:  # dedupe; the same configuration from two grids runs the union of their attacks
        old = merged_configs.get(cfg.id)
        if old is not None:
            cfg = SweepConfig(**{**asdict(old), "attacks": tuple(dict.fromkeys(old.attacks + cfg.attacks))})
        merged_configs[cfg.id] = cfg

    certify = data.get("certify", False)
    settings = None
    if certify is True:
        settings = CertifySettings()
    elif isinstance(certify, dict):
        unknown = sorted(set(certify) - set(_CERTIFY_KEYS))
        if unknown:
            raise ProbeError(f"{where}: unknown certify key(s) {', '.join(unknown)}; allowed: n0, n, alpha")
        n0 = _numbers(where, "certify.n0", [certify.get("n0", 100)], int, low=1)[0]
        n_c = _numbers(where, "certify.n", [certify.get("n", 1000)], int, low=1)[0]
        alpha = _numbers(
            where, "certify.alpha", [certify.get("alpha", 0.001)], float, low=0.0, high=1.0, low_open=True
        )[0]
        settings = CertifySettings(n0, n_c, alpha)
    images = data.get("images")
    if images is not None:
        if not all(isinstance(p, str) and p for p in _as_list(images)):  # images = [1]: a TypeError before
            raise ProbeError(f"{where}: 'images' must be names of files, folders or globs, got {images!r}")
        images = [str(p) if Path(p).is_absolute() else str(base / p) for p in _as_list(images)] or None
    labels = data.get("labels")
    if labels is not None and not Path(labels).is_absolute():
        labels = str(base / labels)
    limit = data.get("limit")
    if limit is not None and limit < 1:
        raise ProbeError(f"{where}: 'limit' must be >= 1, got {limit}")
    attack_limit = data.get("attack_limit")
    if attack_limit is not None and attack_limit < 1:
        raise ProbeError(f"{where}: 'attack_limit' must be >= 1, got {attack_limit}")
    batch_size = data.get("batch_size", "auto")
    if batch_size != "auto" and (isinstance(batch_size, str) or batch_size < 1):
        raise ProbeError(f"{where}: 'batch_size' must be >= 1 or \"auto\", got {batch_size!r}")
    endpoint = _endpoint(where, data.get("endpoint"))
    if endpoint.defended and any(c.sigma > 0 for c in merged_configs.values()):
        raise ProbeError(f"{where}: a defended endpoint smooths itself: give sigma = 0 (no client-side noise)")
    return Sweep(
        configs=list(merged_configs.values()),
        name=data.get("name", "sweep"),
        images=images,
        labels=labels,
        limit=limit,
        attack_limit=attack_limit,
        batch_size=batch_size,
        device=data.get("device", "auto"),
        save_images=data.get("save_images", False),
        certify=settings,
        endpoint=endpoint,
        source=data,
    )


def _endpoint(where: str, value: str | dict | None) -> EndpointSettings:
    """``endpoint = URL`` or ``endpoint = {url, protocol, concurrency, timeout, defended}``."""
    table = {"url": value} if isinstance(value, str) else dict(value or {})
    unknown = sorted(set(table) - set(_ENDPOINT_KEYS))
    if unknown:
        raise ProbeError(f"{where}: unknown endpoint key(s) {', '.join(unknown)}; allowed: {', '.join(_ENDPOINT_KEYS)}")
    for key, item in table.items():
        _check_type(where, f"endpoint.{key}", item, _ENDPOINT_KEYS[key])
    return EndpointSettings(**table, api_key=os.environ.get("PROBE_API_KEY"))


def load_sweep(path: Path) -> Sweep:
    """Read and validate a sweep TOML file."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ProbeError("reading sweep files needs Python >= 3.11 or the tomli package") from None
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"no such sweep file: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProbeError(f"{path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeError(f"cannot read {path}: {exc}") from None
    tables = [data, *(t for t in data.get("extra", []) if isinstance(t, dict))]
    if not any(key in t for t in tables for key in ("models", "model", "images")):  # an empty file, a typo
        raise ProbeError(f"{path} names no models and no images: the defaults would attack efficientnet-lite0's 20 "
                         "samples with hsja, surfree and rays, 2,000 queries each; write models = [...] to run a sweep")
    return parse_sweep(data, path.parent, path.name)
