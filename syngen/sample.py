"""The record that flows through stages, and the failure a stage reports instead of it.

A sample is a plain dict: ``id`` (stable, see :func:`make_id`), ``source`` (provenance of the seed item) and
the columns stages add (``image`` as encoded bytes, ``caption``, ``phrases``, ``regions``, ...).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections import OrderedDict
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


class DecodedImages:
    """The most recently decoded images, keyed by their encoded bytes, so that the stages of a wave decode each
    image once (the runner sizes it to the wave with :meth:`fit`). Thread-safe."""

    def __init__(self, limit: int = 64):
        self.limit = limit
        self.decodes = 0
        self._images: OrderedDict[bytes, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def fit(self, count: int) -> None:
        """Keep at least ``count`` images (a wave's)."""
        self.limit = max(self.limit, count)

    def get(self, data: bytes) -> Image.Image:
        with self._lock:
            image = self._images.get(data)
            if image is not None:
                self._images.move_to_end(data)
                return image
        image = Image.open(io.BytesIO(data)).convert("RGB")
        with self._lock:
            self.decodes += 1
            self._images[data] = image
            while len(self._images) > self.limit:
                self._images.popitem(last=False)
        return image


DECODED = DecodedImages()


def load_image(sample: Sample) -> Image.Image:
    """The sample's ``image`` bytes decoded to an RGB PIL image, decoded once per wave (the image is shared
    between stages: copy it before drawing on it)."""
    return DECODED.get(sample["image"])


def image_bytes(image: Image.Image, format: str = "PNG") -> bytes:
    """A PIL image encoded to bytes (PNG by default: lossless)."""
    buf = io.BytesIO()
    image.save(buf, format=format)
    return buf.getvalue()
