"""Sweeps on Ray: a sweep's jobs run by Ray actors, their records streamed into one folder.

``probe sweep FILE --out DIR --ray auto|ADDRESS``. The driver (this process) plans the
sweep as :mod:`probe.runs.sweep` does, cuts every configuration's images into one *unit*
per worker, and hands units to the workers as they free up:

* a worker (:class:`probe.runs.ray_worker.SweepWorker`, a Ray actor) holds one ONNX
  Runtime session per model (one worker per GPU of the cluster, or per ``cpus`` CPU cores
  where it has none) and runs a unit's jobs through one engine, so that its model batches
  stay full, as many at once as fit in its share of its node's memory; it streams each
  record back as its job finishes (a Ray generator);
* the driver writes the records into the folder's ``results.jsonl`` as they arrive (the
  one store: resumable, jobs already there are not run again), a configuration's row of
  ``configs.jsonl`` once all its units have sent their clean labels, and
  ``certify.jsonl`` rows per CERTIFY unit;
* a worker that dies (its process killed, its node lost) is replaced by a fresh one, and
  its unit runs again there without the jobs already written; a record is written once per
  (configuration, image, attack) even if a job ran twice.

Every random stream is keyed by the image's and the attack's identity
(:mod:`probe.runs.streams`), never by which worker runs it or beside what, so the records
are those of a local run (but for ``seconds``). Ray is an optional extra:
``pip install "onnx-probe[ray]"``.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe.data import ImageSet
from probe.errors import ProbeError
from probe.interrupt import checkpoint
from probe.runs.ray_worker import CERTIFIED, CLEAN, SweepWorker, Unit, import_ray
from probe.runs.results import CERTIFY, CONFIGS, RESULTS, ResultsWriter, locked
from probe.runs.sweep import SweepHooks, SweepOutcome, certify_key, certify_row, certify_sigmas
from probe.runs.sweep import config_row, load_sweep_images, open_runtime, read_progress, start_status, store_record
from probe.runs.sweep import write_status
from probe.runs.sweep_file import Sweep, SweepConfig
from probe.validate import check_int

MAX_FAILURES = 3  # times one unit may lose its worker before the sweep gives up


def _split(indices: list[int], parts: int) -> list[list[int]]:
    return [list(map(int, p)) for p in np.array_split(np.asarray(indices, dtype=int), parts)]


@dataclass
class _Plan:  # what one configuration still waits for
    cfg: SweepConfig
    units: int = 0
    clean: dict[int, tuple] = field(default_factory=dict)  # image position -> (CleanLabel, plain label)


class RaySweep:
    """A sweep run on Ray (see the module's docstring); :meth:`run` runs or resumes it.

    address : "auto" (the running cluster if there is one, else a local one started here and
        shut down at the end) or a cluster's address; ignored when Ray is already initialized.
    cpus : CPU cores per worker on a cluster without GPUs (one worker per GPU otherwise).
    workers : at most this many workers (None: as many as the cluster's resources allow).
    """

    def __init__(
        self, sweep: Sweep, out_dir: Path, hooks: SweepHooks | None = None, *, address: str = "auto",
        cpus: int = 1, workers: int | None = None,
    ) -> None:  # fmt: skip
        self.sweep, self.out_dir, self.hooks = sweep, Path(out_dir), hooks or SweepHooks()
        self.address = address
        self.cpus = check_int("--ray-cpus", cpus, 1)
        self.max_workers = None if workers is None else check_int("workers", workers, 1)
        self.outcome = SweepOutcome()
        self._running: dict[Any, tuple[Any, Unit]] = {}  # generator -> (worker, unit)
        self._workers: list = []

    def running(self) -> list[tuple[Any, Unit]]:
        """(worker handle, unit) of every unit running now."""
        return list(self._running.values())

    def run(self) -> SweepOutcome:
        """Run (or resume) the sweep; KeyboardInterrupt propagates with every record written so far on disk."""
        ray = import_ray()
        started_here = self._connect(ray)
        try:
            with locked(self.out_dir):
                return self._run(ray)
        finally:
            for worker in self._workers:
                ray.kill(worker, no_restart=True)
            if started_here:
                ray.shutdown()

    def _connect(self, ray) -> bool:
        if ray.is_initialized():
            return False
        host, _, port = self.address.removeprefix("ray://").rpartition(":")
        if self.address != "auto" and port.isdigit():  # Ray would retry an unreachable address for minutes
            try:
                socket.create_connection((host, int(port)), timeout=10).close()
            except OSError as exc:
                raise ProbeError(f"cannot reach the Ray cluster at {self.address}: {exc.strerror or exc}") from None
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            ray.init(
                address=None if self.address == "auto" else self.address,
                logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False,
            )  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ProbeError(f"cannot start or reach a Ray cluster at {self.address}: {exc}") from None
        finally:  # Ray's own SIGTERM handler aborts the process: the run's handlers stay (probe.interrupt)
            if threading.current_thread() is threading.main_thread():
                for sig, handler in handlers.items():
                    signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        return True

    def _worker_options(self, ray) -> tuple[int, dict, int]:
        """(how many workers, their actor options, their ONNX Runtime threads)."""
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        if not gpus and cpus < self.cpus:
            raise ProbeError(f"the Ray cluster has {cpus} CPUs: too few for workers of --ray-cpus {self.cpus}")
        count, options, threads = (gpus, {"num_gpus": 1, "num_cpus": 1}, 0) if gpus else (
            cpus // self.cpus, {"num_cpus": self.cpus}, self.cpus)  # fmt: skip
        return min(count, self.max_workers or count), options, threads

    def _new_worker(self):
        return self._actor.options(**self._options, max_restarts=0, max_task_retries=0).remote(
            sweep=replace(self.sweep, configs=[], source={}), threads=self._threads
        )

    def _run(self, ray) -> SweepOutcome:
        self.done, self.config_rows, self.certified = read_progress(self.out_dir)
        count, self._options, self._threads = self._worker_options(ray)
        self._actor = ray.remote(SweepWorker)
        started = time.perf_counter()
        self.status = start_status(self.sweep)
        self.status["ray"] = {"workers": count, "worker_resources": self._options, "replaced": 0}
        write_status(self.out_dir, self.status)
        self.results = ResultsWriter(self.out_dir / RESULTS)
        self.configs_out = ResultsWriter(self.out_dir / CONFIGS)
        self.cert_out = ResultsWriter(self.out_dir / CERTIFY) if self.sweep.certify else None
        try:
            self._workers = [self._new_worker() for _ in range(count)]
            todo = self._plan(ray, count)
            self._loop(ray, todo)
            self.status["status"] = "finished"
        except KeyboardInterrupt:
            self.status["status"] = "interrupted"
            raise
        finally:
            for writer in filter(None, (self.results, self.configs_out, self.cert_out)):
                writer.close()
            self.outcome.seconds = time.perf_counter() - started
            self.status.update(seconds=round(self.outcome.seconds, 2), finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
            self.status["ray"]["replaced"] = self.outcome.replaced
            write_status(self.out_dir, self.status)
        return self.outcome

    # ----------------------------------------------------------------------- planning

    def _plan(self, ray, parts: int) -> deque:
        """Every unit to run, in the local sweep's order; images loaded here and shared through Ray."""
        self._images: dict[str, tuple[Any, ImageSet]] = {}
        self._plans: dict[str, _Plan] = {}
        units: deque = deque()
        position = 0
        for model in self.sweep.models:
            runtime = open_runtime(model, self.sweep, device="cpu", threads=1, batch_size=1)  # the spec only
            images = load_sweep_images(self.sweep, runtime, model)
            for path, why in images.skipped if self.hooks.message else []:
                self.hooks.message(f"skipped unreadable image {path}: {why}")
            self._images[model] = (ray.put(images), images)
            attacked = min(len(images), self.sweep.attack_limit or len(images))
            shares = list(zip(_split(list(range(attacked)), parts), _split(list(range(attacked, len(images))), parts)))
            for cfg in (c for c in self.sweep.configs if c.model == model):
                position += 1
                keys = [(cfg.id, images.ids[i], a) for i in range(attacked) for a in cfg.attacks]
                left = sum(k not in self.done for k in keys)
                self.outcome.skipped_jobs += len(keys) - left
                if self.hooks.start:
                    self.hooks.start(cfg, position, len(self.sweep.configs), left, len(keys) - left)
                plan = self._plans[cfg.id] = _Plan(cfg)
                for unit in (Unit(model, tuple(hit + rest), cfg, attacked=len(hit)) for hit, rest in shares):
                    jobs_left = self._skip(unit) != self._skip(unit, done_only=False)
                    if unit.indices and (cfg.id not in self.config_rows or jobs_left):
                        units.append(unit)
                        plan.units += 1
                if plan.units == 0:
                    self._finish(plan)
            if self.sweep.certify is not None:
                head = images.ids[:attacked]
                for sigma in certify_sigmas(self.sweep, model):
                    key = certify_key(self.sweep, model, sigma)
                    missing = [i for i, image in enumerate(head) if (*key, image) not in self.certified]
                    units.extend(Unit(model, tuple(p), certify=key) for p in _split(missing, parts) if p)
        return units

    def _skip(self, unit: Unit, *, done_only: bool = True) -> frozenset:
        """The unit's (image id, attack) pairs already in results.jsonl (all of them: ``done_only=False``)."""
        ids = self._images[unit.model][1].ids
        pairs = ((ids[i], a) for i in unit.indices[: unit.attacked] for a in unit.cfg.attacks)
        return frozenset(p for p in pairs if not done_only or (unit.cfg.id, *p) in self.done)

    # ----------------------------------------------------------------------- running

    def _loop(self, ray, todo: deque) -> None:
        idle = list(self._workers)
        failures: dict[tuple, int] = {}  # (configuration, images, certify key) -> times its worker died
        while todo or self._running:
            while idle and todo:
                unit = todo.popleft()
                if unit.cfg is not None:
                    unit = replace(unit, skip=self._skip(unit))
                worker = idle.pop()
                gen = worker.run.remote(self._images[unit.model][0], unit)
                self._running[gen] = (worker, unit)
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=0.5)
            checkpoint()  # a deferred Ctrl-C or SIGTERM stops here
            for gen in ready:
                worker, unit = self._running[gen]
                try:
                    item = ray.get(next(gen))
                except StopIteration:
                    del self._running[gen]
                    idle.append(worker)
                    self._unit_done(unit)
                    continue
                except ray.exceptions.RayActorError as exc:  # the worker died: a fresh one reruns the unit
                    del self._running[gen]
                    which = (unit.cfg and unit.cfg.id, unit.indices, unit.certify)
                    failures[which] = failures.get(which, 0) + 1
                    if failures[which] >= MAX_FAILURES:
                        raise ProbeError(f"a sweep unit lost its Ray worker {MAX_FAILURES} times: {exc}") from None
                    ray.kill(worker, no_restart=True)
                    self._workers[self._workers.index(worker)] = fresh = self._new_worker()
                    idle.append(fresh)
                    todo.appendleft(unit)
                    self.outcome.replaced += 1
                    if self.hooks.message:
                        self.hooks.message(f"a Ray worker died ({type(exc).__name__}); its unit runs again")
                    continue
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, KeyboardInterrupt):
                        raise KeyboardInterrupt from None
                    failed = f"a sweep worker failed: {type(cause).__name__}: {cause}"
                    raise ProbeError(str(cause) if isinstance(cause, ProbeError) else failed) from None
                self._receive(unit, item)

    def _receive(self, unit: Unit, item: tuple) -> None:
        if item[0] == CERTIFIED:
            for rec in (r for r in item[1] if (*unit.certify, r["image"]) not in self.certified):
                self.cert_out.write(certify_row(unit.certify, rec))
                self.certified.add((*unit.certify, rec["image"]))
            return
        cfg = unit.cfg
        if item[0] == CLEAN:
            _, indices, clean, plain, providers = item
            self.status["providers"].setdefault(cfg.model, providers)
            plan = self._plans[cfg.id]
            plan.clean.update({i: (c, int(p)) for i, c, p in zip(indices, clean, plain)})
            images = self._images[cfg.model][1]
            if len(plan.clean) == len(images):
                attacked = min(len(images), self.sweep.attack_limit or len(images))
                row = config_row(
                    cfg, images, attacked=attacked, clean=[plan.clean[i][0] for i in range(len(images))],
                    plain=np.array([plan.clean[i][1] for i in range(len(images))]),
                )  # fmt: skip
                if self.config_rows.get(cfg.id, {}).get("clean_labels") != row["clean_labels"]:
                    self.configs_out.write(row)
                    self.config_rows[cfg.id] = row
            return
        _, rec, x_adv = item
        key = (cfg.id, rec["image"], rec["attack"])
        if key in self.done:  # a rerun unit's job that was already written
            self.outcome.duplicates += 1
            return
        images = self._images[cfg.model][1]
        x0 = images.x[images.ids.index(rec["image"])]
        rec = store_record(
            rec, cfg=cfg, x_adv=x_adv, x0=x0, out_dir=self.out_dir, save_images=self.sweep.save_images,
            results=self.results,
        )  # fmt: skip
        self.done.add(key)
        self.outcome.written += 1
        if self.hooks.record:
            self.hooks.record(rec)

    def _unit_done(self, unit: Unit) -> None:
        plan = self._plans[unit.cfg.id] if unit.cfg is not None else None
        if plan is not None:
            plan.units -= 1
            if plan.units == 0:
                self._finish(plan)

    def _finish(self, plan: _Plan) -> None:
        self.outcome.configs += 1
        if self.hooks.finish:
            self.hooks.finish(plan.cfg)


def run_ray_sweep(sweep: Sweep, out_dir: Path, hooks: SweepHooks | None = None, **options) -> SweepOutcome:
    """Run (or resume) a sweep on Ray; ``options``: those of :class:`RaySweep` (address, cpus, workers)."""
    return RaySweep(sweep, out_dir, hooks, **options).run()
