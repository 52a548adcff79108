"""Throughput benchmarks of the smoothed oracle and of the engine (``probe bench``, ``benchmarks/``).

Everything here measures *ratios inside one process*: the two sides of a
comparison run interleaved, several times, and the median of the per-round
ratios is reported, so that load from other processes on a shared machine hits
both sides alike.

* :func:`oracle_overhead`: model inferences per second through
  ``SmoothedClassifier.votes`` (noise, model and vote) against the bare ONNX
  Runtime session of the same file (same providers, threads, batch size and
  number of rows, inputs made once), and the split of the oracle's time between
  noise, model (inside ``session.run``) and the rest.
* :func:`engine_batching`: the mean batch the model sees while the engine runs
  several attacks on several images at once, and the wall time per query
  against running the same jobs one after another.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from probe.runs.settings import DEFAULT_ATTACKS
from probe.runtime import Runtime
from probe.smoothing import SmoothedClassifier


@dataclass
class OverheadResult:
    model: str
    n: int
    sigma: float
    batch_size: int
    threads: int
    providers: list[str]
    rows_per_round: int
    rounds: int
    bare_ips: float  # inferences per second, bare session
    oracle_ips: float  # inferences per second through SmoothedClassifier.votes
    ratio: float  # median over rounds of oracle/bare throughput
    ratio_min: float
    ratio_max: float
    noise_share: float  # of the oracle's wall time
    model_share: float
    rest_share: float
    noise_ns_per_value: float
    in_graph: bool

    def as_dict(self) -> dict:
        return asdict(self)


def bare_session(runtime: Runtime, threads: int = 0):
    """An ONNX Runtime session of the raw model file, with the runtime's providers and threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    providers = list(runtime.info.providers)
    return ort.InferenceSession(str(runtime.info.path), options, providers=providers)


def _model_input(runtime: Runtime, canonical: np.ndarray) -> np.ndarray:
    """Map canonical images to the raw model's own convention (for the bare session)."""
    spec = runtime.spec
    x = canonical
    if spec.channels == "BGR":
        x = x[:, ::-1]
    x = (x * np.float32(spec.scale) - np.asarray(spec.mean, np.float32)[:, None, None]) / np.asarray(
        spec.std, np.float32
    )[:, None, None]
    if spec.layout == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def oracle_overhead(
    runtime: Runtime,
    n: int,
    *,
    sigma: float = 0.25,
    seconds: float = 20.0,
    min_rounds: int = 3,
    max_rounds: int = 50,
    threads: int = 0,
    seed: int = 0,
) -> OverheadResult:
    """Smoothed-oracle against bare-session throughput on the same rows (see module doc).

    One round asks ``q`` queries of one point each (separate requests, as the engine
    sends them), ``q * n`` rows, about four model batches; the bare session runs the
    same number of rows in the same chunks. Rounds alternate which side goes first.
    """
    import onnxruntime as ort  # noqa: F401  (fail early when missing)

    rng = np.random.default_rng(seed)
    batch = runtime.batch_size
    q = max(1, -(-4 * batch // n))
    rows = q * n
    shape = runtime.input_shape
    points = rng.random((q, *shape), dtype=np.float32) * np.float32(0.8) + np.float32(0.1)
    session = bare_session(runtime, threads)
    input_name = session.get_inputs()[0].name
    fixed = runtime.info.fixed_batch
    noisy = np.clip(points[np.arange(min(batch, rows)) % q] + np.float32(sigma) * rng.standard_normal(
        (min(batch, rows), *shape), dtype=np.float32
    ), 0, 1)
    bare_input = _model_input(runtime, noisy)
    chunks = [min(batch, rows - s) for s in range(0, rows, batch)]
    clf = SmoothedClassifier(runtime, sigma, n)

    def run_bare() -> float:
        start = time.perf_counter()
        for k in chunks:
            feed = bare_input[:k] if not fixed else bare_input[:fixed]
            session.run(None, {input_name: feed})
        return time.perf_counter() - start

    streams = [np.random.default_rng([seed, i]) for i in range(q)]

    def run_oracle() -> tuple[float, float, float]:
        noise0, model0 = clf.noise_seconds, runtime.session_seconds
        start = time.perf_counter()
        clf.votes([(points[i : i + 1], streams[i]) for i in range(q)])
        total = time.perf_counter() - start
        return total, clf.noise_seconds - noise0, runtime.session_seconds - model0

    run_bare()  # warm up both (allocations, session arenas)
    run_oracle()
    t0 = time.perf_counter()
    run_bare()
    run_oracle()
    pair = time.perf_counter() - t0
    rounds = int(min(max_rounds, max(min_rounds, seconds / max(pair, 1e-9))))
    bare_t, oracle_t, ratios, noise_t, model_t = [], [], [], [], []
    for r in range(rounds):
        if r % 2 == 0:
            b = run_bare()
            o, nz, md = run_oracle()
        else:
            o, nz, md = run_oracle()
            b = run_bare()
        bare_t.append(b)
        oracle_t.append(o)
        noise_t.append(nz)
        model_t.append(md)
        ratios.append(b / o)
    o_total = sum(oracle_t)
    noise_share = sum(noise_t) / o_total
    model_share = sum(model_t) / o_total
    values = rows * int(np.prod(shape))
    return OverheadResult(
        model=Path(runtime.info.path).name,
        n=n,
        sigma=sigma,
        batch_size=batch,
        threads=threads,
        providers=list(runtime.info.providers),
        rows_per_round=rows,
        rounds=rounds,
        bare_ips=rows / statistics.median(bare_t),
        oracle_ips=rows / statistics.median(oracle_t),
        ratio=statistics.median(ratios),
        ratio_min=min(ratios),
        ratio_max=max(ratios),
        noise_share=noise_share,
        model_share=model_share,
        rest_share=max(0.0, 1.0 - noise_share - model_share),
        noise_ns_per_value=statistics.median(noise_t) / values * 1e9 if not clf.in_graph else float("nan"),
        in_graph=clf.in_graph,
    )


# --------------------------------------------------------------------------- engine batching


@dataclass
class BatchingResult:
    model: str
    attacks: list[str]
    images: int
    budget: int
    sigma: float
    n: int
    batch_size: int
    repeats: int
    calls: int  # of one engine run
    rows: int
    mean_batch: float
    fill: float  # mean batch / batch size
    queries: int
    ms_per_query: float  # median over repeats
    attack_share: float  # of the engine run's wall time: inside the attacks' generators
    oracle_share: float  # inside SmoothedClassifier.votes (noise + model + vote)
    model_share: float  # inside session.run
    noise_share: float
    engine_share: float  # the rest: engine bookkeeping, Oracle.judge, ...
    sequential_ms_per_query: float | None = None
    sequential_fill: float | None = None
    speedup: float | None = None  # median over repeats of sequential / engine time per query
    speedups: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _timed(gen, acc: list[float]):
    """Proxy of an attack generator that adds the time spent inside it to acc[0]."""
    start = time.perf_counter()
    try:
        points = next(gen)
    except StopIteration as stop:
        acc[0] += time.perf_counter() - start
        return stop.value
    acc[0] += time.perf_counter() - start
    while True:
        answers = yield points
        start = time.perf_counter()
        try:
            points = gen.send(answers)
        except StopIteration as stop:
            acc[0] += time.perf_counter() - start
            return stop.value
        acc[0] += time.perf_counter() - start


def _jobs(classifier: SmoothedClassifier, x: np.ndarray, attacks, budget: int, seed: int, acc=None):
    from probe.attacks import make_attack
    from probe.engine import Job
    from probe.oracle import Criterion, Oracle, majority

    clean = [
        int(majority(v)[0])
        for v in classifier.votes([(x[i : i + 1], np.random.default_rng([seed, i, 0])) for i in range(len(x))])
    ]
    jobs = []
    for i in range(len(x)):
        for a, name in enumerate(attacks):
            attack = make_attack(name, norm="linf" if name == "rays" else "l2")
            gen = attack.run(x[i], budget, np.random.default_rng([seed, i, a, 1]))
            if acc is not None:
                gen = _timed(gen, acc)
            oracle = Oracle(classifier, Criterion(clean[i]), budget=budget, rng=np.random.default_rng([seed, i, a, 2]))
            jobs.append(Job(gen, oracle, {"image": i, "attack": name}))
    return jobs


def engine_batching(
    runtime: Runtime,
    images: np.ndarray,
    *,
    attacks=DEFAULT_ATTACKS,
    budget: int = 500,
    sigma: float = 0.0,
    n: int = 1,
    seed: int = 0,
    sequential: bool = True,
    repeats: int = 1,
) -> BatchingResult:
    """Mean batch fill while the engine runs every attack on every image at once, the split
    of its wall time (attacks' own work, noise, model, the rest) and (``sequential``) its
    wall time per query against running the same jobs one after another: the two runs
    alternate ``repeats`` times and the median ratio is reported."""
    from probe.engine import Engine

    classifier = SmoothedClassifier(runtime, sigma, n)
    engine_ms, seq_ms, speedups = [], [], []
    first = None
    for rep in range(repeats):
        order = ("engine", "sequential") if rep % 2 == 0 else ("sequential", "engine")
        for side in order:
            if side == "sequential" and not sequential:
                continue
            acc = [0.0]
            jobs = _jobs(classifier, images, attacks, budget, seed, acc)
            runtime.reset_counters()
            noise0 = classifier.noise_seconds
            oracle_time = [0.0]
            votes = classifier.votes

            def timed_votes(requests, n=None, _votes=votes, _acc=oracle_time):
                start = time.perf_counter()
                try:
                    return _votes(requests, n)
                finally:
                    _acc[0] += time.perf_counter() - start

            classifier.votes = timed_votes  # type: ignore[method-assign]
            try:
                start = time.perf_counter()
                if side == "engine":
                    Engine(classifier).run(jobs)
                else:
                    for job in jobs:
                        Engine(classifier).run([job])
                seconds = time.perf_counter() - start
            finally:
                del classifier.votes
            queries = sum(job.oracle.queries for job in jobs)
            ms = seconds / max(queries, 1) * 1e3
            if side == "engine":
                engine_ms.append(ms)
                if first is None:
                    first = dict(
                        calls=runtime.calls,
                        rows=runtime.rows,
                        queries=queries,
                        attack_share=acc[0] / seconds,
                        oracle_share=oracle_time[0] / seconds,
                        model_share=runtime.session_seconds / seconds,
                        noise_share=(classifier.noise_seconds - noise0) / seconds,
                        engine_share=max(0.0, 1.0 - (acc[0] + oracle_time[0]) / seconds),
                    )
            else:
                seq_ms.append(ms)
                seq_fill = runtime.rows / max(runtime.calls, 1) / runtime.batch_size
        if sequential:
            speedups.append(seq_ms[-1] / engine_ms[-1])
    assert first is not None
    result = BatchingResult(
        model=Path(runtime.info.path).name,
        attacks=list(attacks),
        images=len(images),
        budget=budget,
        sigma=sigma,
        n=classifier.n,
        batch_size=runtime.batch_size,
        repeats=repeats,
        calls=first["calls"],
        rows=first["rows"],
        mean_batch=first["rows"] / max(first["calls"], 1),
        fill=first["rows"] / max(first["calls"], 1) / runtime.batch_size,
        queries=first["queries"],
        ms_per_query=statistics.median(engine_ms),
        attack_share=first["attack_share"],
        oracle_share=first["oracle_share"],
        model_share=first["model_share"],
        noise_share=first["noise_share"],
        engine_share=first["engine_share"],
    )
    if sequential:
        result.sequential_ms_per_query = statistics.median(seq_ms)
        result.sequential_fill = seq_fill
        result.speedup = statistics.median(speedups)
        result.speedups = speedups
    return result
