"""A target file: any JSON or multipart image API described in TOML (``--target api.toml``).

::

    url = "https://api.example.com/v1/classify"   # required; ${ENV} is expanded everywhere
    method = "POST"                                # default POST
    headers = { Authorization = "Bearer ${API_TOKEN}" }
    images_per_request = 1                         # > 1: the body takes a list (${images})

    [image]
    format = "jpeg"          # png (default), jpeg or rgb8 (raw H*W*3 bytes)
    quality = 90             # JPEG quality
    size = [224, 224]        # H, W the API takes (else --size)

    [body]
    kind = "json"            # json (default), multipart or raw (the image bytes are the body)
    json = { image = "${image}", top_k = 1 }     # ${image}: base64 of the image; "${images}": a list of them
    # multipart: field = "file", filename = "image.jpg", fields = { model = "v3" }

    [answer]
    label = "predictions[0].label"   # where the label is: a dotted path, [n] and [*]
    kind = "name"                     # name (mapped through the classes), index, or scores (argmax)
    classes = "classes.txt"           # a file (one name per line, relative to this file) or a list
    num_classes = 1000                # with kind = "index" and no class list

``${image}`` may stand inside a longer string (``"data:image/png;base64,${image}"``);
``${images}`` must be a whole value. A variable that is not set is an error, not an
empty string: secrets come from the environment, never from the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.remote.classes import Classes, check_names, read_classes
from probe.remote.images import ImageCodec

BODY_KINDS = ("json", "multipart", "raw")
ANSWER_KINDS = ("name", "index", "scores")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
IMAGE, IMAGES = "${image}", "${images}"
PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+|\*)\]")


@dataclass(frozen=True)
class Target:
    """What a target file says (secrets already taken from the environment)."""

    url: str
    source: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    images_per_request: int = 1
    codec: ImageCodec = field(default_factory=ImageCodec)
    size: tuple[int, int] | None = None
    body_kind: str = "json"
    template: Any = None  # the JSON body, ${image}/${images} left in
    field_name: str = "file"
    filename: str = "image"
    fields: tuple[tuple[str, str], ...] = ()
    label_path: tuple[str | int, ...] = ()
    answer_kind: str = "name"
    classes: Classes = field(default_factory=Classes)
    timeout: float | None = None


def load_target(path: str | os.PathLike, env: dict[str, str] | None = None) -> Target:
    """Read and check a target file; a ProbeError naming the file and the key on any fault."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the same parser as a package (the serve extra brings it)
        try:
            import tomli as tomllib
        except ImportError:
            raise ProbeError('--target needs Python 3.11+ or pip install "onnx-probe[serve]" (tomli)') from None
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProbeError(f"cannot read the target file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProbeError(f"the target file {path} is not valid TOML: {exc}") from None
    where = str(path)
    env = dict(os.environ) if env is None else env
    data = expand(data, env, where)
    known = {"url", "method", "headers", "images_per_request", "timeout", "image", "body", "answer"}
    _no_unknown(data, known, where, "")
    image, body, answer = (_table(data, k, where) for k in ("image", "body", "answer"))
    _no_unknown(image, {"format", "quality", "size"}, where, "image.")
    _no_unknown(body, {"kind", "json", "field", "filename", "fields", "content_type"}, where, "body.")
    _no_unknown(answer, {"label", "kind", "classes", "num_classes"}, where, "answer.")
    url = data.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ProbeError(f"{where}: url must be an http:// or https:// URL, got {url!r}")
    per = data.get("images_per_request", 1)
    if not isinstance(per, int) or isinstance(per, bool) or per < 1:
        raise ProbeError(f"{where}: images_per_request must be an integer >= 1, got {per!r}")
    kind = body.get("kind", "json")
    if kind not in BODY_KINDS:
        raise ProbeError(f"{where}: body.kind must be one of {', '.join(BODY_KINDS)}, got {kind!r}")
    template = body.get("json", {"image": IMAGE} if kind == "json" else None)
    if kind == "json":
        uses = _placeholders(template)
        if per == 1 and not uses & {IMAGE, IMAGES}:
            raise ProbeError(f"{where}: body.json must hold the image as \"{IMAGE}\" (or a list as \"{IMAGES}\")")
        if per > 1 and IMAGES not in uses:
            raise ProbeError(f"{where}: images_per_request = {per} needs \"{IMAGES}\" (a list) in body.json")
    if kind == "raw" and per != 1:
        raise ProbeError(f"{where}: a raw body holds one image: images_per_request must be 1")
    label = answer.get("label")
    if not isinstance(label, str) or not label.strip():
        raise ProbeError(f"{where}: answer.label must say where the label is in the answer (e.g. \"label\")")
    answer_kind = answer.get("kind", "name")
    if answer_kind not in ANSWER_KINDS:
        raise ProbeError(f"{where}: answer.kind must be one of {', '.join(ANSWER_KINDS)}, got {answer_kind!r}")
    size = image.get("size")
    if size is not None and (not isinstance(size, list) or len(size) != 2 or min(size) < 1):
        raise ProbeError(f"{where}: image.size must be [height, width], got {size!r}")
    headers = _table(data, "headers", where)
    return Target(
        url=url, source=where, method=str(data.get("method", "POST")).upper(),
        headers=tuple((str(k), str(v)) for k, v in headers.items()), images_per_request=per,
        codec=ImageCodec(image.get("format", "png"), image.get("quality", 90)),
        size=tuple(size) if size else None, body_kind=kind, template=template,
        field_name=str(body.get("field", "file")), filename=str(body.get("filename", "image")),
        fields=tuple((str(k), str(v)) for k, v in _table(body, "fields", where).items()),
        label_path=parse_path(label, where), answer_kind=answer_kind, classes=_classes(answer, path, where),
        timeout=data.get("timeout"),
    )  # fmt: skip


def expand(value: Any, env: dict[str, str], where: str) -> Any:
    """``${NAME}`` from the environment in every string (``${image}``, ``${images}`` kept for each request)."""
    if isinstance(value, dict):
        return {k: expand(v, env, where) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, env, where) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        name = match.group(1)
        if name in ("image", "images"):
            return match.group(0)
        if name not in env:
            raise ProbeError(f"{where} uses ${{{name}}}, which is not set in the environment")
        return env[name]

    return VARIABLE.sub(one, value)


def fill(template: Any, images: list[str]) -> Any:
    """The JSON body for base64 images: ``${image}`` is the first, ``"${images}"`` all of them."""
    if isinstance(template, dict):
        return {k: fill(v, images) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, images) for v in template]
    if template == IMAGES:
        return list(images)
    if isinstance(template, str) and IMAGE in template:
        return template.replace(IMAGE, images[0])
    return template


def parse_path(text: str, where: str = "answer.label") -> tuple[str | int, ...]:
    """``predictions[0].label`` -> ("predictions", 0, "label"); ``[*]`` (or ``*``) maps over a list."""
    out: list[str | int] = []
    for part in text.strip().lstrip("$").lstrip(".").split("."):
        tokens = PATH_TOKEN.findall(part)
        if not part or "".join(a or f"[{b}]" for a, b in tokens) != part:
            raise ProbeError(f"{where}: cannot read the path {text!r} (use names, [n] and [*], e.g. results[*].label)")
        for name, index in tokens:
            out.append("*" if name == "*" or index == "*" else int(index) if index else name)
    return tuple(out)


def lookup(data: Any, path: tuple[str | int, ...]) -> Any:
    """The value at ``path`` (a list where the path holds ``*``); KeyError/IndexError/TypeError when absent."""
    for i, step in enumerate(path):
        if step == "*":
            if not isinstance(data, list):
                raise TypeError("not a list")
            return [lookup(item, path[i + 1 :]) for item in data]
        if isinstance(step, int):
            if not isinstance(data, list):
                raise TypeError("not a list")
            data = data[step]
        else:
            if not isinstance(data, dict):
                raise TypeError("not an object")
            data = data[step]
    return data


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_placeholders(v) for v in value)) if value else set()
    if value == IMAGES:
        return {IMAGES}
    return {IMAGE} if isinstance(value, str) and IMAGE in value else set()


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ProbeError(f"{where}: {key} must be a table, got {type(value).__name__}")
    return value


def _no_unknown(data: dict, known: set[str], where: str, prefix: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProbeError(f"{where}: unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(known))})")


def _classes(answer: dict, path: Path, where: str) -> Classes:
    names = answer.get("classes")
    if isinstance(names, str):
        file = Path(names) if Path(names).is_absolute() else path.parent / names
        names = read_classes(file)
    elif isinstance(names, list):
        names = check_names(names, f"{where} (answer.classes)")
    elif names is not None:
        raise ProbeError(f"{where}: answer.classes must be a file name or a list of names")
    count = answer.get("num_classes")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
        raise ProbeError(f"{where}: answer.num_classes must be an integer, got {count!r}")
    return Classes(count=count, names=names)
