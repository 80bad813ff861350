"""syngen: synthetic data for visual grounding and referring segmentation."""

import os

from syngen.log import quiet_libraries

__version__ = "0.1.0"

quiet_libraries()
# transformers turns its Hub kernels on by default: compiled code fetched from the Hub when a model loads (and a
# load that fails without the `kernels` package). Like trust_remote_code, off unless asked: USE_HUB_KERNELS=YES.
os.environ.setdefault("USE_HUB_KERNELS", "NO")
