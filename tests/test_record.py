"""The typed result record: the shipped schema is the generated one, and every record the
CLI writes (attacked and skipped, with and without smoothing) validates."""

from __future__ import annotations

import json

import jsonschema
import pytest

from probe.runs.record import OPTIONAL, SCHEMA_FILE, SCHEMA_VERSION, AttackRecord, fields_table, record_schema, schema_text


def test_the_shipped_schema_and_docs_are_the_generated_ones():
    assert SCHEMA_FILE.read_text() == schema_text()  # regenerate: see docs/record.md
    from pathlib import Path

    docs = (Path(__file__).resolve().parent.parent / "docs" / "record.md").read_text()
    assert fields_table() in docs
    jsonschema.Draft202012Validator.check_schema(record_schema())


def _validator():
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


def test_the_schema_refuses_what_a_record_cannot_be():
    v = _validator()
    good = {f: None for f in record_schema()["required"]}
    assert not v.is_valid(good)  # nulls where a value is required
    errors = {e.path[0] if e.path else e.validator for e in v.iter_errors({**good, "verdict": "maybe"})}
    assert "verdict" in errors and "schema_version" in errors and "image" in errors


@pytest.mark.parametrize("sigma", [0.0, 0.05])
def test_every_record_the_cli_writes_validates(make_linear, run_cli, tmp_path, sigma):
    lin = make_linear((3, 8, 8), seed=4, images=3, image_seed=1, spread=0.15)
    rows = (lin.folder / "labels.csv").read_text().splitlines()
    name, label = rows[1].split(",")
    rows[1] = f"{name},{1 - int(label)}"  # a wrong label: this image is skipped as misclassified
    (lin.folder / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    result = run_cli("attack", "--model", lin.model, "--images", lin.folder, "--sigma", sigma, "--n", 5,
                     "--budget", 60, "--attack", "hsja,rays", "--p-adv-samples", 16, "--certify-n", 64, "--out", out)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    v = _validator()
    for rec in records:
        errors = [e.message for e in v.iter_errors(rec)]
        assert not errors, (rec, errors)
        assert rec["schema_version"] == SCHEMA_VERSION
        assert AttackRecord.from_dict(rec).to_dict() == {k: x for k, x in rec.items() if k not in OPTIONAL}
    skipped = [r for r in records if r["skipped"]]
    assert [r["skipped"] for r in skipped] == ["misclassified"] * 2
    assert all(r["success"] is None and r["verdict"] is None for r in skipped)  # never a failure to average
    assert all(r["success"] in (True, False) for r in records if not r["skipped"])


def test_from_probe_import_gives_every_attack_and_the_record():
    """Everything public is importable from ``probe`` (lazily): every registered attack's class,
    the confirmation wrapper, the model wrappers and the typed record."""
    import probe
    from probe.attacks import ATTACKS

    for cls in ATTACKS.values():
        assert getattr(probe, cls.__name__) is cls
    for name in ("Confirmed", "Attack", "CallableModel", "AttackRecord", "record_schema", "load_model", "Oracle"):
        assert name in dir(probe) and getattr(probe, name) is not None
