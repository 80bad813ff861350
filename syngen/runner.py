"""The engine's run, under its long-standing name (see :mod:`syngen.engine`)."""

from syngen.engine.report import StageReport, card_info, failure_record
from syngen.engine.runner import FAILURES, Runner
from syngen.engine.stage import Stopped
from syngen.engine.waves import split_model_free

__all__ = ["FAILURES", "Runner", "StageReport", "Stopped", "card_info", "failure_record", "split_model_free"]
