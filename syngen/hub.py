"""Hub wording shared by every upload (datasets and models): why a push failed, with tokens masked.

The one place that words Hub failures, below both the dataset card (:mod:`syngen.export.card`) and the uploads
(:mod:`syngen.push`, :func:`syngen.train.checkpoint.push_model`).
"""

from __future__ import annotations

import re

from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")


def push_failure(error: Exception, repo_id: str, noun: str, token: str | None = None) -> str:
    """One paragraph on why pushing a ``noun`` ("dataset" or "model") to the repo ``repo_id`` failed with
    ``error``, with ``token`` and anything shaped like a token removed."""
    if isinstance(error, OfflineModeIsEnabled):
        reason = "HF_HUB_OFFLINE is set, so the Hub cannot be reached: unset it to push."
    else:
        status = error.response.status_code if isinstance(error, HfHubHTTPError) else None
        detail = f"{type(error).__name__}: {error}".strip()
        if status in (401, 403):
            reason = f"the Hub refused the credentials ({status}): check HF_TOKEN or run `hf auth login`. {detail}"
        else:
            reason = f"{detail}. Check the network, the repo id and that your token may write to it."
    text = f"Could not push to the {noun} repo {repo_id!r}: {reason} The local {noun} was not changed."
    if token:
        text = text.replace(token, "***")
    return " ".join(redact(text).split())


def redact(text: str) -> str:
    """``text`` with anything shaped like a Hugging Face token (``hf_`` and 20+ letters or digits) masked."""
    return _TOKEN.sub("hf_***", text)
