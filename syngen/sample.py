"""The record that flows through stages, and the failure a stage reports instead of it.

A sample is a plain dict: ``id`` (stable, see :func:`make_id`), ``source`` (provenance of the seed item) and
the columns stages add (``image`` as encoded bytes, ``caption``, ``phrases``, ``regions``, ...).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

Sample = dict[str, Any]


@dataclass
class Failure:
    """A sample a stage could not process: ``kind`` is a short machine-readable reason, ``message`` the human one."""

    kind: str
    message: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def make_id(*parts: Any) -> str:
    """A stable 16-hex-digit id from JSON-serialisable parts (the source item and the settings that made it)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def load_image(sample: Sample) -> Image.Image:
    """The sample's ``image`` bytes decoded to an RGB PIL image."""
    return Image.open(io.BytesIO(sample["image"])).convert("RGB")


def image_bytes(image: Image.Image, format: str = "PNG") -> bytes:
    """A PIL image encoded to bytes (PNG by default: lossless)."""
    buf = io.BytesIO()
    image.save(buf, format=format)
    return buf.getvalue()
