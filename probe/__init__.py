# ruff: noqa: F401
"""probe: black-box robustness probing of ONNX image classifiers.

The pipeline: data -> runtime -> smoothing -> oracle -> engine <-> attacks -> runs.
Attacks see only the oracle's booleans; everything lives in the canonical space
(float32 RGB in [0, 1], NCHW, at the model's input size).

The public API, imported lazily (``import probe`` loads nothing heavy)::

    >>> from probe import load_model, load_samples, SmoothedClassifier, Oracle, Criterion
    >>> from probe import make_attack, run_attack, certify  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "ProbeError": "probe.errors",
    "BudgetExceeded": "probe.errors",
    "InputSpec": "probe.spec",
    "ImageSet": "probe.data",
    "load_images": "probe.data",
    "Runtime": "probe.runtime",
    "CallableModel": "probe.remote.callable",
    "load_model": "probe.load",
    "load_samples": "probe.load",
    "SmoothedClassifier": "probe.smoothing",
    "ABSTAIN": "probe.smoothing",
    "predict": "probe.smoothing",
    "certify": "probe.smoothing",
    "certified_radius": "probe.smoothing",
    "distance_bound": "probe.smoothing",
    "Criterion": "probe.oracle",
    "Oracle": "probe.oracle",
    "estimate_p_adv": "probe.oracle",
    "Engine": "probe.engine",
    "Job": "probe.engine",
    "ATTACKS": "probe.attacks",
    "HSJA": "probe.attacks",
    "SurFree": "probe.attacks",
    "RayS": "probe.attacks",
    "CGBA": "probe.attacks",
    "PopSkipJump": "probe.attacks",
    "PSJ": "probe.attacks",
    "Attack": "probe.attacks",
    "Confirmed": "probe.attacks",
    "AttackOutcome": "probe.attacks",
    "make_attack": "probe.attacks",
    "run_attack": "probe.attacks",
    "AttackConfig": "probe.runs.campaign",
    "attack_images": "probe.runs.campaign",
    "certify_images": "probe.runs.certify",
    "AttackRecord": "probe.runs.record",
    "record_schema": "probe.runs.record",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'probe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs; nothing is imported at run time
    from probe.attacks import (
        ATTACKS,
        CGBA,
        HSJA,
        PSJ,
        Attack,
        AttackOutcome,
        Confirmed,
        PopSkipJump,
        RayS,
        SurFree,
        make_attack,
        run_attack,
    )
    from probe.data import ImageSet, load_images
    from probe.engine import Engine, Job
    from probe.errors import BudgetExceeded, ProbeError
    from probe.load import load_model, load_samples
    from probe.oracle import Criterion, Oracle, estimate_p_adv
    from probe.remote.callable import CallableModel
    from probe.runs.campaign import AttackConfig, attack_images
    from probe.runs.certify import certify_images
    from probe.runs.record import AttackRecord, record_schema
    from probe.runtime import Runtime
    from probe.smoothing import (
        ABSTAIN,
        SmoothedClassifier,
        certified_radius,
        certify,
        distance_bound,
        predict,
    )
    from probe.spec import InputSpec
