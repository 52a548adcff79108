"""Class names and class counts given by the user (``--classes FILE``, ``--num-classes N``).

A labels-only server (a stock MLServer scikit-learn runtime, a JSON API answering
``{"label": "tabby"}``) declares no class count; the attacks need one (a random target,
a label's range) and class names must map to indices. ``--classes`` is a text file with
one class name per line (index = line number, from 0); ``--num-classes`` is the count
alone (the server then answers indices).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from probe.errors import ParameterError, ProbeError


def read_classes(path: str | os.PathLike) -> tuple[str, ...]:
    """The class names of a file, one per line (index = line); trailing blank lines ignored."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise ProbeError(f"cannot read the class list {path}: {exc.strerror or exc}") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return check_names(lines, str(path))


def check_names(names, where: str) -> tuple[str, ...]:
    names = tuple(str(n) for n in names)
    blank = [i for i, n in enumerate(names) if not n]
    if blank:
        raise ProbeError(f"the class list {where} has an empty name at line {blank[0] + 1}")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise ProbeError(f"the class list {where} names {n!r} twice (lines {seen[n] + 1} and {i + 1})")
        seen[n] = i
    if len(names) < 2:
        raise ProbeError(f"the class list {where} has {len(names)} class(es): a classifier needs at least 2")
    return names


@dataclass(frozen=True)
class Classes:
    """What the user said about the classes: a count, names, or both (they must agree)."""

    count: int | None = None
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.count is not None and (isinstance(self.count, bool) or int(self.count) < 2):
            raise ParameterError(f"{{name}} must be an integer >= 2, got {self.count}", name="num_classes")
        if self.count is not None and self.names is not None and len(self.names) != self.count:
            raise ProbeError(f"--num-classes {self.count} does not match the {len(self.names)} names of --classes")

    @property
    def given(self) -> int | None:
        """The class count the user gave, if any."""
        return self.count if self.count is not None else (len(self.names) if self.names else None)

    def reconcile(self, declared: int | None, where: str = "the endpoint") -> int | None:
        """The class count: the user's, checked against what the server declares."""
        given = self.given
        if given is not None and declared is not None and given != declared:
            flag = "--num-classes" if self.count is not None else "--classes"
            raise ProbeError(f"{flag} gives {given} classes but {where} declares {declared}")
        return given if given is not None else declared

    def index(self, name: object) -> int:
        """The index of a class name the server answered (a ProbeError when it is not in the list)."""
        if self.names is None:
            raise ProbeError(
                f"the endpoint answers class names ({str(name)[:40]!r}): give the class list with --classes FILE"
            )
        lookup = _lookup(self.names)
        key = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        if key not in lookup:
            raise ProbeError(f"the endpoint answered the class name {key[:60]!r}, which is not in the class list")
        return lookup[key]


_CACHE: dict[tuple[str, ...], dict[str, int]] = {}


def _lookup(names: tuple[str, ...]) -> dict[str, int]:
    table = _CACHE.get(names)
    if table is None:
        table = _CACHE[names] = {n: i for i, n in enumerate(names)}
    return table


def open_classes(count: int | None, path: str | os.PathLike | None) -> Classes:
    """The :class:`Classes` of ``--num-classes`` and ``--classes``."""
    return Classes(count=count, names=read_classes(path) if path is not None else None)
