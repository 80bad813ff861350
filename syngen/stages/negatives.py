"""negatives: SAM-perturbed hard negative masks for every region (FG-DPA;
docs/methods.md#positive-masks-and-sam-perturbed-negatives), and sibling-instance negatives
(docs/methods.md#sibling-instance-negatives).

Needs ``image`` and ``regions`` (with ``mask`` from the segment stage); replaces ``regions``, adding to each
region ``negatives``: a list of ``{"kind": "boundary"|"semantic"|"instance", "points": [[x, y], ...], "labels":
[1|0, ...], "iou": float, "seed": int | None, "mask": RLE, "score": float | None, "multimask": bool}``, and adds
``negatives_stats``.

- boundary: the region's box plus ``points`` points inside it, each either a positive point on a pixel inside the
  box but outside the mask (overflow) or a negative point on the mask near its edge (omission), the kind drawn
  at random (or the kind that has pixels); accepted when the IoU with the positive mask lies in ``iou_band``.
- semantic: one positive point outside the region's box, no box; accepted when the IoU with the positive mask is
  at most ``semantic_max_iou`` and at most ``semantic_max_inside_box`` of the negative lies inside the box.
  A single click is ambiguous, so SAM gives its three masks and the one with the highest predicted IoU is taken
  (``multimask`` true); boundary prompts (box and points) use SAM's single-mask output (``multimask`` false).
- instance: the mask of another region of the same phrase (another box of it with ``keep: all``, SAM 3's other
  instances), as that region holds it, when its IoU with the positive mask is at most ``instance_max_iou``; the
  siblings of highest IoU first (ties: region order), at most ``instance_per_mask``, no model call, no points
  (``seed`` None, ``score`` the sibling's ``mask_score``). A region whose phrase has no other region gets none.
  They are taken before the SAM rounds, so a SAM candidate equal to a sibling's mask is not accepted twice.

Empty masks, a mask equal to the positive (IoU 1.0, whatever the bounds say: chosen and rejected must differ) and
a mask equal to one already accepted for the region are rejected too. Each wanted negative
(a slot: region, kind, slot number) gets up to ``max_tries`` attempts; attempt ``a`` draws its points from
``attempt_seed(seed, sample id, region, kind, slot, a)``, the seed recorded with the negative. The image
embedding comes from the segmenter's cache (the segment stage's ``embed`` under the sample id).

Decoder calls are batched across images, slots and attempts: a round runs, in one ``predict_batch`` call per
kind for all samples of the batch, the next attempts of every slot still open (1 attempt, then 2, 4, ...: at most
2 * ceil(log2(max_tries + 1)) calls per batch instead of 2 * max_tries per image), and each sample then accepts
candidates in the order of one attempt at a time, so its result is the same as trying one attempt after another
on that sample alone (with a real SAM, up to the last bits of the scores: other batch shapes round differently).
Area, overlap with the positive and overlap with the box are counted on the model's device: on a GPU with one
matrix product per image against its regions' masks (exact integers: 0/1 floats, float64 past 2**24 pixels), one
copy to the host per call, only accepted masks coming to the host; on the CPU as bit counts of packed masks (a
quarter of the matrix product's time). A candidate is compared with the region's accepted masks only where their
areas are equal. Point pools are flat pixel indices computed once per region (those outside the box, a semantic
click's, by arithmetic: :class:`OutsideBox`).

``negatives_stats``: ``boundary_accepted``, ``semantic_accepted``, ``instance_accepted``, ``tries`` (SAM attempts
used: candidates a slot considered, not counting those computed ahead for a slot that was done by then) and
``gave_up`` (slots left without a negative: retry limit reached, no mask / no pixel to draw points from, or no
sibling instance). Identity: ``boundary_accepted + semantic_accepted + instance_accepted + gave_up == regions *
(boundary_per_mask + semantic_per_mask + instance_per_mask)``, and ``boundary_accepted + semantic_accepted <= tries
<= max_tries * (boundary_per_mask + semantic_per_mask) * regions``.

Example::

    stage = Negatives(NegativesConfig(model="tiny:segmenter"), ctx)
    [update] = stage.outcomes([sample], segmenter)  # the adapter the segment stage embedded the images with
    update["regions"][0]["negatives"][0]["kind"]  # "boundary"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from syngen.masks import RLE, box_mask, box_span, clip_box, decode_rle, edge_band, encode_rle
from syngen.models.roles import Segmenter
from syngen.refs import ModelRef
from syngen.sample import Region, Sample, item_seed, load_image
from syngen.settings import Seed
from syngen.stages.base import ADDED_LATER, ModelStageConfig, Stage, Update

Points = tuple[list[list[int]], list[int]]
STATS = ("boundary_accepted", "semantic_accepted", "instance_accepted", "tries", "gave_up")
KINDS = ("boundary", "semantic")  # SAM's kinds; within an attempt, a region's boundary slots take theirs first
ROUND_GROWTH = 2  # each round of decoder calls runs this many times the attempts of the one before


class NegativesConfig(ModelStageConfig):
    """Settings of the negatives stage."""

    model: ModelRef | None = Field(
        None,
        description="Segmenter; None reuses the segment stage's model (without one, a SAM 3 ground stage's) and "
        "its cached image embeddings.",
    )
    boundary_per_mask: int = Field(2, ge=0, description="Boundary negatives wanted per region.")
    semantic_per_mask: int = Field(1, ge=0, description="Semantic negatives wanted per region.")
    points: int = Field(3, ge=1, description="Point prompts (k) added to the box for a boundary negative.")
    iou_band: tuple[float, float] = Field(
        (0.5, 0.9),
        strict=False,  # YAML gives a list; the floats stay strict
        description="[lo, hi], 0 <= lo < hi < 1: a boundary negative's IoU with the positive mask must lie in it.",
    )
    semantic_max_iou: float = Field(
        0.05, ge=0, le=1, description="Largest IoU of a semantic negative with the positive mask."
    )
    semantic_max_inside_box: float = Field(
        0.2, ge=0, le=1, description="Largest share of a semantic negative's pixels inside the positive box."
    )
    edge_band: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Width of the band along the mask's edge where omission points are drawn, as a share of the "
        "box's shorter side (at least 1 pixel).",
    )
    instance_per_mask: int = Field(
        0,
        ge=0,
        description="Sibling-instance negatives wanted per region: masks of other regions of the same phrase "
        "(keep: all, SAM 3's other instances), the highest IoU with the positive first.",
        json_schema_extra=ADDED_LATER,
    )
    instance_max_iou: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="Largest IoU of a sibling-instance negative with the positive mask (a sibling closer than "
        "this is more likely the same object found twice than another instance).",
        json_schema_extra=ADDED_LATER,
    )
    max_tries: int = Field(10, ge=1, description="SAM attempts per wanted negative before giving up.")
    seed: Seed = Field(0, description="Seed of the point sampling (with sample id, region, kind, slot, try).")

    @field_validator("iou_band")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0 <= lo < hi < 1:  # hi = 1 would accept the positive mask itself as its negative
            raise ValueError(f"need 0 <= lo < hi < 1, got [{lo}, {hi}]")
        return value


def attempt_seed(seed: int, sample_id: str, region: int, kind: str, slot: int, attempt: int) -> int:
    """The seed of one attempt's point sampling (60 bits: fits int64 columns)."""
    return item_seed(seed, sample_id, region, kind, slot, attempt, bits=60)


@dataclass(frozen=True)
class OutsideBox:
    """The flat indices of the pixels outside a box, in raster order, as ``np.flatnonzero(~box_mask(box, height,
    width))`` lists them but without listing them (a million at 1024 x 1024): ``len`` and ``[k]``. ``rows`` and
    ``cols``: the box's :func:`~syngen.masks.box_span`."""

    height: int
    width: int
    rows: slice
    cols: slice

    def __len__(self) -> int:
        return self.height * self.width - (self.rows.stop - self.rows.start) * (self.cols.stop - self.cols.start)

    def __getitem__(self, k: int | np.integer[Any]) -> int:
        k, inside = int(k), self.cols.stop - self.cols.start
        above, beside = self.rows.start * self.width, (self.rows.stop - self.rows.start) * (self.width - inside)
        if k < above or not inside:
            return k
        if k - above < beside:  # a row beside the box: its pixels left of the box, then those right of it
            row, col = divmod(k - above, self.width - inside)
            return (self.rows.start + row) * self.width + (col if col < self.cols.start else col + inside)
        return self.rows.stop * self.width + k - above - beside


Pool = np.ndarray | OutsideBox  # flat pixel indices: listed, or those outside a box


def boundary_pools(mask: np.ndarray, box: list[float], edge_share: float) -> tuple[np.ndarray, np.ndarray]:
    """The pixels to draw a region's boundary points from, as flat indices in raster order (what ``np.flatnonzero``
    gives of the full-image masks): (inside the box and outside the mask: overflow, on the mask's edge band inside
    the box: omission). Computed in a window around the box, so the cost follows the box's size, not the image's.
    """
    height, width = mask.shape
    rows, cols = box_span(box, height, width)
    band = max(1, round(edge_share * min(box[2] - box[0], box[3] - box[1])))
    # the band inside the box depends only on the mask within `band` pixels of it (a window edge inside the image
    # is never nearer than `band` to a pixel of the box, so it adds no false edge)
    top, left = max(0, rows.start - band), max(0, cols.start - band)
    window = mask[top : rows.stop + band, left : cols.stop + band]
    inner = (slice(rows.start - top, rows.stop - top), slice(cols.start - left, cols.stop - left))
    omission = edge_band(window, band)[inner]

    def flat(local: np.ndarray) -> np.ndarray:
        y, x = np.nonzero(local)
        return (y + rows.start) * width + x + cols.start

    return flat(~mask[rows, cols]), flat(omission)


def boundary_prompt(overflow: Pool, omission: Pool, width: int, k: int, seed: int) -> Points:
    """``k`` points: label 1 on an overflow pixel or label 0 on an omission pixel, each kind drawn at random.

    ``overflow`` and ``omission`` are flat pixel indices (as :func:`boundary_pools` gives them) in an image
    ``width`` pixels wide; at least one of them must be non-empty.
    """
    rng = np.random.default_rng(seed)
    pools = (omission, overflow)  # indexed by label
    points, labels = [], []
    for _ in range(k):
        label = int(rng.random() < 0.5) if len(pools[0]) and len(pools[1]) else int(len(pools[1]) > 0)
        points.append(_pixel(pools[label], width, rng))
        labels.append(label)
    return points, labels


def semantic_prompt(outside: Pool, width: int, seed: int) -> Points:
    """One positive point on a pixel of ``outside`` (flat indices of the pixels outside the positive box in an
    image ``width`` pixels wide; needs one)."""
    rng = np.random.default_rng(seed)
    return [_pixel(outside, width, rng)], [1]


def _pixel(flat: Pool, width: int, rng: np.random.Generator) -> list[int]:
    y, x = divmod(int(flat[rng.integers(len(flat))]), width)
    return [x, y]


@dataclass
class _Region:
    """What every slot of one region checks its candidates against: its box, the row of its positive mask in its
    image's reference masks (the box's mask is the next row), the positive's area, and the negatives accepted so
    far (a region never gets the same mask twice)."""

    box: list[float]
    row: int
    positive_area: int
    accepted: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (area, mask)


@dataclass
class _Slot:
    """One wanted negative: the region it belongs to, its kind and number, and the pixels its points come from
    (flat indices, as :func:`boundary_prompt` and :func:`semantic_prompt` take them)."""

    region: int
    kind: str
    number: int
    pools: tuple[Pool, ...]
    shared: _Region
    done: bool = False


@dataclass
class _Image:
    """One sample's work: the regions that receive negatives, their stats and slots, ``refs``, each usable
    region's positive mask and box mask as rows (2 * regions, H * W) as :func:`_references` gives them, and the
    accepted candidates, in order, each with its mask's RLE (None: encoded by :meth:`update`)."""

    key: str
    regions: list[Region]
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATS, 0))
    slots: list[_Slot] = field(default_factory=list)
    refs: torch.Tensor | np.ndarray | None = None
    width: int = 0
    accepted: list[tuple[_Slot, _Candidate, RLE | None]] = field(default_factory=list)

    def update(self) -> Update:
        """The sample's update, its accepted masks RLE-encoded: ``regions`` with ``negatives``, and
        ``negatives_stats``."""
        self.stats["gave_up"] += sum(not s.done for s in self.slots)
        for slot, candidate, rle in self.accepted:
            self.regions[slot.region]["negatives"].append(
                {
                    "kind": slot.kind,
                    "points": candidate.points,
                    "labels": candidate.labels,
                    "iou": candidate.iou,
                    "seed": candidate.seed,
                    "mask": encode_rle(candidate.mask.cpu().numpy()) if rle is None else rle,
                    "score": candidate.score,
                    "multimask": slot.kind == "semantic",
                }
            )
        return {"regions": self.regions, "negatives_stats": self.stats}


@dataclass
class _Candidate:
    """One attempt's mask (on the model's device), its prompt, and what acceptance looks at."""

    mask: torch.Tensor
    points: list[list[int]]
    labels: list[int]
    seed: int | None
    score: float | None
    area: int
    iou: float
    share_in_box: float


def _references(masks: np.ndarray, device: Any) -> torch.Tensor | np.ndarray:
    """An image's reference masks, (rows, H * W) bools, as :func:`_measure` counts against them: on the CPU their
    :func:`_packed` bits, elsewhere 0/1 floats on ``device`` (float32 counts pixels exactly up to 2**24 per image,
    float64 beyond)."""
    if torch.device(device).type != "cuda":
        return _packed(masks)
    dtype = torch.float32 if masks.shape[1] <= 2**24 else torch.float64
    return torch.as_tensor(masks, device=device).to(dtype)


def _packed(masks: np.ndarray) -> np.ndarray:
    """(rows, N) bools as their bits packed in uint64 words, (rows, ceil(N / 64)), the last padded with zero bits:
    words' bits count faster than bytes' (docs/benchmarks.md#figures-behind-the-code)."""
    packed = np.packbits(masks, axis=1)
    if pad := -packed.shape[1] % 8:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return packed.view(np.uint64)


def _measure(masks: torch.Tensor, scores: Any, refs: torch.Tensor | np.ndarray | None, rows: list[int]) -> torch.Tensor:
    """(N, 4) on ``masks``' device: each mask's area, its overlap with its region's positive mask (row ``rows[j]``
    of ``refs``, see :func:`_references`) and with the region's box mask (the next row), and its score."""
    assert refs is not None  # an image with candidates has usable regions
    score = torch.as_tensor(scores)
    if isinstance(refs, np.ndarray):  # packed bits on the CPU: the pixels both masks hold are the bits both set
        packed = _packed(masks.numpy().reshape(len(masks), -1))
        positive, box = refs[rows], refs[[row + 1 for row in rows]]
        bits = [np.bitwise_count(b).sum(1, dtype=np.int64) for b in (packed, packed & positive, packed & box)]
        return torch.from_numpy(np.stack([*bits, score.double().numpy()], 1, dtype=np.float64))
    flat = masks.flatten(1).to(refs)  # 0/1 floats: the matrix product counts pixels exactly
    counts = flat @ refs.T  # overlap with every positive and box mask of the image
    jobs, picked = torch.arange(len(rows), device=counts.device), torch.tensor(rows, device=counts.device)
    return torch.stack([flat.sum(1), counts[jobs, picked], counts[jobs, picked + 1], score.to(counts)], 1)


def _pending(slots: list[_Slot], kind: str) -> list[_Slot]:
    return [s for s in slots if s.kind == kind and not s.done]


class Negatives(Stage[NegativesConfig, Segmenter]):
    """Adds SAM-perturbed boundary and semantic hard negatives to every region (see the module docstring)."""

    name = "negatives"
    needs = ("image", "regions")
    adds = ("regions", "negatives_stats")
    Config = NegativesConfig
    role = "segmenter"
    default_backend = "sam"

    def process(self, samples: list[Sample], model: Segmenter) -> list[_Image]:
        """Per sample, its negatives chosen (:meth:`finish` encodes their masks): the SAM decoder rounds over the
        whole batch, each sample accepting candidates one attempt at a time."""
        todo = [s for s in samples if any(r.get("mask") for r in s.get("regions") or [])]
        if todo:  # a cache hit for images the segment stage embedded
            model.embed([load_image(s) for s in todo], [s["id"] for s in todo])
        device = getattr(model, "device", "cpu")
        images = [self._prepare(sample, device) for sample in samples]
        attempt, span = 0, 1
        while attempt < self.config.max_tries and any(not s.done for image in images for s in image.slots):
            attempts = range(attempt, min(attempt + span, self.config.max_tries))
            candidates = {kind: self._candidates(model, kind, attempts, images) for kind in KINDS}
            for i, image in enumerate(images):
                for a in attempts:  # acceptance one attempt at a time: results depend neither on span nor on batch
                    for kind in KINDS:
                        for slot in _pending(image.slots, kind):
                            image.stats["tries"] += 1
                            self._consider(candidates[kind][i, slot.region, slot.number, a], slot, image)
            attempt, span = attempt + span, ROUND_GROWTH * span
        return images

    def finish(self, sample: Sample, image: _Image) -> Update:
        """``regions`` with ``negatives`` (the accepted masks RLE-encoded), and ``negatives_stats``."""
        return image.update()

    def _prepare(self, sample: Sample, device: Any) -> _Image:
        """A sample's regions (each with an empty ``negatives``), slots and reference masks; regions without a
        usable mask give up their slots at once."""
        cfg = self.config
        image = _Image(sample["id"], [{**r, "negatives": []} for r in sample.get("regions") or []])
        refs: list[np.ndarray] = []
        usable: dict[int, tuple[np.ndarray, _Region]] = {}
        for i, region in enumerate(image.regions):
            # in raster order once (pycocotools decodes column by column), not in every use below
            mask = np.ascontiguousarray(decode_rle(region["mask"])) if region.get("mask") else None
            if mask is None or not mask.any():
                image.stats["gave_up"] += cfg.boundary_per_mask + cfg.semantic_per_mask + cfg.instance_per_mask
                continue
            height, width = mask.shape
            box = clip_box(region["box"], width, height)
            inside = box_mask(box, height, width)
            shared = _Region(box, len(refs), int(np.count_nonzero(mask)))
            usable[i] = (mask, shared)
            refs += [mask, inside]
            image.width = width
            pools: dict[str, tuple[Pool, ...]] = {
                "boundary": boundary_pools(mask, box, cfg.edge_band),
                "semantic": (OutsideBox(height, width, *box_span(box, height, width)),),
            }
            for kind, wanted in (("boundary", cfg.boundary_per_mask), ("semantic", cfg.semantic_per_mask)):
                if any(len(pool) for pool in pools[kind]):
                    image.slots += [_Slot(i, kind, n, pools[kind], shared) for n in range(wanted)]
                else:
                    image.stats["gave_up"] += wanted
        if refs:
            image.refs = _references(np.stack(refs).reshape(len(refs), -1), device)
        if cfg.instance_per_mask:
            self._siblings(image, usable, device)
        return image

    def _siblings(self, image: _Image, usable: dict[int, tuple[np.ndarray, _Region]], device: Any) -> None:
        """Accepts each usable region's sibling-instance negatives (see the module docstring): the masks of the
        other usable regions of its phrase, as those regions hold them; slots without one give up."""
        cfg = self.config
        by_phrase: dict[str, list[int]] = {}
        for i in usable:
            by_phrase.setdefault(image.regions[i]["phrase"], []).append(i)
        for members in by_phrase.values():
            ious = {}
            for i, j in combinations(members, 2):
                (a, _), (b, _) = usable[i], usable[j]
                ious[i, j] = ious[j, i] = float((a & b).sum() / (a | b).sum())
            for i in members:
                siblings = sorted((j for j in members if j != i), key=lambda j: (-ious[i, j], j))
                taken: list[int] = []
                for j in siblings:
                    if len(taken) == cfg.instance_per_mask:
                        break
                    mask, area = usable[j][0], usable[j][1].positive_area
                    if ious[i, j] > cfg.instance_max_iou or any(np.array_equal(mask, usable[t][0]) for t in taken):
                        continue  # likely the same object found twice; or two siblings of one mask: one negative
                    taken.append(j)
                    shared, on_device = usable[i][1], torch.as_tensor(mask, device=device)
                    shared.accepted.append((area, on_device))
                    score = image.regions[j].get("mask_score")
                    candidate = _Candidate(on_device, [], [], None, score, area, ious[i, j], 0.0)
                    slot = _Slot(i, "instance", len(taken) - 1, (), shared, True)
                    image.accepted.append((slot, candidate, image.regions[j]["mask"]))
                image.stats["instance_accepted"] += len(taken)
                image.stats["gave_up"] += cfg.instance_per_mask - len(taken)

    def _candidates(
        self, model: Segmenter, kind: str, attempts: range, images: list[_Image]
    ) -> dict[tuple[int, int, int, int], _Candidate]:
        """Candidate negatives of ``kind`` for every open slot of every image and every attempt, all in one
        ``predict_batch`` call: (image index, region, slot number, attempt) -> the candidate, with its IoU,
        emptiness and share in the box measured on the model's device."""
        cfg = self.config
        work = []  # (image index, image, its jobs: (slot, attempt, seed), their prompts)
        for i, image in enumerate(images):
            jobs = [
                (s, a, attempt_seed(cfg.seed, image.key, s.region, kind, s.number, a))
                for a in attempts
                for s in _pending(image.slots, kind)
            ]
            if kind == "boundary":
                prompts = [
                    boundary_prompt(s.pools[0], s.pools[1], image.width, cfg.points, seed) for s, _, seed in jobs
                ]
            else:
                prompts = [semantic_prompt(s.pools[0], image.width, seed) for s, _, seed in jobs]
            if jobs:
                work.append((i, image, jobs, prompts))
        if not work:
            return {}
        results = model.predict_batch(
            [image.key for _, image, _, _ in work],
            boxes=None
            if kind == "semantic"
            else [np.array([s.shared.box for s, _, _ in jobs], dtype=np.float32) for _, _, jobs, _ in work],
            points=[np.array([p for p, _ in prompts], dtype=np.float32) for *_, prompts in work],
            labels=[np.array([labels for _, labels in prompts], dtype=np.int64) for *_, prompts in work],
            multimask=kind == "semantic",  # a single click: the best of SAM's three masks
            host=False,
        )
        masks = [torch.as_tensor(m) for m, _ in results]
        measures = [
            _measure(mask, scores, image.refs, [s.shared.row for s, _, _ in jobs])
            for (_, image, jobs, _), mask, (_, scores) in zip(work, masks, results, strict=True)
        ]
        values = torch.cat(measures).double().tolist()  # one transfer to the host for the whole call
        candidates = {}
        start = 0
        for (i, _, jobs, prompts), mask in zip(work, masks, strict=True):
            mine, start = values[start : start + len(jobs)], start + len(jobs)
            for (slot, a, seed), (points, labels), one, (area, inter, in_box, score) in zip(
                jobs, prompts, mask, mine, strict=True
            ):
                union = area + slot.shared.positive_area - inter
                candidates[i, slot.region, slot.number, a] = _Candidate(
                    mask=one,
                    points=points,
                    labels=labels,
                    seed=seed,
                    score=score,
                    area=int(area),
                    iou=float(np.float64(inter) / union) if union else 0.0,
                    share_in_box=float(np.float64(in_box) / area) if area else 0.0,
                )
        return candidates

    def _consider(self, candidate: _Candidate, slot: _Slot, image: _Image) -> None:
        """Accepts ``candidate`` for ``slot`` when it meets the bounds of its kind and equals no negative already
        accepted for the region (the mask comes to the host only then, in :meth:`finish`)."""
        if not self._acceptable(slot.kind, candidate) or any(
            area == candidate.area and torch.equal(candidate.mask, other) for area, other in slot.shared.accepted
        ):
            return
        slot.shared.accepted.append((candidate.area, candidate.mask))
        image.accepted.append((slot, candidate, None))
        slot.done = True
        image.stats[f"{slot.kind}_accepted"] += 1

    def _acceptable(self, kind: str, candidate: _Candidate) -> bool:
        """Whether a candidate mask is non-empty, differs from the positive and meets the bounds of its kind."""
        cfg = self.config
        if not candidate.area or candidate.iou >= 1.0:
            return False
        if kind == "boundary":
            return cfg.iou_band[0] <= candidate.iou <= cfg.iou_band[1]
        return candidate.iou <= cfg.semantic_max_iou and candidate.share_in_box <= cfg.semantic_max_inside_box
