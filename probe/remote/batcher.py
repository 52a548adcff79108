"""Concurrent requests merged into full model batches (asyncio, one model thread).

Each request hands its points to :meth:`Batcher.labels` and waits. One worker takes
every request waiting (up to ``max_points`` points, whole requests) and asks the
smoothed classifier once: :meth:`SmoothedClassifier.votes` cuts all their noisy rows
into full model batches. Labels (the plurality of each point's votes, ties to the
lowest class) are all that leave; the votes and the noise stay here.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass
class _Pending:
    points: np.ndarray
    future: asyncio.Future


class Batcher:
    """Merge concurrent label requests into calls of ``classifier.votes``.

    classifier : a :class:`probe.smoothing.SmoothedClassifier` (sigma = 0: the plain model).
    max_points : the most points in one merged call (a request is never split).
    wait : seconds the worker waits for more requests once one arrives (0: none).
    rng : the server's noise stream.
    """

    def __init__(self, classifier, *, max_points: int, wait: float, rng: np.random.Generator) -> None:
        self.classifier = classifier
        self.max_points = max(1, int(max_points))
        self.wait = float(wait)
        self.rng = rng
        self._queue: list[_Pending] = []
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-model")
        self.calls = 0
        self.points = 0
        self.on_call = None  # on_call(points, requests, seconds): metrics

    def start(self) -> None:
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._thread.shutdown(wait=True)

    async def labels(self, points: np.ndarray) -> np.ndarray:
        """g_{sigma,n}'s labels (k,) of points (k, 3, H, W), computed with whatever else is waiting."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(points, future))
        self._ready.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.wait()
            if self.wait > 0:
                await asyncio.sleep(self.wait)
            taken, total = [], 0
            while self._queue and (not taken or total + len(self._queue[0].points) <= self.max_points):
                item = self._queue.pop(0)
                taken.append(item)
                total += len(item.points)
            if not self._queue:
                self._ready.clear()
            start = time.perf_counter()
            try:
                votes = await loop.run_in_executor(self._thread, self._votes, [t.points for t in taken])
            except Exception as exc:  # noqa: BLE001 - every waiting request learns it
                for item in taken:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            self.calls += 1
            self.points += total
            if self.on_call is not None:
                self.on_call(total, len(taken), time.perf_counter() - start)
            for item, counts in zip(taken, votes):
                if not item.future.done():
                    item.future.set_result(np.argmax(counts, axis=1).astype(np.int64))

    def _votes(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        return self.classifier.votes([(points, self.rng) for points in batches])
