"""Model recipes (export of checkpoints to ONNX with probe metadata) and the model registry."""
