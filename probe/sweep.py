"""Sweeps: a grid of configurations (model, sigma, n, P_a, budget) x attacks x images, resumable.

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

    [[extra]]                            # more configurations: these keys override the top level
    sigma = [0.05]
    n = [10]
    pa = [0.8]

The configurations are the product of the top level's lists, plus one product per
``[[extra]]`` table, deduplicated (sigma = 0 is recorded as n = 1, P_a = 0.5).

Output folder:

* ``results.jsonl``: one record per (configuration, image, attack), appended and
  flushed as each job finishes; each record carries ``config`` (an id hashed from
  the configuration's parameters) and ``model``. Re-running resumes: finished
  jobs are skipped, a torn last line is dropped.
* ``configs.jsonl``: per configuration, its parameters and the clean accuracy of
  the defended classifier g_{sigma,n} (per image, the fraction of ``p_adv_samples``
  fresh majority votes that give the true label, averaged over the images), with
  the accuracy of the plain model and of the smoothed label (g_sigma) beside it.
* ``certify.jsonl``: CERTIFY records per (model, sigma, image) when asked.
* ``sweep.json``: the sweep's settings, software versions and run status.

All jobs of a configuration go through one :class:`~probe.engine.Engine`, so the
model sees full batches; every job has its own seeded streams (keyed by the
image's and the attack's position), so a resumed sweep gives the same records
as one run straight through.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from probe.errors import ProbeError
from probe.report import ResultsWriter

RESULTS, CONFIGS, CERTIFY, SWEEP = "results.jsonl", "configs.jsonl", "certify.jsonl", "sweep.json"
TIMING_FIELDS = ("seconds",)

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
    "batch_size": int,
    "device": str,
    "save_images": bool,
    "certify": (bool, dict),
    "extra": list,
}
_EXTRA_KEYS = {"models", "model", "sigma", "n", "pa", "budget", "attacks"}
_CERTIFY_KEYS = {"n0": int, "n": int, "alpha": float}


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

    def identity(self) -> dict[str, Any]:
        """The parameters that tell configurations apart (attacks are per job, not per configuration)."""
        return {
            "model": self.model,
            "sigma": self.sigma,
            "n": self.n,
            "pa": self.pa,
            "budget": self.budget,
            "norm": self.norm,
            "seed": self.seed,
            "p_adv_samples": self.p_adv_samples,
        }

    @property
    def id(self) -> str:
        return config_id(self.identity())

    @property
    def label(self) -> str:
        smooth = "no RS" if self.sigma == 0 else f"sigma={self.sigma:g} n={self.n} P_a={self.pa:g}"
        return f"{Path(self.model).stem if self.model.endswith('.onnx') else self.model} {smooth} budget={self.budget}"


def config_id(identity: dict[str, Any]) -> str:
    """A short stable id of a configuration's parameters."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return "c" + hashlib.sha1(text.encode()).hexdigest()[:10]


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
    batch_size: int = 64
    device: str = "auto"
    save_images: bool = False
    certify: CertifySettings | None = None
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(c.model for c in self.configs))


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list) else [value]


def _check_type(where: str, key: str, value: Any, kinds) -> None:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool) and bool not in kinds:
        raise ProbeError(f"{where}: '{key}' must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise ProbeError(f"{where}: '{key}' must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")


def _numbers(where: str, key: str, values: list, kind: type, low: float, high: float | None = None,
             low_open: bool = False) -> list:
    out = []
    if not values:
        raise ProbeError(f"{where}: '{key}' is an empty list")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
            raise ProbeError(f"{where}: every '{key}' must be {'an integer' if kind is int else 'a number'}, got {v!r}")
        if not np.isfinite(v) or v < low or (low_open and v == low) or (high is not None and v > high):
            bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
            raise ProbeError(f"{where}: '{key}' values must be {bound}, got {v!r}")
        out.append(kind(v))
    return out


def parse_sweep(data: dict[str, Any], base: Path | None = None, where: str = "sweep") -> Sweep:
    """Validate a sweep dict (from TOML) into a :class:`Sweep`; ProbeError on anything wrong."""
    from probe.attacks import ATTACKS

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
        sigmas = _numbers(tag, "sigma", _as_list(table.get("sigma", [0.05])), float, 0.0)
        ns = _numbers(tag, "n", _as_list(table.get("n", [10])), int, 1)
        pas = _numbers(tag, "pa", _as_list(table.get("pa", [0.5])), float, 0.0, 1.0, low_open=True)
        budgets = _numbers(tag, "budget", _as_list(table.get("budget", [2000])), int, 1)
        configs = []
        for model, sigma, n, pa, budget in itertools.product(models, sigmas, ns, pas, budgets):
            if sigma == 0:
                n, pa = 1, 0.5
            configs.append(
                SweepConfig(resolve_model(model), sigma, n, pa, budget, tuple(a.lower() for a in attacks),
                            norm, seed, p_adv_samples)
            )
        return configs

    norm = data.get("norm", "l2")
    if norm not in ("l2", "linf"):
        raise ProbeError(f"{where}: 'norm' must be l2 or linf, got {norm!r}")
    seed = data.get("seed", 0)
    p_adv_samples = _numbers(where, "p_adv_samples", [data.get("p_adv_samples", 100)], int, 1)[0]
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
        n0 = _numbers(where, "certify.n0", [certify.get("n0", 100)], int, 1)[0]
        n_c = _numbers(where, "certify.n", [certify.get("n", 1000)], int, 1)[0]
        alpha = _numbers(where, "certify.alpha", [certify.get("alpha", 0.001)], float, 0.0, 1.0, low_open=True)[0]
        settings = CertifySettings(n0, n_c, alpha)
    images = data.get("images")
    if images is not None:
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
    batch_size = data.get("batch_size", 64)
    if batch_size < 1:
        raise ProbeError(f"{where}: 'batch_size' must be >= 1, got {batch_size}")
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
        source=data,
    )


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
    return parse_sweep(data, path.parent, path.name)


# --------------------------------------------------------------------------- files


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON Lines file; missing file -> []; unreadable (torn) lines are skipped."""
    if not path.is_file():
        return []
    from probe.report import read_results

    return read_results(path)


def repair_tail(path: Path) -> None:
    """Drop a torn last line (no newline: an interrupted write) so that appends stay line-aligned."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        data = path.read_bytes()
        handle.truncate(data.rfind(b"\n") + 1)


class JsonlAppender(ResultsWriter):
    """A ResultsWriter that first cuts a torn last line left by an interrupted run."""

    def __init__(self, path: Path) -> None:
        repair_tail(path)
        super().__init__(path)


def versions() -> dict[str, str]:
    """Versions of probe and the software it runs on."""
    import onnxruntime
    import scipy

    import probe

    return {
        "probe": probe.__version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
    }


def job_key(record: dict) -> tuple[str, str, str]:
    return (record.get("config", ""), record["image"], record["attack"])


# --------------------------------------------------------------------------- running


@dataclass
class SweepHooks:
    """Callbacks of a running sweep (all optional).

    start(cfg, position, total, todo, done): a configuration begins (``todo`` jobs left, ``done`` already).
    record(rec): a record was written. finish(cfg): a configuration ended.
    """

    start: Callable[[SweepConfig, int, int, int, int], None] | None = None
    record: Callable[[dict], None] | None = None
    finish: Callable[[SweepConfig], None] | None = None
    message: Callable[[str], None] | None = None


@dataclass
class SweepOutcome:
    written: int = 0
    skipped_jobs: int = 0
    configs: int = 0
    seconds: float = 0.0


def _load_images(sweep: Sweep, runtime, model: str):
    from probe.data import load_images
    from probe.models.zoo import default_images

    sources = sweep.images
    if not sources:
        folder = default_images(model)
        if folder is None:
            raise ProbeError(f"model {model} has no bundled sample images: give 'images' in the sweep file")
        sources = [str(folder)]
    return load_images(sources, runtime.spec.size, sweep.labels, sweep.limit)


def run_sweep(sweep: Sweep, out_dir: Path, hooks: SweepHooks | None = None) -> SweepOutcome:
    """Run (or resume) every job of the sweep, appending records to ``out_dir``.

    KeyboardInterrupt propagates after the files are closed: every finished job
    is already on disk, and the next run resumes from there.
    """
    from probe.report import prepare_dir

    hooks = hooks or SweepHooks()
    prepare_dir(out_dir)
    done = {job_key(r) for r in read_jsonl(out_dir / RESULTS)}
    config_rows = {r["config"]: r for r in read_jsonl(out_dir / CONFIGS)}
    certified = {(r["model"], r["sigma"], r["n0"], r["n"], r["alpha"], r["seed"], r["image"])
                 for r in read_jsonl(out_dir / CERTIFY)}
    outcome = SweepOutcome()
    started = time.perf_counter()
    status = {
        "name": sweep.name,
        "source": sweep.source,
        "configs": [{"config": c.id, "label": c.label, **c.identity(), "attacks": list(c.attacks)} for c in sweep.configs],
        "versions": versions(),
        "providers": {},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "status": "running",
    }
    _write_status(out_dir, status)
    results = JsonlAppender(out_dir / RESULTS)
    configs_out = JsonlAppender(out_dir / CONFIGS)
    cert_out = JsonlAppender(out_dir / CERTIFY) if sweep.certify else None
    position = 0
    try:
        for model in sweep.models:
            runtime = _open_runtime(model, sweep)
            status["providers"][model] = list(runtime.info.providers)
            images = _load_images(sweep, runtime, model)
            if images.skipped and hooks.message:
                for path, why in images.skipped:
                    hooks.message(f"skipped unreadable image {path}: {why}")
            attacked = min(len(images), sweep.attack_limit or len(images))
            for cfg in (c for c in sweep.configs if c.model == model):
                position += 1
                keys = [(cfg.id, images.ids[i], a) for i in range(attacked) for a in cfg.attacks]
                todo = [k for k in keys if k not in done]
                outcome.skipped_jobs += len(keys) - len(todo)
                if hooks.start:
                    hooks.start(cfg, position, len(sweep.configs), len(todo), len(keys) - len(todo))
                if todo or cfg.id not in config_rows:
                    outcome.written += _run_config(
                        cfg, runtime, images, attacked, done, results, configs_out, config_rows, hooks, out_dir,
                        sweep.save_images,
                    )
                outcome.configs += 1
                if hooks.finish:
                    hooks.finish(cfg)
            if sweep.certify is not None:
                _certify_model(sweep, model, runtime, images, attacked, certified, cert_out, hooks)
        status["status"] = "finished"
    except KeyboardInterrupt:
        status["status"] = "interrupted"
        raise
    finally:
        results.close()
        configs_out.close()
        if cert_out:
            cert_out.close()
        outcome.seconds = time.perf_counter() - started
        status["seconds"] = round(outcome.seconds, 2)
        status["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        _write_status(out_dir, status)
    return outcome


def _write_status(out_dir: Path, status: dict) -> None:
    from probe.report import write_json

    write_json(out_dir / SWEEP, status)


def _open_runtime(model: str, sweep: Sweep):
    from probe.models.zoo import resolve_model
    from probe.runtime import Runtime

    return Runtime(resolve_model(model), batch_size=sweep.batch_size, device=sweep.device)


def _run_config(cfg, runtime, images, attacked, done, results, configs_out, config_rows, hooks, out_dir,
                save_images) -> int:
    """One configuration: clean accuracy on all images (configs.jsonl), then the unfinished jobs
    of the first ``attacked`` images in one engine."""
    from probe.audit import AttackConfig, build_jobs, clean_labels, finish_job
    from probe.data import ImageSet
    from probe.engine import Engine
    from probe.oracle import SmoothedClassifier
    from probe.report import save_adversarial

    classifier = SmoothedClassifier(runtime, cfg.sigma, cfg.n)
    acfg = AttackConfig(attacks=cfg.attacks, norm=cfg.norm, pa=cfg.pa, budget=cfg.budget, seed=cfg.seed,
                        targeted=None, p_adv_samples=cfg.p_adv_samples)
    # as probe.audit.attack_images: the label to move away from (g_sigma) and, per image, the
    # fraction of p_adv_samples fresh majority votes of g_{sigma,n} that give the true label
    clean, agree = clean_labels(classifier, images, cfg.seed, cfg.p_adv_samples)
    labelled = images.labels >= 0
    plain = runtime.labels(images.x)
    row = {
        "config": cfg.id,
        "label": cfg.label,
        **cfg.identity(),
        "attacks": list(cfg.attacks),
        "images": len(images),
        "attacked": attacked,
        "labelled": int(labelled.sum()),
        "clean_accuracy": float(np.mean(agree[labelled])) if labelled.any() else None,
        "clean_votes": 1 if cfg.sigma == 0 else cfg.p_adv_samples,
        "smoothed_label_accuracy": float(np.mean(clean[labelled] == images.labels[labelled])) if labelled.any() else None,
        "plain_accuracy": float(np.mean(plain[labelled] == images.labels[labelled])) if labelled.any() else None,
        "clean_labels": {images.ids[i]: int(clean[i]) for i in range(len(images))},
    }
    if config_rows.get(cfg.id, {}).get("clean_labels") != row["clean_labels"]:
        configs_out.write(row)
        config_rows[cfg.id] = row
    subset = images if attacked == len(images) else ImageSet(images.x[:attacked], images.ids[:attacked],
                                                              images.labels[:attacked])
    jobs, skipped = build_jobs(classifier, subset, clean[:attacked], agree[:attacked], acfg)
    written = 0

    def emit(rec: dict, job) -> None:
        nonlocal written
        rec = {"config": cfg.id, "model": cfg.model, **rec}
        if save_images and job is not None and rec["l2"] is not None:
            folder = out_dir / "images" / cfg.id
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"{Path(rec['image']).stem}_{rec['attack']}"
            path = save_adversarial(folder, stem, images.x[job.meta["index"]], job.outcome.x_adv)
            rec["adv_path"] = str(path.relative_to(out_dir))
        results.write(rec)
        done.add(job_key(rec))
        written += 1
        if hooks.record:
            hooks.record(rec)

    for rec in skipped:
        if (cfg.id, rec["image"], rec["attack"]) not in done:
            emit(rec, None)
    jobs = [j for j in jobs if (cfg.id, images.ids[j.meta["index"]], j.meta["attack"]) not in done]
    Engine(classifier).run(jobs, on_result=lambda job: emit(finish_job(job, classifier, subset, acfg), job))
    return written


def _certify_model(sweep: Sweep, model: str, runtime, images, attacked: int, certified: set, out: JsonlAppender,
                   hooks) -> None:
    """CERTIFY each attacked image once per (model, sigma > 0) of the sweep."""
    from probe.certification import certify_images
    from probe.data import ImageSet
    from probe.oracle import SmoothedClassifier

    images = ImageSet(images.x[:attacked], images.ids[:attacked], images.labels[:attacked])
    settings = sweep.certify
    seed = next((c.seed for c in sweep.configs if c.model == model), 0)
    for sigma in sorted({c.sigma for c in sweep.configs if c.model == model and c.sigma > 0}):
        key = (model, sigma, settings.n0, settings.n, settings.alpha, seed)
        if all((*key, image) in certified for image in images.ids):
            continue
        if hooks.message:
            hooks.message(f"certifying {len(images)} images at sigma={sigma:g} (n0={settings.n0}, n={settings.n})")
        records = certify_images(SmoothedClassifier(runtime, sigma, settings.n), images, settings.n0, settings.n,
                                 settings.alpha, seed)
        for rec in records:
            if (*key, rec["image"]) not in certified:
                out.write({"model": model, "sigma": sigma, "n0": settings.n0, "n": settings.n,
                           "alpha": settings.alpha, "seed": seed, **rec})
                certified.add((*key, rec["image"]))


# --------------------------------------------------------------------------- reading back


def load_results_dir(folder: Path) -> tuple[list[dict], dict[str, dict], list[dict], dict]:
    """(results, configs by id, certification records, sweep.json) of a sweep or attack folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ProbeError(f"no such results folder: {folder}")
    path = folder / RESULTS
    if not path.is_file():
        raise ProbeError(f"{folder} holds no {RESULTS}: run `probe sweep CONFIG --out {folder}` first")
    records = read_jsonl(path)
    if not records:
        raise ProbeError(f"{path} holds no results")
    configs = {r["config"]: r for r in read_jsonl(folder / CONFIGS)}
    status = {}
    if (folder / SWEEP).is_file():
        try:
            status = json.loads((folder / SWEEP).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            status = {}
    return records, configs, read_jsonl(folder / CERTIFY), status


def record_config(record: dict) -> str:
    """The configuration id of a record (records of `probe attack` get one from their parameters)."""
    if record.get("config"):
        return record["config"]
    return config_id({k: record.get(k) for k in ("model", "sigma", "n", "pa", "budget", "norm", "seed")})


def summarize_sweep(records: list[dict], configs: dict[str, dict] | None = None) -> list[dict]:
    """One row per (configuration, attack): success rate, L2/Linf of successes, queries, accuracy."""
    from probe.audit import defended_accuracy, summarize

    configs = configs or {}
    groups: dict[str, list[dict]] = {}
    for rec in records:
        groups.setdefault(record_config(rec), []).append(rec)
    rows = []
    for cid, recs in groups.items():
        meta = configs.get(cid, {})
        first = recs[0]
        accuracy = meta.get("clean_accuracy", defended_accuracy(recs))
        sigma = first["sigma"]
        label = meta.get("label") or (
            f"{first.get('model') or ''} " + ("no RS" if sigma == 0 else f"sigma={sigma:g} n={first['n']} P_a={first['pa']:g}")
            + f" budget={first['budget']}"
        ).strip()
        for attack, row in summarize(recs).items():
            rows.append(
                {
                    "config": cid,
                    "label": label,
                    "model": first.get("model"),
                    "sigma": sigma,
                    "n": first["n"],
                    "pa": first["pa"],
                    "budget": first["budget"],
                    "attack": attack,
                    **{k: v for k, v in row.items() if k != "defended_accuracy"},
                    "successes": sum(1 for r in recs if r["attack"] == attack and r["success"]),
                    "defended_accuracy": accuracy,
                    "plain_accuracy": meta.get("plain_accuracy"),
                }
            )
    return rows


def strip_timing(record: dict) -> dict:
    """A record without its timing fields (to compare runs)."""
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}
