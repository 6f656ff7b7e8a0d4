"""edge-pqrnn: tiny projection-based (pQRNN) language-understanding models for edge CPUs.

The public surface; everything else lives in submodules. Heavy dependencies
(TensorFlow) load only when a function that needs them is called.
"""

from edge_pqrnn.errors import EdgePqrnnError
from edge_pqrnn.projection import ProjectionSpec, project
from edge_pqrnn.projection.ops import op_library

__version__ = "0.1.0"

__all__ = ["EdgePqrnnError", "ProjectionSpec", "__version__", "op_library", "project"]
