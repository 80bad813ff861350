"""The engine: runs a recipe's stages over the seed items. :mod:`~syngen.engine.context` holds a run's shared
resources (decoded images, CPU pool, store writer), :mod:`~syngen.engine.waves` schedules the waves,
:mod:`~syngen.engine.stage` runs one stage over one wave (batches, out-of-memory halving, retries, storing),
:mod:`~syngen.engine.report` counts what happened and :mod:`~syngen.engine.runner` ties them into a run.

Nothing is imported here, so that the stages may import :mod:`syngen.engine.context` below the runner.
"""
