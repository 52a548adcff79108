"""Running a sweep, resumable: every configuration's jobs through one engine.

Output folder (see :mod:`probe.runs.results` for the files):


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
image's and the attack's identity, :mod:`probe.runs.streams`), so a resumed sweep
gives the same records as one run straight through, and a sweep on Ray
(:mod:`probe.runs.ray_sweep`) the same records as a local one.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from probe.errors import ProbeError
from probe.runs.results import (
    CERTIFY,
    CONFIGS,
    RESULTS,
    SWEEP,
    ResultsWriter,
    job_key,
    locked,
    prepare_dir,
    read_jsonl,
    save_record_array,
    save_record_image,
    write_json,
)
from probe.runs.sweep_file import Sweep, SweepConfig


#: the distribution's name on the package index (pyproject's ``[project] name``); the import is ``probe``
DISTRIBUTION = "onnx-probe"


def versions() -> dict[str, str]:
    """Versions of probe (its installed distribution's; "unknown" when run from a source tree
    that is not installed) and of the software it runs on."""
    from importlib import metadata

    import onnxruntime
    import scipy

    try:
        own = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        own = "unknown"
    return {
        "probe": own,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
    }


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
    replaced: int = 0  # Ray sweeps: workers replaced after they died
    duplicates: int = 0  # Ray sweeps: records received twice (a unit rerun) and not written again


def load_sweep_images(sweep: Sweep, runtime, model: str):
    from probe.data import load_images
    from probe.zoo import default_images

    sources = sweep.images
    if not sources:
        folder = default_images(model)
        if folder is None:
            raise ProbeError(f"model {model} has no bundled sample images: give 'images' in the sweep file")
        sources = [str(folder)]
    return load_images(
        sources, runtime.spec.size, labels_csv=sweep.labels, limit=sweep.limit, num_classes=runtime.num_classes
    )


def run_sweep(sweep: Sweep, out_dir: Path, hooks: SweepHooks | None = None) -> SweepOutcome:
    """Run (or resume) every job of the sweep, appending records to ``out_dir``.

    KeyboardInterrupt propagates after the files are closed: every finished job
    is already on disk, and the next run resumes from there.
    """
    with locked(out_dir):  # one run per folder: a second one fails naming the first's PID
        return _run_sweep(sweep, out_dir, hooks)


def read_progress(out_dir: Path) -> tuple[set, dict[str, dict], set]:
    """What a folder (created) already holds: the job keys of its records, its configs.jsonl
    rows by configuration id, and the keys of its certify.jsonl rows."""
    prepare_dir(out_dir)
    done = {job_key(r) for r in read_jsonl(out_dir / RESULTS)}
    config_rows = {r["config"]: r for r in read_jsonl(out_dir / CONFIGS)}
    certified = {
        (r["model"], r["sigma"], r["n0"], r["n"], r["alpha"], r["seed"], r["image"])
        for r in read_jsonl(out_dir / CERTIFY)
    }
    return done, config_rows, certified


def _run_sweep(sweep: Sweep, out_dir: Path, hooks: SweepHooks | None) -> SweepOutcome:
    hooks = hooks or SweepHooks()
    done, config_rows, certified = read_progress(out_dir)
    outcome = SweepOutcome()
    started = time.perf_counter()
    status = start_status(sweep)
    write_status(out_dir, status)
    results = ResultsWriter(out_dir / RESULTS)
    configs_out = ResultsWriter(out_dir / CONFIGS)
    cert_out = ResultsWriter(out_dir / CERTIFY) if sweep.certify else None
    position = 0
    try:
        for model in sweep.models:
            runtime = open_runtime(model, sweep)
            status["providers"][model] = list(runtime.info.providers)
            images = load_sweep_images(sweep, runtime, model)
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
                        cfg,
                        runtime,
                        images=images,
                        attacked=attacked,
                        done=done,
                        results=results,
                        configs_out=configs_out,
                        config_rows=config_rows,
                        hooks=hooks,
                        out_dir=out_dir,
                        save_images=sweep.save_images,
                    )
                outcome.configs += 1
                if hooks.finish:
                    hooks.finish(cfg)
            if sweep.certify is not None:
                _certify_model(
                    sweep,
                    model,
                    runtime=runtime,
                    images=images,
                    attacked=attacked,
                    certified=certified,
                    out=cert_out,
                    hooks=hooks,
                )
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
        write_status(out_dir, status)
    return outcome


def start_status(sweep: Sweep) -> dict:
    """sweep.json of a run that starts: the sweep's configurations, software versions, status."""
    return {
        "name": sweep.name,
        "source": sweep.source,
        "configs": [
            {"config": c.id, "label": c.label, **c.identity(), "attacks": list(c.attacks)} for c in sweep.configs
        ],
        "versions": versions(),
        "providers": {},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "status": "running",
    }


def write_status(out_dir: Path, status: dict) -> None:
    write_json(out_dir / SWEEP, status)


def open_runtime(model: str, sweep: Sweep, *, device: str | None = None, threads: int = 0, batch_size=None):
    """The model's runtime: a local ONNX Runtime session, or (``sweep.endpoint``'s URL, or a model
    that is a URL) a :class:`~probe.remote.client.RemoteRuntime` (``batch_size`` points a request)."""
    from probe.runtime import Runtime
    from probe.zoo import resolve_model

    batch, remote = batch_size or sweep.batch_size, sweep.endpoint
    if remote.url is not None or model.startswith(("http://", "https://")):
        from probe.remote.open import open_remote

        return open_remote(remote.options(model, batch), {})
    return Runtime(resolve_model(model), batch_size=batch, device=device or sweep.device, threads=threads)


def attack_config(cfg: SweepConfig):
    """The :class:`~probe.runs.settings.RunSettings` of every job of a configuration."""
    return cfg.settings


def config_row(cfg: SweepConfig, images, *, attacked: int, clean: list, plain: np.ndarray) -> dict:
    """configs.jsonl's row of a configuration, from the clean labels (``clean``, one
    :class:`~probe.oracle.CleanLabel` per image) and the plain model's labels ``plain`` (N,)."""
    labels = np.array([c.label for c in clean])
    agree = np.array([np.nan if c.accuracy is None else c.accuracy for c in clean])
    labelled = images.labels >= 0
    return {
        "config": cfg.id,
        "label": cfg.label,
        **cfg.identity(),
        "attacks": list(cfg.attacks),
        "images": len(images),
        "attacked": attacked,
        "labelled": int(labelled.sum()),
        "clean_accuracy": float(np.mean(agree[labelled])) if labelled.any() else None,
        "clean_evaluations": int(sum(c.evaluations for c in clean)),
        "smoothed_label_accuracy": float(np.mean(labels[labelled] == images.labels[labelled]))
        if labelled.any()
        else None,
        "plain_accuracy": float(np.mean(plain[labelled] == images.labels[labelled])) if labelled.any() else None,
        "clean_labels": {images.ids[i]: int(labels[i]) for i in range(len(images))},
    }


def store_record(
    rec: dict, *, cfg: SweepConfig, x_adv: np.ndarray | None, x0: np.ndarray, out_dir: Path, save_images: bool,
    results: ResultsWriter,
) -> dict:  # fmt: skip
    """Write one job's record (its float32 adversarial ``x_adv`` (3, H, W) saved beside it, and
    its PNGs when ``save_images``); returns the record as written."""
    rec = {"config": cfg.id, "model": cfg.model, **rec}
    if x_adv is not None and rec["l2"] is not None:
        rec["adv_file"] = str(save_record_array(out_dir, rec, x_adv))
        if save_images:
            path = save_record_image(out_dir / "images" / cfg.id, rec, x0, x_adv)
            rec["adv_path"] = str(path.relative_to(out_dir))
    results.write(rec)
    return rec


def certify_key(sweep: Sweep, model: str, sigma: float) -> tuple:
    """(model, sigma, n0, n, alpha, seed): with the image, the key of a certify.jsonl row."""
    settings = sweep.certify
    seed = next((c.seed for c in sweep.configs if c.model == model), 0)
    return (model, sigma, settings.n0, settings.n, settings.alpha, seed)


def certify_sigmas(sweep: Sweep, model: str) -> list[float]:
    """The sigmas > 0 of a model's configurations (CERTIFY runs once per model and sigma)."""
    return sorted({c.sigma for c in sweep.configs if c.model == model and c.sigma > 0})


def certify_row(key: tuple, rec: dict) -> dict:
    model, sigma, n0, n, alpha, seed = key
    return {"model": model, "sigma": sigma, "n0": n0, "n": n, "alpha": alpha, "seed": seed, **rec}


def _run_config(
    cfg, runtime, *, images, attacked, done, results, configs_out, config_rows, hooks, out_dir, save_images
) -> int:
    """One configuration: clean accuracy on all images (configs.jsonl), then the unfinished jobs
    of the first ``attacked`` images in one engine."""
    from probe.runs.campaign import attack_images, clean_labels
    from probe.smoothing import SmoothedClassifier

    classifier = SmoothedClassifier(runtime, cfg.sigma, cfg.n, early_stop=not cfg.full_votes)
    acfg = attack_config(cfg)
    # as probe.runs.campaign.attack_images: the label to move away from (g_sigma) and, per image, the
    # fraction of fresh plurality votes of g_{sigma,n} that give the true label
    clean = clean_labels(classifier, images, seed=cfg.seed, evaluations=cfg.p_adv_samples)
    row = config_row(cfg, images, attacked=attacked, clean=clean, plain=runtime.labels(images.x))
    if config_rows.get(cfg.id, {}).get("clean_labels") != row["clean_labels"]:
        configs_out.write(row)
        config_rows[cfg.id] = row
    subset = images if attacked == len(images) else images.head(attacked)
    written = 0

    def emit(rec: dict, job) -> None:
        nonlocal written
        x_adv = None if job is None or job.outcome is None else job.outcome.x_adv
        x0 = images.x[job.meta["index"]] if job is not None else None
        rec = store_record(
            rec, cfg=cfg, x_adv=x_adv, x0=x0, out_dir=out_dir, save_images=save_images, results=results
        )
        done.add(job_key(rec))
        written += 1
        if hooks.record:
            hooks.record(rec)

    attack_images(
        classifier,
        subset,
        acfg,
        on_record=emit,
        clean=clean[:attacked],
        skip=lambda image, attack: (cfg.id, image, attack) in done,
    )
    return written


def _certify_model(
    sweep: Sweep, model: str, *, runtime, images, attacked: int, certified: set, out: ResultsWriter, hooks
) -> None:
    """CERTIFY each attacked image once per (model, sigma > 0) of the sweep."""
    from probe.runs.certify import certify_images
    from probe.smoothing import SmoothedClassifier

    images = images.head(attacked)
    settings = sweep.certify
    for sigma in certify_sigmas(sweep, model):
        key = certify_key(sweep, model, sigma)
        seed = key[-1]
        if all((*key, image) in certified for image in images.ids):
            continue
        if hooks.message:
            hooks.message(f"certifying {len(images)} images at sigma={sigma:g} (n0={settings.n0}, n={settings.n})")
        records = certify_images(
            SmoothedClassifier(runtime, sigma, settings.n),
            images,
            n0=settings.n0,
            n=settings.n,
            alpha=settings.alpha,
            seed=seed,
        )
        for rec in records:
            if (*key, rec["image"]) not in certified:
                out.write(certify_row(key, rec))
                certified.add((*key, rec["image"]))
