"""The record that flows through stages, the shapes of its parts, and the failure a stage reports instead of it.

A sample is a dict (:class:`Sample`): ``id`` (stable, see :func:`make_id`), ``source`` (provenance of the seed
item) and the columns stages add (``image`` as encoded bytes, ``caption``, ``phrases``, ``regions``, ...). Every
per-item random choice is seeded with :func:`item_seed`.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import traceback
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

from PIL import Image
from typing_extensions import Required

from syngen.masks import RLE

Box = list[float]  # [x1, y1, x2, y2], pixels


class SourceRef(TypedDict):
    """Where a seed item came from: the source kind and the item (a relative file path, a dataset index or a
    captions-file line number, as text)."""

    kind: str
    item: str


class Synth(TypedDict):
    """How the synthesize stage made an image: its generator seed, its index among the caption's images, the
    parent sample's id and the prompt."""

    seed: int
    index: int
    parent: str
    prompt: str


class Negative(TypedDict):
    """A hard negative mask of a region (negatives stage): the SAM prompt that made it and how it compares."""

    kind: str  # "boundary", "semantic" or "instance" (another region of the phrase: no prompt)
    points: list[list[int]]  # [[x, y], ...] pixels
    labels: list[int]  # 1 foreground, 0 background, one per point
    iou: float  # with the region's mask
    seed: int | None  # of the point sampling (None for an instance negative)
    mask: RLE
    score: float | None  # SAM's predicted IoU (an instance negative's: its region's mask_score)
    multimask: bool  # True: the best of SAM's three masks (a single click); False: SAM's single-mask output


class View(TypedDict):
    """A DynRefer view of a region (views stage)."""

    t: float  # 0 = the region's box, 1 = the whole image
    box: Box  # the view's box in image pixels
    region_box: Box  # the region's box in the crop's pixels
    size: int  # side of the square crop
    score: float | None  # pHash score; None for random selection


class Region(TypedDict, total=False):
    """A phrase grounded in the image: its box (ground), mask (segment, or ground with SAM 3), negatives and views."""

    phrase: Required[str]
    box: Required[Box]
    box_score: float
    label: str  # the grounder's text of the detection's tokens, for information
    mask: RLE
    mask_score: float
    negatives: list[Negative]
    views: list[View]


class Sample(TypedDict, total=False):
    """One image's (or, before synthesis, one caption's) record; each stage adds its columns."""

    id: Required[str]
    source: SourceRef
    image: bytes
    width: int
    height: int
    caption: str
    synth: Synth
    phrases: list[str]
    regions: list[Region]
    ground_stats: dict[str, int]
    segment_stats: dict[str, int]
    negatives_stats: dict[str, int]


class ModelInfo(TypedDict):
    """A model a stage ran, as the export records it."""

    stage: str
    id: str
    revision: str | None


class Provenance(TypedDict):
    """An exported image's provenance: its seed item, how it was synthesized (None when it was not), the models."""

    source_kind: str | None
    source_item: str | None
    synth_seed: int | None
    synth_index: int | None
    synth_parent: str | None
    synth_prompt: str | None
    models: list[ModelInfo]


@dataclass
class Failure:
    """A sample a stage could not process: ``kind`` is a short machine-readable reason, ``message`` the human one."""

    kind: str
    message: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def of(cls, err: BaseException, message: str = "") -> Failure:
        """The failure an exception makes: its type as ``kind``, ``message`` (default: the exception's text),
        the end of its traceback as ``detail``."""
        detail = "".join(traceback.format_exception(err)[-3:])
        message = message or str(err)
        return cls(kind=type(err).__name__, message=_utf8(message)[:500], detail=_utf8(detail)[-2000:])


def _utf8(text: str) -> str:
    """``text`` as valid UTF-8: a file name's undecodable bytes (surrogate escapes) become ``\\xNN``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# what json.dumps(parts, sort_keys=True, default=str) builds on every call, built once (encode keeps no state)
_ID_JSON = json.JSONEncoder(sort_keys=True, default=str)


def make_id(*parts: Any) -> str:
    """A stable 16-hex-digit id from JSON-serialisable parts (the source item and the settings that made it)."""
    return hashlib.sha1(_ID_JSON.encode(parts).encode()).hexdigest()[:16]


def decode(data: bytes) -> Image.Image:
    """The RGB image encoded ``data`` holds."""
    return Image.open(io.BytesIO(data)).convert("RGB")


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
        """The RGB image ``data`` decodes to, decoded now unless it is kept."""
        with self._lock:
            image = self._images.get(data)
            if image is not None:
                self._images.move_to_end(data)
                return image
        image = decode(data)
        with self._lock:
            self.decodes += 1
        self.put(data, image)
        return image

    def clear(self) -> None:
        """Drop every image kept."""
        with self._lock:
            self._images.clear()

    def put(self, data: bytes, image: Image.Image) -> None:
        """Keep ``image``, the RGB image ``data`` decodes to, for the stages that need it (a stage that made or
        checked the image has it at hand: the next one need not decode it)."""
        with self._lock:
            self._images[data] = image
            self._images.move_to_end(data)
            while len(self._images) > self.limit:
                self._images.popitem(last=False)


# the decoded images of the run under way in this thread (bound by the engine's run context, syngen.engine.context);
# None outside a run: each image is decoded when asked for
RUN_IMAGES: ContextVar[DecodedImages | None] = ContextVar("syngen_run_images", default=None)


def keep_decoded(data: bytes, image: Image.Image) -> None:
    """Keep ``image``, the RGB image ``data`` decodes to, for the run's next stages (a stage that made or checked
    the image has it at hand); nothing outside a run."""
    if (images := RUN_IMAGES.get()) is not None:
        images.put(data, image)


def item_seed(*parts: Any, bits: int = 64) -> int:
    """A seed for one item's random choices, from JSON-serialisable parts (a base seed, the sample id, ...).

    The 64-bit number :func:`make_id` spells in hex, cut to ``bits`` bits: up to 32 bits keeps the low ones
    (31 for torch generators), more keeps the high ones (60: fits an int64 column). The cuts are those the stages
    have always used, so stored seeds and the data made from them stay the same.
    """
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in 1..64, got {bits}")
    value = int(make_id(*parts), 16)
    return value % 2**bits if bits <= 32 else value >> (64 - bits)


def load_image(sample: Sample) -> Image.Image:
    """The sample's ``image`` bytes decoded to an RGB PIL image, decoded once per wave (the image is shared
    between stages: copy it before drawing on it)."""
    images = RUN_IMAGES.get()
    return decode(sample["image"]) if images is None else images.get(sample["image"])


def image_bytes(image: Image.Image, format: str = "PNG", **options: Any) -> bytes:
    """A PIL image encoded to bytes (PNG by default: lossless); ``options`` go to PIL's encoder (e.g.
    ``compress_level``)."""
    buf = io.BytesIO()
    image.save(buf, format=format, **options)
    return buf.getvalue()
