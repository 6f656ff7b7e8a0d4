"""edge-pqrnn: tiny projection-based (pQRNN) language-understanding models for edge CPUs.

The public surface; everything else lives in submodules. Heavy dependencies
(TensorFlow) load only when a function that needs them is called.

Example:
    >>> import edge_pqrnn
    >>> edge_pqrnn.project(["book a flight"]).num_tokens.tolist()
    [4]
"""

from typing import Any

from edge_pqrnn._version import __version__
from edge_pqrnn.errors import EdgePqrnnError
from edge_pqrnn.projection import ProjectionSpec, project
from edge_pqrnn.projection.ops import op_library


# Stage entry points, imported on first use (most pull in TensorFlow, which only the
# train extra installs; Artifact does not): public name ->
# (module, name there). export()/validate() get distinct names because the submodules
# edge_pqrnn.export / edge_pqrnn.validate would shadow them once imported.
_LAZY = {
    "train_run": ("edge_pqrnn.pipeline", "train_run"),
    "evaluate_run": ("edge_pqrnn.pipeline", "evaluate_run"),
    "quickstart": ("edge_pqrnn.pipeline", "quickstart"),
    "load_run": ("edge_pqrnn.run", "load_run"),
    "export_artifact": ("edge_pqrnn.export", "export"),
    "validate_artifact": ("edge_pqrnn.validate", "validate"),
    "Artifact": ("edge_pqrnn.artifact", "Artifact"),
    "load_dataset": ("edge_pqrnn.data", "load_dataset"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'edge_pqrnn' has no attribute {name!r}")


__all__ = ["EdgePqrnnError", "ProjectionSpec", "__version__", "op_library", "project", *_LAZY]
