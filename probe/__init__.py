"""probe: black-box robustness probing of ONNX image classifiers.

The pipeline: data -> runtime -> oracle -> engine <-> attacks. Attacks see only
the oracle's booleans; everything lives in the canonical space (float32 RGB in
[0, 1], NCHW, at the model's input size).
"""

__version__ = "0.1.0"
