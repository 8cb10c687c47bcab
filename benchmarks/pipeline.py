"""Throughput of ``bas_zoo.pipeline`` on mixed-size photos against a bare forward and two CAM libraries.

    pip install torchcam grad-cam scikit-image
    python benchmarks/pipeline.py --model bas_resnet50 --batch 8 --repeats 3

Every method goes from the same list of uint8 photos of mixed sizes (scikit-image samples resized
to several sizes) to one map per image at THAT image's original size, on the same network with the
same weights ("same backbone" = the very same ``bas_resnet50`` instance, paper layout):

- ``pipeline``: the whole pipeline (decode, one resize per image, stacked normalization, logits and
  the top-k generator maps at 28 x 28, per-image map resize, boxes and masks), at the model's stored
  top-k (200 of 200 classes for bas_resnet50: the CUB setting, so the full generator runs). It runs
  its inference copy of the model (``optimize=True``, the default; built once when the pipeline is
  made, timed separately as ``pipeline_build_seconds``): BatchNorm folded into the convolutions and,
  on CPU, the wide 3 x 3 convolutions as Winograd F(2x2, 3x3); same outputs up to float rounding.
- ``pipeline_unoptimized``: the same with ``optimize=False``: the model as given, to show what the
  inference copy saves.
- ``pipeline_top1``: the same with top-k 1 (the ILSVRC setting): only the predicted class's
  generator filter runs (``model.class_maps``).
- ``bare_forward``: ``model(x)`` on a ready (B, 3, 224, 224) tensor: classification only, no
  preprocessing, no maps; the floor the pipeline is compared with (goal: within 1.2x).
- ``bare_forward_maps``: ``model.forward_maps(x)`` on the ready tensor (logits + all generator maps):
  the pipeline's forward at top-k = C, to split its cost into the generator conv and the
  pre/post-processing.
- ``torchcam_cam``: torchcam's ``CAM`` with ``target_layer="extractor"`` (the last feature maps) and
  ``fc_layer="classifier"`` (the 1 x 1 conv class head, which torchcam accepts as an fc layer): the
  class activation map of this classifier; then torchcam's own resize (``overlay_mask`` resizes the
  map with PIL bicubic) to each original size.
- ``pipeline_preprocess_only`` / ``pipeline_postprocess_only``: the pipeline's stages around the
  forward (decode + resize + normalize; map resize + boxes + masks), to show its own overhead.
- ``gradcam``: pytorch-grad-cam's ``GradCAM`` on the same target layer (one forward + backward of
  the predicted class, which it picks itself); it returns maps resized to the input tensor with
  cv2, then its own ``scale_cam_image`` resizes each to the original size.

Both CAM libraries get their input from the pipeline's vectorized preprocessing (timed), so the
comparison is extraction + resize. They, ``bare_forward`` and ``bare_forward_maps`` run the plain model
(eval, float32, weights in the default memory format; the preprocessed batch is a permuted NHWC
buffer, so its convolutions run channels_last, as the unoptimized pipeline's do). Methods run
round-robin, so load from other processes on a shared machine hits every method alike; ratios and
images/s use each method's fastest repeat (other processes only add time), medians are listed too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import PIL.Image
import timm
import torch
from _common import device_name, sync

import bas_zoo


def interleaved_times(
    fns: dict[str, Callable[[], object]], device: torch.device, repeats: int
) -> dict[str, list[float]]:
    """Wall times of each function over round-robin repeats (after one warm-up round).

    On a shared machine other processes only ever ADD time, so the minimum is the best estimate of a
    method's own cost; the median is reported too.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


SIZES = [(300, 451), (240, 320), (480, 640), (375, 500), (512, 384), (600, 800)]


def mixed_photos(n: int) -> list[np.ndarray]:
    """n uint8 RGB photos cycling through the scikit-image samples and SIZES (H, W)."""
    from skimage import data

    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    out = []
    for i in range(n):
        h, w = SIZES[i % len(SIZES)]
        image = PIL.Image.fromarray(photos[i % len(photos)]).resize((w, h), PIL.Image.Resampling.BILINEAR)
        out.append(np.asarray(image))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="bas_resnet50")
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from torchcam.methods import CAM
    from torchvision.transforms.functional import to_pil_image

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=args.num_classes).to(device).eval()
    start = time.perf_counter()
    pipe = bas_zoo.pipeline(model)
    build_seconds = time.perf_counter() - start
    pipe_plain = bas_zoo.pipeline(model, optimize=False)
    pipe_top1 = bas_zoo.pipeline(model, top_k=1)
    images = mixed_photos(args.batch)
    sizes = [im.shape[:2] for im in images]
    x = pipe.preprocess(images)["pixel_values"]

    def run_pipeline() -> object:
        return pipe(images, batch_size=args.batch)

    def run_pipeline_unoptimized() -> object:
        return pipe_plain(images, batch_size=args.batch)

    def run_pipeline_top1() -> object:
        return pipe_top1(images, batch_size=args.batch)

    inputs = pipe.preprocess(images)
    outputs = pipe.forward(inputs)

    def preprocess() -> object:
        return pipe.preprocess(images)

    def postprocess() -> object:
        return pipe.postprocess(outputs)

    def bare_forward() -> object:
        with torch.inference_mode():
            return model(x)

    def bare_forward_maps() -> object:
        with torch.inference_mode():
            return model.forward_maps(x)

    def torchcam_cam() -> list[PIL.Image.Image]:
        inputs = pipe.preprocess(images)["pixel_values"]
        with CAM(model, target_layer="extractor", fc_layer="classifier") as extractor, torch.no_grad():
            scores = model(inputs)
            cams = extractor(scores.argmax(-1).tolist(), scores)[0]
        return [to_pil_image(c.cpu(), mode="F").resize((w, h), PIL.Image.Resampling.BICUBIC)
                for c, (h, w) in zip(cams, sizes, strict=True)]  # fmt: skip

    def gradcam() -> list[np.ndarray]:
        inputs = pipe.preprocess(images)["pixel_values"]
        with GradCAM(model=model, target_layers=[model.extractor]) as cam:
            maps = cam(input_tensor=inputs, targets=None)  # None: the predicted class, one forward
        return [scale_cam_image(m[None], (w, h))[0] for m, (h, w) in zip(maps, sizes, strict=True)]

    fns = {"pipeline": run_pipeline, "pipeline_top1": run_pipeline_top1, "pipeline_unoptimized": run_pipeline_unoptimized,
           "bare_forward": bare_forward, "bare_forward_maps": bare_forward_maps,
           "torchcam_cam": torchcam_cam, "gradcam": gradcam,
           "pipeline_preprocess_only": preprocess, "pipeline_postprocess_only": postprocess}  # fmt: skip
    # Every method really produces one map per image at its original size.
    assert [r["map"].shape for r in run_pipeline()] == sizes
    assert [m.size[::-1] for m in torchcam_cam()] == sizes and [m.shape for m in gradcam()] == sizes
    times = interleaved_times(fns, device, args.repeats)
    t = {k: min(v) for k, v in times.items()}
    n = len(images)
    report = {
        "device": device_name(device),
        "model": args.model,
        "num_classes": args.num_classes,
        "input_size": list(pipe.input_size),
        "top_k": pipe.top_k,
        "pipeline_optimizations": pipe.optimizations,
        "pipeline_build_seconds": round(build_seconds, 2),
        "batch": n,
        "image_sizes_hw": [f"{h}x{w}" for h, w in sizes],
        "repeats": args.repeats,
        "seconds_per_batch_min": {k: round(v, 4) for k, v in t.items()},
        "seconds_per_batch_median": {k: round(statistics.median(v), 4) for k, v in times.items()},
        "images_per_second": {k: round(n / v, 2) for k, v in t.items()},  # from the minima
        "ratio_pipeline_vs_bare_forward": round(t["pipeline"] / t["bare_forward"], 3),
        "ratio_pipeline_top1_vs_bare_forward": round(t["pipeline_top1"] / t["bare_forward"], 3),
        "ratio_pipeline_vs_bare_forward_maps": round(t["pipeline"] / t["bare_forward_maps"], 3),
        "pipeline_pre_plus_post_vs_bare_forward": round(
            (t["pipeline_preprocess_only"] + t["pipeline_postprocess_only"]) / t["bare_forward"], 4
        ),
        "speedup_pipeline_vs_unoptimized": round(t["pipeline_unoptimized"] / t["pipeline"], 3),
        "speedup_pipeline_vs_torchcam_cam": round(t["torchcam_cam"] / t["pipeline"], 3),
        "speedup_pipeline_vs_gradcam": round(t["gradcam"] / t["pipeline"], 3),
        "speedup_pipeline_top1_vs_torchcam_cam": round(t["torchcam_cam"] / t["pipeline_top1"], 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
