"""Text -> ternary hashed features: the spec, the numpy reference and the native op."""

from edge_pqrnn.projection.reference import Projection, Token, project, tokenize
from edge_pqrnn.projection.spec import OP_NAME, SPEC_VERSION, ProjectionSpec

__all__ = ["OP_NAME", "SPEC_VERSION", "Projection", "ProjectionSpec", "Token", "project", "tokenize"]
