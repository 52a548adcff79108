"""Model recipes: torch code that exports checkpoints to ONNX with probe's metadata.

``resnet50``, ``checkpoints`` and ``export`` turn ResNet50 checkpoints into models of the
registry (:mod:`probe.zoo`); ``cifar10_cnn`` and ``efficientnet_lite0`` rebuild the
built-in models (sharing ``bundled``); ``onnx_file`` traces and writes for all of them.
Torch is needed only when a recipe runs: ``export`` imports without it.
"""
