"""Distillation: a fine-tuned multilingual teacher labels texts, a pQRNN student learns.

Modules, bottom to top:

* :mod:`edge_pqrnn.distill.teacher`: the teacher (e5 weights, the joint model, fine-tuning).
* :mod:`edge_pqrnn.distill.augment`: new training texts for the teacher to label.
* :mod:`edge_pqrnn.distill.label`: teacher logits on the student's token rows, cached in
  Parquet; the chunk/batch plan and variant choice the Beam path shares.
* :mod:`edge_pqrnn.distill.beam_io`, :mod:`~edge_pqrnn.distill.beam_steps`,
  :mod:`~edge_pqrnn.distill.beam`: the same labelling scaled out on Apache Beam.
* :mod:`edge_pqrnn.distill.kd`: label a dataset and train a student with the KD loss.
* :mod:`edge_pqrnn.distill.results`, :mod:`~edge_pqrnn.distill.ablation`: the
  teacher/student comparison and the ablation sweeps.
* :mod:`edge_pqrnn.distill.recipe`: all of it in one resumable command (``edge-pqrnn
  distill``): teacher, labels, student, int8 artifact, summary.

This package re-exports the entry points of :mod:`~edge_pqrnn.distill.kd`. Importing it
loads nothing heavy (no torch, TensorFlow or Beam): Beam workers import it on start.
"""

from edge_pqrnn.distill.kd import DISTILL_FILE, LABELS_CACHE, LabelledSet, check_labels, distill_train, label_dataset

__all__ = ["DISTILL_FILE", "LABELS_CACHE", "LabelledSet", "check_labels", "distill_train", "label_dataset"]
