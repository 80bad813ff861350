"""syngen: synthetic data for visual grounding and referring segmentation."""

from syngen.log import quiet_libraries

__version__ = "0.1.0"

quiet_libraries()
