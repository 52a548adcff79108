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
    targeted = 3                         # optional; also norm, p_adv_samples, confidence, max_jobs:
                                         # every setting of probe attack (probe.runs.settings.RunSettings)
    endpoint = "http://127.0.0.1:8000"   # optional: the models are served there (their names on it);
                                         # or a table {url, protocol ("v2", "probe", "grpc"), concurrency,
                                         # timeout, defended, num_classes, classes (a file), max_rate}
                                         # (the key: PROBE_API_KEY); a model may also be a URL itself

    [attack.hsja]                        # optional: any attack parameter (probe attack --list-options)
    memory = 0

    [[extra]]                            # more configurations: these keys override the top level
    sigma = [0.05]
    n = [10]
    pa = [0.8]

The configurations are the product of the top level's lists, plus one product per
``[[extra]]`` table, deduplicated (sigma = 0 is recorded as n = 1, and P_a = 0.5 unless the
endpoint is defended); each is one :func:`~probe.runs.settings.build_settings`, as ``probe attack``'s
options are; the certify table sets the records' CERTIFY too.

:func:`load_sweep` validates it into a :class:`Sweep`; :mod:`probe.runs.sweep` runs it.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.attacks import ATTACKS
from probe.attacks.presets import option_names
from probe.runs.results import config_id
from probe.runs.settings import RunSettings, build_settings
from probe.validate import check_alpha, check_batch_size, check_choice, check_int

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
    "targeted": int,
    "confidence": float,
    "max_jobs": int,
    "attack": dict,
    "extra": list,
}
#: the keys that are settings of the runs (:class:`~probe.runs.settings.RunSettings`), besides the grid's lists
_SETTING_KEYS = ("attacks", "norm", "seed", "targeted", "criterion", "domain", "preset", "p_adv_samples",
                 "confidence", "full_votes", "max_jobs")  # fmt: skip
_EXTRA_KEYS = {"models", "model", "sigma", "n", "pa", "budget", "attacks", "criterion", "domain", "preset", "attack",
               "targeted"}  # fmt: skip
_CERTIFY_KEYS = {"n0": int, "n": int, "alpha": float}
_ENDPOINT_KEYS = {"url": str, "protocol": str, "concurrency": int, "timeout": (int, float), "defended": bool,
                  "num_classes": int, "classes": str, "max_rate": (int, float)}


@dataclass(frozen=True)
class SweepConfig:
    """One configuration of the grid: a model and the settings of its jobs
    (:class:`~probe.runs.settings.RunSettings`; ``cfg.sigma``, ``cfg.budget``... read them)."""

    model: str
    settings: RunSettings

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "settings":  # copy and pickle look before the fields are set
            raise AttributeError(name)
        return getattr(self.settings, name)

    def identity(self) -> dict[str, Any]:
        """The parameters that tell configurations apart (attacks are per job, not per
        configuration; the job cap changes no record). Settings added since the first sweeps
        count only when they differ from their defaults, so that older ids stay valid."""
        s, default = self.settings, RunSettings()
        later = ("full_votes", "domain", "targeted", "confidence", "certify_n0", "certify_n", "certify_alpha")
        return {
            **{key: getattr(s, key) for key in later if getattr(s, key) != getattr(default, key)},
            "model": self.model,
            **{key: getattr(s, key) for key in ("sigma", "n", "pa", "budget", "norm", "seed", "p_adv_samples")},
            **{key: getattr(s, key) for key in ("criterion", "preset", "options")},
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
    num_classes: int | None = None  # a labels-only server's class count
    classes: str | None = None  # a file of class names, one a line (index = line)
    max_rate: float | None = None  # requests per second, at most
    api_key: str | None = field(default=None, repr=False)

    def options(self, model: str, batch_size: int | str) -> RemoteOptions:
        """These settings as the command line's model options (what :func:`probe.remote.open.open_remote` reads)."""
        return RemoteOptions(
            endpoint=self.url or model, model=model if self.url else None, protocol=self.protocol,
            concurrency=self.concurrency, timeout=self.timeout, defended=self.defended, api_key=self.api_key,
            max_rate=self.max_rate, num_classes=self.num_classes, classes=self.classes, batch_size=batch_size,
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class RemoteOptions:
    """A served model as the command line's model options describe one (:func:`probe.remote.open.open_remote`)."""

    endpoint: str
    model: str | None
    protocol: str
    concurrency: int
    timeout: float
    defended: bool
    api_key: str | None = field(repr=False)
    max_rate: float | None
    num_classes: int | None
    classes: str | None
    batch_size: int | str
    target: None = None  # a sweep's models are served models, not target files
    header: tuple[str, ...] = ()


@dataclass(frozen=True)
class CertifySettings:  # CERTIFY of each attacked original, per (model, sigma): certify.jsonl
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

    def with_settings(self, **changes: Any) -> Sweep:
        """Every configuration's settings changed (``full_votes=True``: other configurations, other ids)."""
        configs = [SweepConfig(c.model, dataclasses.replace(c.settings, **changes)) for c in self.configs]
        return dataclasses.replace(self, configs=configs)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list) else [value]


def _check_type(where: str, key: str, value: Any, kinds) -> None:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise ProbeError(f"{where}: '{key}' must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")


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

    endpoint = _endpoint(where, data.get("endpoint"), base)
    certify = data.get("certify", False)
    certify_settings = None
    if certify is True:
        certify_settings = CertifySettings()
    elif isinstance(certify, dict):
        unknown = sorted(set(certify) - set(_CERTIFY_KEYS))
        if unknown:
            raise ProbeError(f"{where}: unknown certify key(s) {', '.join(unknown)}; allowed: n0, n, alpha")
        n0 = check_int(f"{where}: 'certify.n0'", certify.get("n0", CertifySettings.n0), 1)
        n_c = check_int(f"{where}: 'certify.n'", certify.get("n", CertifySettings.n), 1)
        alpha = check_alpha(certify.get("alpha", CertifySettings.alpha), name=f"{where}: 'certify.alpha'")
        certify_settings = CertifySettings(n0, n_c, alpha)
    grid_keys = ("sigma", "n", "pa", "budget")

    def grid(table: dict[str, Any], tag: str) -> list[SweepConfig]:
        """The product of a table's models and lists, each point a :func:`build_settings`."""
        models = _as_list(table.get("models", table.get("model", ["efficientnet-lite0"])))
        if not models or not all(isinstance(m, str) and m for m in models):
            raise ProbeError(f"{tag}: 'models' must be a non-empty list of model names or paths")
        terms = lambda key: f"{tag}: '{key}'"  # noqa: E731
        common = {key: table[key] for key in _SETTING_KEYS if key in table}
        if "attack" in table:
            common["options"] = _attack_options(tag, table["attack"])
        if certify_settings is not None:  # the records' CERTIFY is the sweep's
            common.update(certify_n0=certify_settings.n0, certify_n=certify_settings.n,
                          certify_alpha=certify_settings.alpha)  # fmt: skip
        base_settings = build_settings(common, terms=terms)
        lists = [_as_list(table.get(key, getattr(base_settings, key))) for key in grid_keys]
        for key, values in zip(grid_keys, lists):
            if not values:
                raise ProbeError(f"{tag}: '{key}' is an empty list")
        configs = []
        for model, *point in itertools.product(models, *lists):
            settings = build_settings(dict(zip(grid_keys, point)), terms=terms, base=base_settings)
            if settings.sigma == 0 and not endpoint.defended:  # no noise: P_a plays no part (n is 1 already)
                settings = dataclasses.replace(settings, pa=0.5)
            configs.append(SweepConfig(resolve_model(model), settings))
        return configs

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
            union = tuple(dict.fromkeys(old.attacks + cfg.attacks))
            cfg = SweepConfig(cfg.model, dataclasses.replace(old.settings, attacks=union))
        merged_configs[cfg.id] = cfg

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
    batch_size = check_batch_size(data.get("batch_size", "auto"), name=f"{where}: 'batch_size'")
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
        certify=certify_settings,
        endpoint=endpoint,
        source=data,
    )


def _endpoint(where: str, value: str | dict | None, base: Path) -> EndpointSettings:
    """``endpoint = URL`` or ``endpoint = {url, protocol, concurrency, timeout, defended, num_classes,
    classes, max_rate}`` (``classes``: a file relative to the sweep file)."""
    from probe.remote.client import PROTOCOLS

    table = {"url": value} if isinstance(value, str) else dict(value or {})
    unknown = sorted(set(table) - set(_ENDPOINT_KEYS))
    if unknown:
        raise ProbeError(f"{where}: unknown endpoint key(s) {', '.join(unknown)}; allowed: {', '.join(_ENDPOINT_KEYS)}")
    for key, item in table.items():
        _check_type(where, f"endpoint.{key}", item, _ENDPOINT_KEYS[key])
    check_choice(f"{where}: 'endpoint.protocol'", table.get("protocol", "v2"), PROTOCOLS)
    if "classes" in table and not Path(table["classes"]).is_absolute():
        table["classes"] = str(base / table["classes"])
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
