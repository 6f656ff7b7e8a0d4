"""The exceptions edge-pqrnn raises. Every message says what is wrong and how to fix it."""

from __future__ import annotations


class EdgePqrnnError(Exception):
    """Base class of every error edge-pqrnn raises on purpose."""


class ConfigError(EdgePqrnnError, ValueError):
    """An option or configuration value is invalid."""


class DataError(EdgePqrnnError, ValueError):
    """Input data (a dataset, a file, a column) is missing or malformed."""


class OpLibraryError(EdgePqrnnError):
    """The native projection op library is missing or cannot be loaded."""


class ArtifactError(EdgePqrnnError):
    """A model artifact (.tflite, run dir) is missing, corrupt or not ours."""


class OpLibraryMissingError(ArtifactError, OpLibraryError):
    """The op library the artifact needs is missing or not loadable (both an
    :class:`ArtifactError`, since the artifact cannot open, and an :class:`OpLibraryError`)."""


class AgreementError(EdgePqrnnError):
    """A validated artifact disagrees with its float reference beyond the threshold."""


class SizeError(EdgePqrnnError):
    """An artifact exceeds a size limit."""


class InputError(DataError, ConfigError, TypeError):
    """A bad argument to a Python API call (texts that are not a list of str/bytes, a
    batch size that is not a whole number >= 1). Also a :class:`DataError`, a
    :class:`ConfigError` and a ``TypeError``, so older ``except`` clauses still catch it."""
