"""syngen: synthetic data for visual grounding and referring segmentation."""

__version__ = "0.1.0"
