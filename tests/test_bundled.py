"""The embedded models reach their measured accuracy through probe's own pipeline."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from probe.cli import app


@pytest.mark.parametrize("model, minimum", [("efficientnet-lite0", 17), ("cifar10-cnn", 20)])
def test_bundled_accuracy_through_the_cli(model, minimum):
    result = CliRunner().invoke(app, ["accuracy", "--model", model, "--sigma", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["images"] == 20
    assert round(data["plain"] * 20) >= minimum
