"""Every way edge-pqrnn opens and runs an artifact, in one package.

=====================  =============================================  ==================
runtime (row name)     module                                         where it runs
=====================  =============================================  ==================
``litert``             :mod:`edge_pqrnn.runtimes.tflite`              this process
``tflite``             :mod:`edge_pqrnn.runtimes.tflite`              this process
``tflite-runtime``     :mod:`edge_pqrnn.runtimes.legacy`              a cached venv
``<name>@aarch64``     :mod:`edge_pqrnn.runtimes.aarch64`             qemu-user, aarch64
``onnxruntime``        :mod:`edge_pqrnn.runtimes.onnxruntime`         this process
=====================  =============================================  ==================

:class:`edge_pqrnn.artifact.Artifact` (and the ONNX ``OnnxArtifact``) sit on top: they
check the file, open it here and turn outputs into predictions.
"""

from edge_pqrnn.runtimes.legacy import (LEGACY_REQUIREMENTS, LEGACY_RUNTIME, cache_dir, default_python,
                                        legacy_tflite_runtime_python, run_in_subprocess, run_legacy)
from edge_pqrnn.runtimes.tflite import IN_PROCESS, fixed_batch_runner, interpreter, open_interpreter, run_signature

__all__ = ["IN_PROCESS", "LEGACY_REQUIREMENTS", "LEGACY_RUNTIME", "cache_dir", "default_python", "fixed_batch_runner",
           "interpreter", "legacy_tflite_runtime_python", "open_interpreter", "run_in_subprocess", "run_legacy",
           "run_signature"]
