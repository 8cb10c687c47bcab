"""The synthetic default dataset: small, local, deterministic, and hard in the way CUB is hard for CAM.

Why it looks like this
----------------------
Weakly supervised localizers fail in a specific way: a classifier trained with image labels only needs
the most discriminative PART of an object (a bird's head), so its class activation map (CAM) lights the
part and misses the rest. BAS fixes this by asking that the class score drop when the predicted
foreground is removed: if the body still carries class evidence, leaving it in the background keeps the
background score high, so the foreground map must grow to cover it. A test bed therefore needs:

1. A small, strong part. Each object has a "head", a disc of ``part_ratio`` (default 7 %) of the
   object's area, in a saturated class colour with a class pattern (none, dark dot, light dot, ring).
   Nothing else in the image is saturated, so the head alone gives the class almost surely.
2. A large body with WEAKER but real evidence. The body is an ellipse (15-45 % of the image, random
   aspect 1.5-2.6, rotation and side of the head) in a MUTED colour of the class's hue family (the
   saturated version is the head's) and striped with a class-specific stripe period and stripe
   direction relative to the body axis (along or across: both survive horizontal flips). The stripes
   are faint (``body_contrast``) and jittered, and with probability ``1 - body_evidence`` (default 0.4)
   the body wears the colour and stripes of a random class, so the body alone predicts the class well
   above chance (at best ``body_evidence + (1 - body_evidence) / C``) but clearly worse than the head. Per pixel the body is weak; summed over its area (which is what the
   global-average-pooled score S does) it is a large share of S. CAM, normalized by its peak, sees a
   faint body next to a bright head; BAS's background score sees the whole body's evidence.
   Check (a 4-layer CNN, 15 epochs at 64 px, two seeds): trained on the defaults it reaches 100 % test
   accuracy and 52 % on the same test images with the heads removed (``part=0``; chance 25 %, the
   body's Bayes limit about 70 %): the head decides, and the body holds real evidence the classifier
   does use. (An earlier variant whose bodies carried only a faint tint was classified on heads alone,
   32 % without heads, which would leave BAS nothing to suppress. Hiding 30 % of the train heads,
   ``part_dropout=0.3``, gave 93 % / 44 %, so it is off by default; val and test never hide heads.)
3. A background that carries no class information yet is not trivially separable: a smooth random
   colour field, ``clutter`` x ~7 random shapes (rectangles, discs, bars, some striped with the same
   stripe periods) and ``decoys`` (Poisson mean) headless body-like ellipses striped and tinted like a
   random class. All colours come from the same muted palette as the bodies, so colour alone does not
   segment the object, and since decoy classes are drawn independently of the label they carry no
   evidence about it.
4. Exact ground truth: ``mask`` is the whole object (body and head; class id + 1 in multi-label mode),
   ``bboxes`` its inclusive pixel bbox, ``part_bboxes`` the head's bbox (to check "CAM only finds the
   head"). Objects lie fully inside the image.

Options (spec ``synthetic:size=64,classes=4,per_class=200,seed=0,multilabel=0``): see
:class:`SyntheticOptions`. Splits ``train`` / ``val`` / ``test`` each hold ``per_class`` images per class,
drawn from seeds derived from ``seed`` and the split, so they are disjoint and reproducible: the same
options give byte-identical PNGs on every run. ``part=0`` removes the head (the mask then covers the body
only): train on normal data and test on ``part=0`` to measure how much evidence the body holds.

Generation is vectorized per image (numpy / OpenCV), about a millisecond per 64 px image, and the result
is cached with ``save_to_disk`` under ``~/.cache/bas_zoo/synthetic/<hash of the options>``.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
import os
from dataclasses import dataclass

import cv2
import datasets
import numpy as np

from .cache import cached_build
from .schema import box_feature, wsol_features

__all__ = ["SyntheticOptions", "make_synthetic", "generate_split", "render_example", "GENERATOR_VERSION"]

GENERATOR_VERSION = 5  # bump whenever the images change: it is part of the cache key
SPLITS = ("train", "val", "test")
_SHIFT = 4  # OpenCV sub-pixel bits for shape coordinates
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class SyntheticOptions:
    """Generator options; every field can be set in the spec (``synthetic:classes=10,clutter=0.5``)."""

    size: int = 64  # image side in pixels
    classes: int = 4  # number of classes (at most 96)
    per_class: int = 200  # images per class in each split (multi-label: images whose primary is the class)
    seed: int = 0
    multilabel: bool = False  # several objects of distinct classes per image, per-class masks
    max_objects: int = 3  # multi-label: 1..max_objects objects per image
    part_ratio: float = 0.07  # head area / object area
    body_evidence: float = 0.6  # probability that the body pattern is the object's own class
    body_contrast: float = 0.5  # strength of the body's stripes and colour tint (0: none, 1: strong)
    clutter: float = 1.0  # multiplier on the number of background shapes
    decoys: float = 0.6  # mean number of headless decoy bodies per image
    min_area: float = 0.15  # object area as a share of the image (single object)
    max_area: float = 0.45
    noise: float = 6.0  # std of the pixel noise, in 0-255 units
    part: bool = True  # draw the discriminative head
    part_dropout: float = 0.0  # train split only: share of objects whose head is hidden (occluded)

    def __post_init__(self) -> None:
        checks = [
            (self.size >= 16, "size must be >= 16"),
            (1 <= self.classes <= 96, "classes must be between 1 and 96"),
            (self.per_class >= 1, "per_class must be >= 1"),
            (self.max_objects >= 1, "max_objects must be >= 1"),
            (0.0 < self.part_ratio < 0.5, "part_ratio must be in (0, 0.5)"),
            (0.0 <= self.body_evidence <= 1.0, "body_evidence must be in [0, 1]"),
            (0.0 <= self.part_dropout < 1.0, "part_dropout must be in [0, 1)"),
            (0.0 <= self.body_contrast <= 2.0, "body_contrast must be in [0, 2]"),
            (
                self.clutter >= 0 and self.decoys >= 0 and self.noise >= 0,
                "clutter, decoys, noise must be >= 0",
            ),
            (0.01 <= self.min_area <= self.max_area <= 0.7, "need 0.01 <= min_area <= max_area <= 0.7"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Invalid synthetic option: {message}.")

    @classmethod
    def from_dict(cls, options: dict) -> SyntheticOptions:
        """Build from spec options, converting types and naming unknown keys."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise ValueError(f"Unknown synthetic option(s) {unknown}; valid options: {sorted(fields)}.")
        kwargs = {}
        for key, value in options.items():
            kind = type(cls.__dataclass_fields__[key].default)
            try:
                kwargs[key] = bool(int(value)) if kind is bool else kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"Synthetic option {key}={value!r} must be a {kind.__name__}.") from None
            if kind is int and float(value) != kwargs[key]:
                raise ValueError(f"Synthetic option {key}={value!r} must be an integer.")
        return cls(**kwargs)


# ------------------------------------------------------------------------------------------ appearance
def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255.0


@dataclass(frozen=True)
class _ClassStyle:
    hue: float  # class hue in [0, 1)
    head_rgb: np.ndarray  # saturated class colour
    pattern: int  # 0 solid, 1 dark dot, 2 light dot, 3 dark ring
    period: float  # body stripe period, as a share of the image side
    across: bool  # stripes across (True) or along (False) the body axis


_HUE_NAMES = (
    "red",
    "orange",
    "yellow",
    "lime",
    "green",
    "spring",
    "cyan",
    "azure",
    "blue",
    "violet",
    "magenta",
    "rose",
)
_PATTERN_NAMES = ("", " dot", " light dot", " ring")
_SHADE_NAMES = ("", "dark ", "deep ")


def class_names(classes: int) -> list[str]:
    """Readable class names from the head's look, e.g. ``red``, ``cyan dot``, ``dark blue ring``."""
    n_hue = min(classes, 8)
    names = []
    for c in range(classes):
        hue = _HUE_NAMES[round(((c % n_hue) / n_hue + 0.02) * 12) % 12]
        names.append(f"{_SHADE_NAMES[c // (n_hue * 4)]}{hue}{_PATTERN_NAMES[(c // n_hue) % 4]}")
    return names


def class_styles(classes: int) -> list[_ClassStyle]:
    """Deterministic class appearance (independent of the seed, so every split shares it)."""
    n_hue = min(classes, 8)
    n_period = max(1, math.ceil(classes / 2))
    styles = []
    for c in range(classes):
        shade = c // (n_hue * 4)
        hue = ((c % n_hue) / n_hue + 0.02) % 1.0
        head = _hsv(hue, 0.95, 1.0 - 0.22 * shade)
        level = (c // 2) / max(1, n_period - 1)
        period = (3.2 / 64) * (2.4**level)  # 3.2 .. 7.7 px at 64 px
        styles.append(_ClassStyle(hue, head, (c // n_hue) % 4, period, bool(c % 2)))
    return styles


def _hsv_array(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorized HSV -> RGB (0-255 float32) for arrays of colours."""
    k = (np.array([5.0, 3.0, 1.0]) + h[:, None] * 6.0) % 6.0
    rgb = v[:, None] * (1.0 - s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))
    return (rgb * 255.0).astype(np.float32)


def _muted(rng: np.random.Generator, count: int | None = None, saturation: float = 0.5) -> np.ndarray:
    """Colour(s) from the shared muted palette of bodies, decoys and clutter."""
    if count is None:  # one colour: plain Python is faster than small-array numpy
        h, s, v = rng.random(3)
        return _hsv(h, 0.08 + s * (saturation - 0.08), 0.3 + v * 0.5)
    return _hsv_array(rng.random(count), rng.uniform(0.08, saturation, count), rng.uniform(0.3, 0.8, count))


# ------------------------------------------------------------------------------------------- rendering
def _fill(
    image: np.ndarray, mask: np.ndarray, colour: np.ndarray, stripes: tuple | None = None, amp: float = 0
):
    """Paint ``colour`` where ``mask`` is set, plus ``amp`` x a sine grating ``stripes``.

    ``stripes = (cx, cy, angle, period_px, phase)``: a wave across direction ``angle`` (radians). Only
    the masked pixels are computed.
    """
    ys, xs = np.nonzero(mask)
    if stripes is None:
        image[ys, xs] = colour
        return
    cx, cy, angle, period, phase = stripes
    u = (xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)
    wave = np.sin(u * (2 * math.pi / period) + phase).astype(np.float32)
    image[ys, xs] = colour + amp * wave[:, None]


def _ellipse_mask(size: int, cx: float, cy: float, a: float, b: float, angle_deg: float) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    centre = (round(cx * _ONE), round(cy * _ONE))
    axes = (max(1, round(a * _ONE)), max(1, round(b * _ONE)))
    cv2.ellipse(mask, centre, axes, angle_deg, 0, 360, 1, -1, cv2.LINE_8, _SHIFT)
    return mask


def _disc_mask(size: int, cx: float, cy: float, r: float) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (round(cx * _ONE), round(cy * _ONE)), max(1, round(r * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
    return mask


def _background(rng: np.random.Generator, size: int, opts: SyntheticOptions, styles) -> np.ndarray:
    """Smooth muted colour field plus random shapes, some striped; no class information.

    Shapes are drawn into one label map and painted in a single vectorized pass.
    """
    grid = _muted(rng, 16, saturation=0.35).reshape(4, 4, 3)
    image = cv2.resize(grid, (size, size), interpolation=cv2.INTER_LINEAR)
    count = min(int(rng.poisson(8.0 * opts.clutter)), 254)
    if count == 0:
        return image
    centres = rng.uniform(0, size, (count, 2))
    extents = size * rng.uniform(0.06, 0.3, count)
    kinds = (rng.random(count) * 4).astype(np.intp)  # rotated rectangle, disc, bar, small ellipse
    angles = rng.uniform(0, 180, count)
    shapes = rng.random(count)  # aspect of rectangles and ellipses, thickness of bars
    periods = np.array([s.period for s in styles])[(rng.random(count) * len(styles)).astype(np.intp)]
    periods = size * periods * np.exp(rng.normal(0, 0.1, count))
    directions = rng.uniform(0, math.pi, count)
    phases = rng.uniform(0, 2 * math.pi, count)
    striped = rng.random(count) < 0.45  # striped like a body, with a random period and direction
    amps = 60.0 * opts.body_contrast * rng.uniform(0.6, 1.0, count) * striped
    colours = _muted(rng, count)
    labels = np.zeros((size, size), np.uint8)
    rows = zip(
        centres.tolist(), extents.tolist(), kinds.tolist(), angles.tolist(), shapes.tolist(), strict=True
    )
    for k, ((cx, cy), extent, kind, angle, shape) in enumerate(rows):  # plain floats: fast scalar maths
        centre = (round(cx * _ONE), round(cy * _ONE))
        if kind == 0:
            box = cv2.boxPoints(((cx, cy), (extent * (0.5 + 1.5 * shape), extent), angle))
            cv2.fillPoly(labels, [np.round(box * _ONE).astype(np.int32)], k + 1, cv2.LINE_8, _SHIFT)
        elif kind == 1:
            cv2.circle(labels, centre, max(1, round(extent / 2 * _ONE)), k + 1, -1, cv2.LINE_8, _SHIFT)
        elif kind == 2:
            dx, dy = extent * math.cos(math.radians(angle)), extent * math.sin(math.radians(angle))
            p0 = (round((cx - dx) * _ONE), round((cy - dy) * _ONE))
            p1 = (round((cx + dx) * _ONE), round((cy + dy) * _ONE))
            cv2.line(labels, p0, p1, k + 1, max(1, round(size * (0.015 + 0.035 * shape))), cv2.LINE_8, _SHIFT)
        else:
            axes = (max(1, round(extent / 2 * _ONE)), max(1, round(extent / 2 * (0.3 + 0.7 * shape) * _ONE)))
            cv2.ellipse(labels, centre, axes, angle, 0, 360, k + 1, -1, cv2.LINE_8, _SHIFT)
    # per shape: wave = amp * sin(a x + b y + c); one gather of a (count + 1, 7) table paints every pixel
    freq = 2 * math.pi / periods
    a, b = freq * np.cos(directions), freq * np.sin(directions)
    c = phases - a * centres[:, 0] - b * centres[:, 1]
    table = np.zeros((count + 1, 7), np.float32)
    table[1:] = np.column_stack([a, b, c, amps, colours])
    ys, xs = np.nonzero(labels)
    params = table[labels[ys, xs]]
    wave = np.sin(xs * params[:, 0] + ys * params[:, 1] + params[:, 2]) * params[:, 3]
    image[ys, xs] = params[:, 4:] + wave[:, None]
    return image


def _body(
    rng: np.random.Generator,
    image: np.ndarray,
    mask: np.ndarray,
    geom: tuple[float, float, float, float, float],
    style: _ClassStyle,
    opts: SyntheticOptions,
) -> None:
    """Paint a body with the cues of ``style`` into ``image`` where ``mask`` is set.

    Cues: a muted colour of the class hue family (mixed with a random muted colour when
    ``body_contrast`` < 0.5) and stripes with the class period and direction relative to the body axis.
    """
    cx, cy, _, _, angle = geom
    weight = min(1.0, 2.0 * opts.body_contrast)
    family = _hsv(style.hue + rng.normal(0, 0.03), rng.uniform(0.2, 0.45), rng.uniform(0.35, 0.8))
    colour = (1 - weight) * _muted(rng) + weight * family
    direction = math.radians(angle) + (math.pi / 2 if style.across else 0.0) + rng.normal(0, math.radians(8))
    period = mask.shape[0] * style.period * math.exp(rng.normal(0, 0.08))
    stripes = (cx, cy, direction, period, rng.uniform(0, 2 * math.pi))
    _fill(image, mask, colour, stripes, 60.0 * opts.body_contrast * rng.uniform(0.6, 1.0))


def _head(image: np.ndarray, cx: float, cy: float, r: float, style: _ClassStyle) -> np.ndarray:
    size = image.shape[0]
    head = _disc_mask(size, cx, cy, r)
    _fill(image, head, style.head_rgb)
    if style.pattern in (1, 2):
        dot = _disc_mask(size, cx, cy, 0.45 * r) & head
        _fill(image, dot, np.full(3, 30.0 if style.pattern == 1 else 245.0, np.float32))
    elif style.pattern == 3:
        ring = head & ~_disc_mask(size, cx, cy, 0.62 * r).astype(bool)
        _fill(image, ring.astype(np.uint8), np.full(3, 30.0, np.float32))
    return head


def _place(rng: np.random.Generator, size: int, area: float, opts: SyntheticOptions):
    """Body ellipse and head disc geometry for an object of ``area`` pixels, fully inside the image."""
    aspect = rng.uniform(1.5, 2.6)
    angle = rng.uniform(0, 180)
    side = 1.0 if rng.random() < 0.5 else -1.0
    scale = 1.0
    for _ in range(20):
        body_area = (1 - opts.part_ratio) * area * scale
        a = math.sqrt(body_area * aspect / math.pi)
        b = a / aspect
        r = math.sqrt(opts.part_ratio * area * scale / math.pi)
        t = math.radians(angle)
        ex = math.sqrt((a * math.cos(t)) ** 2 + (b * math.sin(t)) ** 2)
        ey = math.sqrt((a * math.sin(t)) ** 2 + (b * math.cos(t)) ** 2)
        hx, hy = side * (a + 0.3 * r) * math.cos(t), side * (a + 0.3 * r) * math.sin(t)
        lo_x, hi_x = min(-ex, hx - r), max(ex, hx + r)
        lo_y, hi_y = min(-ey, hy - r), max(ey, hy + r)
        if hi_x - lo_x < size - 3 and hi_y - lo_y < size - 3:
            cx = rng.uniform(1 - lo_x, size - 2 - hi_x)
            cy = rng.uniform(1 - lo_y, size - 2 - hi_y)
            return (cx, cy, a, b, angle), (cx + hx, cy + hy, r)
        scale *= 0.85
    raise RuntimeError("could not fit an object in the image; lower max_area")


def _bbox(mask: np.ndarray) -> list[float]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1]), float(rows[-1])]


def render_example(
    opts: SyntheticOptions, split: str, index: int, label: int, styles: list[_ClassStyle] | None = None
) -> dict:
    """Render one example: ``image`` (H, W, 3) uint8, ``mask`` (H, W) uint8, classes and boxes."""
    styles = styles or class_styles(opts.classes)
    rng = np.random.default_rng([opts.seed, SPLITS.index(split) if split in SPLITS else 99, index])
    size = opts.size
    image = _background(rng, size, opts, styles)

    for _ in range(rng.poisson(opts.decoys)):  # headless bodies of random classes: no label information
        area = size * size * rng.uniform(0.5, 1.0) * opts.min_area
        geom, _ = _place(rng, size, area, opts)
        decoy = _ellipse_mask(size, *geom)
        _body(rng, image, decoy, geom, styles[int(rng.random() * opts.classes)], opts)

    if opts.multilabel:
        count = int(rng.integers(1, opts.max_objects + 1))
        others = [c for c in rng.permutation(opts.classes) if c != label][: count - 1]
        classes = [label, *others]
        lo, hi = opts.min_area / math.sqrt(count), opts.max_area / count
        areas = sorted(rng.uniform(lo, max(lo, hi), count) * size * size, reverse=True)
    else:
        classes, areas = [label], [rng.uniform(opts.min_area, opts.max_area) * size * size]

    mask = np.zeros((size, size), np.uint8)
    objects: list[tuple[int, np.ndarray, np.ndarray]] = []  # class, object mask, head mask
    for number, (cls, area) in enumerate(zip(classes, areas, strict=True)):
        hidden = rng.random() < opts.part_dropout  # drawn in every split so that splits stay aligned
        has_head = opts.part and not (hidden and split == "train")
        for attempt in range(40):
            geom, (hx, hy, hr) = _place(rng, size, area * 0.9 ** (attempt // 10), opts)
            body = _ellipse_mask(size, *geom)
            head = _disc_mask(size, hx, hy, hr) if has_head else np.zeros_like(body)
            shape = (body | head).astype(bool)
            if number == 0 or not (cv2.dilate(mask, np.ones((3, 3), np.uint8)).astype(bool) & shape).any():
                break
        else:
            continue  # no free room for this extra object: leave it out
        cue = cls if rng.random() < opts.body_evidence else int(rng.random() * opts.classes)
        _body(rng, image, body, geom, styles[cue], opts)
        if has_head:
            head = _head(image, hx, hy, hr, styles[cls])
        mask[shape] = cls + 1 if opts.multilabel else 1
        objects.append((cls, shape, head.astype(bool)))

    if opts.noise > 0:
        image += (rng.standard_normal((size, size), dtype=np.float32) * np.float32(opts.noise))[..., None]
    image = np.clip(image, 0, 255).round().astype(np.uint8)
    pixels = [int(obj.sum()) for _, obj, _ in objects]
    return {
        "image": image,
        "mask": mask,
        "label": objects[int(np.argmax(pixels))][0],
        "labels": sorted(c for c, _, _ in objects),
        "bboxes": [_bbox(obj) for _, obj, _ in objects],
        "bbox_labels": [c for c, _, _ in objects],
        "part_bboxes": [_bbox(head) for _, _, head in objects if head.any()],
    }


# ----------------------------------------------------------------------------------------- datasets
def _png(array: np.ndarray) -> bytes:
    """Lossless PNG bytes. Noisy images barely compress, so they are stored (level 0, 3x faster);
    masks are run-length encoded (a few hundred bytes)."""
    if array.ndim == 3:
        array, params = np.ascontiguousarray(array[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 0]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, buffer = cv2.imencode(".png", array, params)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buffer.tobytes()


def features(opts: SyntheticOptions) -> datasets.Features:
    names = class_names(opts.classes)
    return wsol_features(
        names, multilabel=opts.multilabel, with_mask=True, extra={"part_bboxes": box_feature()}
    )


def generate_split(opts: SyntheticOptions, split: str) -> datasets.Dataset:
    """Generate one split in memory (no caching): ``per_class`` images per class, shuffled."""
    styles = class_styles(opts.classes)
    order = np.random.default_rng([opts.seed, SPLITS.index(split), 7]).permutation(
        opts.classes * opts.per_class
    )
    labels = order % opts.classes
    feats = features(opts)
    rows: dict[str, list] = {name: [] for name in feats}
    for index, label in enumerate(labels):
        example = render_example(opts, split, index, int(label), styles)
        rows["image"].append({"bytes": _png(example.pop("image")), "path": None})
        rows["mask"].append({"bytes": _png(example.pop("mask")), "path": None})
        rows["image_id"].append(f"{split}-{index:06d}")
        for key in feats:
            if key in example:
                rows[key].append(example[key])
    return datasets.Dataset.from_dict(rows, features=feats, split=split)


def make_synthetic(cache_dir: str | os.PathLike | None = None, **options) -> datasets.DatasetDict:
    """The synthetic dataset for ``options`` (see :class:`SyntheticOptions`), generated once and cached.

    The cache lives in ``<cache_dir>/synthetic/<hash>`` (default ``~/.cache/bas_zoo``); a second call with
    the same options reloads it memory-mapped.
    """
    opts = SyntheticOptions.from_dict(options)
    key = {"generator_version": GENERATOR_VERSION, **dataclasses.asdict(opts)}

    def build() -> datasets.DatasetDict:
        return datasets.DatasetDict({split: generate_split(opts, split) for split in SPLITS})

    return cached_build("synthetic", key, build, cache_dir)
