"""Any JSON or multipart image API as a labels-only model (``--target api.toml``).

:class:`ApiRuntime` sends each point as an image file (PNG, JPEG or raw RGB bytes; see
:mod:`probe.remote.images`) the way a target file (:mod:`probe.remote.target`) says:
base64 in a JSON body, a multipart file or the raw body, one image a request or a list.
It reads the label where the file says (a class name, an index or a score vector) and
has the interface of :class:`probe.runtime.Runtime` that the smoothing, the oracle and
the attacks use. Retries, backoff, ``Retry-After``, ``--concurrency`` and ``--max-rate``
come from :class:`~probe.remote.transport.HttpModel`.

What is measured is what the server decoded (:meth:`ApiRuntime.as_sent`): the 8-bit
grid for PNG and raw bytes, probe's own decoding of its JPEG for JPEG. Records carry
the encoding. A plain API has no request ids: a retried request may be charged twice
by its owner; ``answered`` counts the points whose answer arrived.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from probe.errors import ProbeError
from probe.remote.classes import Classes
from probe.remote.target import Target, fill, load_target, lookup
from probe.remote.transport import HttpModel
from probe.runtime import ModelInfo
from probe.spec import InputSpec


class ApiRuntime(HttpModel):
    """A classifier behind a plain HTTP image API, described by a :class:`Target`."""

    def __init__(
        self,
        target: Target,
        *,
        classes: Classes | None = None,
        size: tuple[int, int] | None = None,
        concurrency: int = 4,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.25,
        max_rate: float | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        defended: bool = False,
    ) -> None:
        self.target = target
        if size is not None and target.size is not None and tuple(size) != tuple(target.size):
            raise ProbeError(f"--size {tuple(size)} does not match the target file's image.size {tuple(target.size)}")
        size = tuple(size or target.size or ())
        if len(size) != 2:
            raise ProbeError(f"{target.source}: give the size the API takes (image.size = [H, W], or --size HxW)")
        given = classes or Classes()
        self.classes = Classes(count=given.count or target.classes.count, names=given.names or target.classes.names)
        if target.answer_kind == "name" and self.classes.names is None:
            raise ProbeError(f"{target.source}: the API answers class names: list them (answer.classes, or --classes FILE)")
        count = self.classes.given
        if count is None:
            raise ProbeError(f"{target.source}: give the class count (answer.num_classes, or --num-classes N)")
        parts = urlsplit(target.url)
        self._path = target.url[len(f"{parts.scheme}://{parts.netloc}") :] or "/"
        self._open(base_url=f"{parts.scheme}://{parts.netloc}", headers=dict(target.headers + tuple(headers)),
                   timeout=target.timeout or timeout, concurrency=concurrency, retries=retries, backoff=backoff,
                   max_rate=max_rate)  # fmt: skip
        self.defended = bool(defended)
        self.codec = target.codec
        self.points_per_request = target.images_per_request
        self.batch_size = self.points_per_request * concurrency
        self.info = ModelInfo(
            path=target.url, input_name=self.codec.name, output_name=".".join(map(str, target.label_path)),
            num_classes=int(count), fixed_batch=None, spec=InputSpec(size=size, class_names=self.classes.names),
            providers=("remote:http",), metadata={},
        )  # fmt: skip

    # ------------------------------------------------------------------ the Runtime interface
    def as_sent(self, x: np.ndarray) -> np.ndarray:
        """The canonical points the server decodes for x (the 8-bit grid; for JPEG, probe's decoding of its JPEG)."""
        return self.codec.as_sent(x)

    @property
    def record_fields(self) -> dict[str, Any]:
        """What every result record says about the API (the verdict's evaluations are its queries too)."""
        return {
            "endpoint": self.target.url,
            "protocol": "http",
            "encoding": self.codec.name,
            "defended": self.defended,
            "verdict_queries_charged": True,
        }

    def describe(self) -> dict:
        """A JSON-able summary (for `probe info`)."""
        t = self.target
        return {
            "path": t.url, "protocol": "http", "method": t.method, "body": t.body_kind, "encoding": self.codec.name,
            "images_per_request": t.images_per_request, "answer": self.info.output_name, "answer_kind": t.answer_kind,
            "num_classes": self.num_classes, "input_shape": list(self.input_shape), "concurrency": self.concurrency,
            "batch_size": self.batch_size, "defended": self.defended, "providers": list(self.info.providers),
        }  # fmt: skip

    # ------------------------------------------------------------------ wire
    def request(self, chunk: np.ndarray) -> dict[str, Any]:
        """The httpx arguments (content, files, headers...) of one request for the points of ``chunk``."""
        t, codec = self.target, self.codec
        images = [codec.encode(p) for p in chunk]
        if t.body_kind == "raw":
            return {"content": images[0], "headers": {"Content-Type": codec.media_type}}
        if t.body_kind == "multipart":
            suffix = {"png": ".png", "jpeg": ".jpg"}.get(codec.format, "")
            files = [(t.field_name, (t.filename if "." in t.filename else t.filename + suffix, data, codec.media_type))
                     for data in images]  # fmt: skip
            return {"files": files, "data": dict(t.fields)}
        body = fill(t.template, [base64.b64encode(data).decode("ascii") for data in images])
        return {"content": json.dumps(body, separators=(",", ":")).encode(), "headers": {"Content-Type": "application/json"}}

    def _infer(self, chunk: np.ndarray) -> np.ndarray:
        answer = self._send(self.target.method, self._path, len(chunk), **self.request(chunk))
        return self.read(answer.content, len(chunk))

    def read(self, content: bytes, k: int) -> np.ndarray:
        """The k labels of an answer's body."""
        t = self.target
        try:
            data = json.loads(content)
        except ValueError:
            raise ProbeError(f"the API's answer is not JSON: {content[:120]!r}") from None
        try:
            value = lookup(data, t.label_path)
        except (KeyError, IndexError, TypeError):
            raise ProbeError(f"the API's answer has no {self.info.output_name}: {json.dumps(data)[:160]}") from None
        if t.answer_kind == "scores":
            rows = value if k > 1 or (isinstance(value, list) and value and isinstance(value[0], list)) else [value]
            try:
                scores = np.asarray(rows, dtype=np.float64)
            except (TypeError, ValueError):
                scores = np.empty(0)
            if scores.shape != (k, self.num_classes):
                raise ProbeError(f"the API's scores at {self.info.output_name} are not {k} x {self.num_classes}")
            return np.argmax(scores, axis=1).astype(np.int64)
        values = value if isinstance(value, list) else [value]
        if len(values) != k:
            raise ProbeError(f"the API answered {len(values)} label(s) at {self.info.output_name} for {k} image(s)")
        if t.answer_kind == "name":
            return np.array([self.classes.index(v) for v in values], np.int64)
        try:
            return np.array([int(v) for v in values if not isinstance(v, bool)], np.int64).reshape(k)
        except (TypeError, ValueError):
            raise ProbeError(f"the API's answer at {self.info.output_name} is not a class index: {values[:3]}") from None


def open_target(options, overrides: dict[str, Any], classes: Classes) -> ApiRuntime:
    """The ApiRuntime of the CLI's model options (``--target FILE`` given)."""
    from probe.remote.client import parse_headers

    other = sorted(k for k, v in overrides.items() if k != "size" and v is not None)
    if other:
        raise ProbeError(f"an image API takes image files: --{', --'.join(other)} do not apply with --target")
    headers = parse_headers(options.header)
    if options.api_key:
        headers += (("Authorization", f"Bearer {options.api_key}"),)
    return ApiRuntime(
        load_target(options.target), classes=classes, size=overrides.get("size"), concurrency=options.concurrency,
        timeout=options.timeout, max_rate=options.max_rate, headers=headers, defended=options.defended,
    )  # fmt: skip
