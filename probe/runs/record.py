"""The result record: one JSON line per (image, attack) job, typed, versioned, with a schema.

:class:`AttackRecord` is what :mod:`probe.runs.campaign` builds for every job, attacked or
skipped; ``results.jsonl`` holds one :meth:`AttackRecord.to_dict` per line, perhaps with
the fields of :data:`OPTIONAL` added by whoever writes it (the saved adversarial's file, a
sweep's configuration, a remote model's endpoint). :func:`record_schema` is its JSON Schema
(draft 2020-12), generated from the dataclass and its field descriptions; the package
ships it as ``probe/assets/record.schema.json`` and ``docs/record.md`` lists the fields.

Skipped jobs (``skipped`` is the reason, e.g. "misclassified") have ``found`` False and
``success``, ``verdict`` and every measurement null: group on ``skipped`` being null before
averaging anything. ``schema_version`` changes whenever a field changes meaning.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

SCHEMA_VERSION = 2
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "assets" / "record.schema.json"

Verdict = Literal["adversarial", "not adversarial", "undecided"]


def _f(doc: str, default: Any = dataclasses.MISSING) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(kw_only=True)
class AttackRecord:
    """One (image, attack) job's result; see the module docstring and ``docs/record.md``."""

    schema_version: int = _f("Version of this record's layout (2: three-valued verdicts).", SCHEMA_VERSION)
    image: str = _f("The image's identity: its path relative to the source it was given in, or its id.")
    label: Optional[int] = _f("The true label when known, else null.")
    clean_label: int = _f("g_sigma(x_o): the defended classifier's label of the original (the label to leave).")
    clean_margin: float = _f("Vote margin (c1 - c2) / votes of all micro-decisions drawn for clean_label.")
    clean_evaluations: int = _f("Evaluations of g(sigma, n) drawn to estimate clean_label.")
    clean_accuracy: Optional[float] = _f("Share of those evaluations giving the true label (null: label unknown).")
    attack: str = _f("The attack's registry name (hsja, surfree, rays, cgba, psj, ...).")
    preset: str = _f("The attacks' settings: probe or paper.")
    params: dict = _f("Every parameter of the attack as run (a confirmation wrapper's too).")
    criterion: Literal["label", "paper"] = _f("The attacker's answer per query: label (deployed) or paper (vote counts).")
    domain: Literal["float", "uint8"] = _f("float, or uint8: every query was rounded to the 8-bit grid.")
    norm: Literal["l2", "linf"] = _f("The attack's own norm.")
    sigma: float = _f("Noise level of randomized smoothing (0: the bare model).")
    n: int = _f("Noisy copies per query (the majority vote's size).")
    pa: float = _f("Level P_a of eq. (4) that the verdict tests.")
    seed: int = _f("The run's seed (every stream is keyed by it and by identities).")
    budget: int = _f("The attack's query budget (a hard limit).")
    targeted: Optional[int] = _f("Target class, or null (untargeted).")
    queries: int = _f("Queries the attacker spent (points asked).")
    inferences: int = _f("Model runs spent on those queries.")
    found: bool = _f("Whether the attack returned a point (answered adversarial by the oracle).")
    confirmed: Optional[bool] = _f("Whether its confirmation test accepted the point (null: no confirmation ran).")
    success: Optional[bool] = _f("verdict == 'adversarial' (false when nothing was found; null when not judged).")
    verdict: Optional[Verdict] = _f("Eq. (4) as a test at P_a: adversarial / not adversarial / undecided; null if not judged.")
    verdict_note: Optional[str] = _f("Why there is no verdict (e.g. an endpoint's budget spent), else null.")
    stopped: Optional[str] = _f("Why the attack stopped before its budget (e.g. endpoint budget spent), else null.")
    early_stop: bool = _f("Whether each vote stopped once its answer was decided.")
    p_adv: Optional[float] = _f("Point estimate of eq. (4)'s probability (never the verdict).")
    p_adv_interval: Optional[list[float]] = _f("The Clopper-Pearson interval the verdict read, [low, high].")
    p_adv_evaluations: Optional[int] = _f("Fresh evaluations of g(sigma, n) the verdict drew.")
    p_adv_confidence: float = _f("Confidence of the verdict's test.")
    p_adv_8bit: Optional[float] = _f("p_adv of the adversarial rounded to 8 bits (what a PNG holds).")
    p_adv_8bit_interval: Optional[list[float]] = _f("Its interval, [low, high].")
    verdict_8bit: Optional[Verdict] = _f("The verdict of the 8-bit point.")
    l2: Optional[float] = _f("L2 distance of the adversarial to the original, in [0, 1] pixel space.")
    linf: Optional[float] = _f("Linf distance of the adversarial to the original.")
    certified_radius: Optional[float] = _f("CERTIFY's radius around the original (null: not run or abstained).")
    certify: Optional[dict] = _f("CERTIFY's settings {n0, n, alpha}.")
    bound_eq6: Optional[float] = _f("Eq. (6)'s lower bound on any level-P_a adversarial's L2 distance.")
    below_bound_eq6: bool = _f("An adversarial verdict closer than eq. (6) allows: a bug or an unsound certificate.")
    trajectory: Optional[dict] = _f("{queries, l2, linf}: best returned point's distances at query checkpoints.")
    seconds: float = _f("Wall time of the job.")
    skipped: Optional[str] = _f("Why the job was not run (misclassified, already the target class), else null.")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AttackRecord":
        """The typed record of a JSON line (fields of :data:`OPTIONAL` and unknown ones are dropped)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


#: fields a writer may add to a record: (JSON type, meaning)
OPTIONAL: dict[str, tuple[Any, str]] = {
    "adv_file": (Optional[str], "The saved float32 adversarial (.npy), relative to the run's folder."),
    "adv_path": (Optional[str], "The adversarial's PNG, when images were saved."),
    "model": (Optional[str], "The model (a sweep's records)."),
    "config": (Optional[str], "The sweep configuration's id."),
    "endpoint": (Optional[str], "The endpoint's URL (a remote model)."),
    "protocol": (Optional[str], "The endpoint's protocol."),
    "defended": (Optional[bool], "Whether the endpoint smooths itself."),
    "verdict_queries_charged": (Optional[bool], "The verdict's evaluations were queries to the endpoint."),
}

_JSON = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}


def _schema_of(tp: Any) -> dict[str, Any]:
    """The JSON Schema of a type annotation (the few kinds the record uses)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [_schema_of(a) for a in args if a is not type(None)]
        (one,) = inner
        if "enum" in one:
            return {**one, "enum": [*one["enum"], None]}
        kinds = one["type"] if isinstance(one["type"], list) else [one["type"]]
        return {**one, "type": [*kinds, "null"]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _schema_of(args[0])}
    if tp is float:
        return {"type": "number"}
    return {"type": _JSON[tp]}


def record_schema() -> dict[str, Any]:
    """The JSON Schema of a results.jsonl line: every field of :class:`AttackRecord` required,
    the fields of :data:`OPTIONAL` allowed, and any other field allowed too."""
    hints = typing.get_type_hints(AttackRecord, include_extras=True)
    props = {f.name: {**_schema_of(hints[f.name]), "description": f.metadata["doc"]} for f in dataclasses.fields(AttackRecord)}
    props["schema_version"]["const"] = SCHEMA_VERSION
    for name, (tp, doc) in OPTIONAL.items():
        props[name] = {**_schema_of(tp), "description": doc}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://probe.invalid/record-v{SCHEMA_VERSION}.schema.json",
        "title": "probe result record",
        "description": "One (image, attack) job of a probe run: a line of results.jsonl.",
        "type": "object",
        "properties": props,
        "required": [f.name for f in dataclasses.fields(AttackRecord)],
        "additionalProperties": True,
    }


def schema_text() -> str:
    """The schema as the file the package ships (sorted keys, two-space indent)."""
    return json.dumps(record_schema(), indent=2) + "\n"


def fields_table() -> str:
    """The fields as a Markdown table (``docs/record.md``)."""
    schema = record_schema()["properties"]
    rows = ["| field | type | meaning |", "|---|---|---|"]
    for name, spec in schema.items():
        kind = spec.get("type", "enum: " + ", ".join(str(v) for v in spec.get("enum", [])))
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        rows.append(f"| `{name}` | {kind} | {spec['description']}{'' if name not in OPTIONAL else ' (optional)'} |")
    return "\n".join(rows) + "\n"
