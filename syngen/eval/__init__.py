"""Evaluation, above training: scoring a trained checkpoint on benchmarks (``syngen eval``).

Layers: :mod:`syngen.metrics` (the formulas) < :mod:`syngen.train` (whose in-run eval uses only the metrics) <
:mod:`syngen.eval`. Parts: :mod:`~syngen.eval.evaluate` (``ris`` and ``pointing``), :mod:`~syngen.eval.sets` (one
reader per published benchmark layout) and :mod:`~syngen.eval.cli` (the commands).
"""
