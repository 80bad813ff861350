"""Tools for working on syngen itself (not used by a run): ``python -m syngen.devtools.<tool>``."""
