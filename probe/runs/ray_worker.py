"""The Ray side of a sweep on Ray (:mod:`probe.runs.ray_sweep` is the driver's): the actor
that runs units of a sweep's jobs, and what it sends back.

A worker (:class:`SweepWorker`) holds one ONNX Runtime session per model, opened once, and
runs each unit's jobs through one engine, so that its model batches stay full. Its engine
keeps as many jobs at once as fit in its share of its node's memory
(:func:`probe.engine.host_share`: the larger of its shares of the node's CPUs and GPUs), so
that the workers of one node do not each claim the whole node. Ray is an optional extra:
``pip install "onnx-probe[ray]"``.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from probe.data import ImageSet
from probe.engine import auto_max_jobs, host_share
from probe.errors import ProbeError
from probe.runs.sweep import attack_config, open_runtime
from probe.runs.sweep_file import Sweep, SweepConfig

INSTALL = 'pip install "onnx-probe[ray]"'
# what a worker's unit streams back: its kind, then its fields (see SweepWorker.run)
CLEAN, RECORD, CERTIFIED, END, ERROR = "clean", "record", "certified", "end", "error"


def import_ray():
    """The ``ray`` module, or a ProbeError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ProbeError(f"--ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


@dataclass(frozen=True)
class Unit:
    """One worker's share of a configuration: the clean labels of the images ``indices``
    (positions in the model's image set) and the attacks on the first ``attacked`` of
    them, but for the (image id, attack) pairs in ``skip``; or, with ``certify`` set (the
    key of :func:`probe.runs.sweep.certify_key`), CERTIFY of ``indices``."""

    model: str
    indices: tuple[int, ...]
    cfg: SweepConfig | None = None
    attacked: int = 0
    skip: frozenset = frozenset()
    certify: tuple | None = None


class SweepWorker:
    """The Ray actor: one ONNX Runtime session per model (opened once), running units.

    sweep : the sweep (its batch size, device, endpoint); threads : ONNX Runtime intra-op threads (0: its default).
    ``share``: its share of its node (:func:`probe.engine.host_share` of the resources Ray gave
    it), by which its engines' ``max_jobs`` is set (:func:`probe.engine.auto_max_jobs`).
    """

    def __init__(self, *, sweep: Sweep, threads: int) -> None:
        ray = import_ray()  # its share of the node's memory: the larger of its CPU and GPU shares
        self.sweep, self.threads, ctx = sweep, threads, ray.get_runtime_context()
        node = next((n["Resources"] for n in ray.nodes() if n["NodeID"] == ctx.get_node_id()), {})
        self.share = host_share(ctx.get_assigned_resources(), node)
        self._runtimes: dict[str, Any] = {}

    def max_jobs(self, d: int) -> int:
        """Jobs its engine runs at once on inputs of ``d`` values: as many as fit in its share."""
        return auto_max_jobs(d, share=self.share)

    def _runtime(self, model: str):
        if model not in self._runtimes:
            self._runtimes[model] = open_runtime(model, self.sweep, threads=self.threads)
        return self._runtimes[model]

    def run(self, images: ImageSet, unit: Unit) -> Iterator[tuple]:
        """Stream a unit's results: ``("clean", indices, clean labels, plain labels, providers)``
        first, then ``("record", record, x_adv or None)`` per job as it ends; a CERTIFY unit
        streams one ``("certified", records)``."""
        from probe.runs.campaign import attack_images, clean_labels
        from probe.smoothing import SmoothedClassifier

        runtime = self._runtime(unit.model)
        pick = list(unit.indices)
        subset = ImageSet(images.x[pick], [images.ids[i] for i in pick], images.labels[pick])
        if unit.certify is not None:
            from probe.runs.certify import certify_images

            _, sigma, n0, n, alpha, seed = unit.certify
            classifier = SmoothedClassifier(runtime, sigma, n)
            yield CERTIFIED, certify_images(classifier, subset, n0=n0, n=n, alpha=alpha, seed=seed)
            return
        cfg = unit.cfg
        classifier = SmoothedClassifier(runtime, cfg.sigma, cfg.n, early_stop=not cfg.full_votes)
        clean = clean_labels(classifier, subset, seed=cfg.seed, evaluations=cfg.p_adv_samples)
        yield CLEAN, unit.indices, clean, runtime.labels(subset.x), list(runtime.info.providers)
        if unit.attacked == 0:
            return
        answers: queue.Queue = queue.Queue()

        def emit(rec: dict, job) -> None:
            answers.put((RECORD, rec, None if job is None or job.outcome is None else job.outcome.x_adv))

        def work() -> None:  # the engine runs here; the generator yields what it sends
            try:
                attack_images(
                    classifier, subset.head(unit.attacked), attack_config(cfg), on_record=emit,
                    clean=clean[: unit.attacked], skip=lambda image, attack: (image, attack) in unit.skip,
                    max_jobs=self.max_jobs(int(np.prod(subset.x.shape[1:]))),
                )  # fmt: skip
                answers.put((END,))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the generator
                answers.put((ERROR, exc))

        threading.Thread(target=work, daemon=True, name="probe-unit").start()
        while (item := answers.get())[0] != END:
            if item[0] == ERROR:
                raise item[1]
            yield item
