"""Speed of the streaming WSOL metrics against the straightforward published definitions. Prints JSON.

* MaxBoxAccV2 (interval 0.01 by default): the reference thresholds every uint8 map at every CAM
  threshold and runs ``cv2.findContours(RETR_TREE)`` + ``cv2.boundingRect`` on every contour, then
  IoU against the GT boxes, as clovaai/wsolevaluation does; ours is ``bas_zoo.metrics`` (``box_hits``,
  which WSOLMetrics.update calls), timed for V2 alone (the goal) and with V1 too (what
  WSOLMetrics.update computes: V1 traces the thresholds where the largest contour must be known).
  Both include map normalization and run single-threaded; ours is also timed on all cores (the
  compiled code releases the GIL and a batch is split over threads), the reference has no such mode.
* PxAP (interval 0.001 by default): the reference histograms every image's positive / negative
  scores with ``np.histogram``; ours bins whole batches (``pixel_histograms``).

Maps are BAS-like: a low-resolution (size / 8) field of smoothed noise plus one to three Gaussian
bumps, through a sigmoid, bilinearly upsampled (the way BAS maps are made); GT boxes surround the
strongest bumps, jittered. ``identical`` compares every hit count / histogram bin. Reference and
streaming run alternately on chunks of 100 maps, so both see the same (possibly shared) machine load.
``v1_traced_fraction`` is the share of (map, threshold) pairs V1 still traces.

    python benchmarks/metrics.py                 # 1,000 maps of 224 x 224
    python benchmarks/metrics.py --n 50 --size 64
    python benchmarks/metrics.py --blocky 7      # maps of 49 values: most thresholds share a level
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import cv2
import numpy as np
from scipy import ndimage

from bas_zoo.localize import normalize_maps
from bas_zoo.metrics._boxes import box_hits, cam_thresholds, contour_box_ious
from bas_zoo.metrics._pixels import pixel_histograms, pxap_edges, pxap_from_histograms


def make_data(
    n: int, size: int, seed: int, noise: float = 0.15
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """BAS-like maps (n, size, size) float32, GT boxes and GT masks (map of the main bump > 0.5).

    ``noise`` scales the smoothed background noise: it makes the small secondary blobs and holes that
    force contour tracing (0 gives clean bumps).
    """
    rng = np.random.default_rng(seed)
    low = max(4, size // 8)
    scale = size / low
    yy, xx = np.mgrid[:low, :low].astype(np.float64)
    maps = np.empty((n, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=bool)
    gts = []
    for i in range(n):
        field = ndimage.gaussian_filter(rng.normal(size=(low, low)), 1.0) * noise
        bumps = []
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0.1 * low, 0.9 * low, size=2)
            sy, sx = rng.uniform(0.05 * low, 0.2 * low, size=2)
            amp = rng.uniform(0.4, 1.2)
            bump = amp * np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
            field += bump
            box = [
                (cx - 1.5 * sx) * scale,
                (cy - 1.5 * sy) * scale,
                (cx + 1.5 * sx) * scale,
                (cy + 1.5 * sy) * scale,
            ]
            bumps.append((amp, box, bump))
        m = 1.0 / (1.0 + np.exp(-4.0 * (field - 0.3)))
        maps[i] = cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        bumps.sort(key=lambda b: -b[0])
        keep = bumps[: int(rng.integers(1, 3))]
        g = np.array([b for _, b, _ in keep]) + rng.normal(0, size / 50, (len(keep), 4))
        g = np.clip(np.round(g), 0, size - 1).astype(np.int64)
        g[:, 2] = np.maximum(g[:, 2], g[:, 0] + 1)
        g[:, 3] = np.maximum(g[:, 3], g[:, 1] + 1)
        gts.append(np.minimum(g, size - 1))
        main = cv2.resize(keep[0][2].astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        masks[i] = main > 0.5 * keep[0][0]
    return maps, gts, masks


def blocky_maps(n: int, size: int, cells: int, seed: int) -> np.ndarray:
    """(n, size, size) float32 maps of cells x cells random values, nearest-neighbour upsampled."""
    rng = np.random.default_rng(seed)
    low = rng.random((n, cells, cells)).astype(np.float32)
    return np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) for m in low])


# ---- straightforward references (published definitions) ---------------------------------------


def _normalize(cam: np.ndarray) -> np.ndarray:
    cam = cam.astype(np.float32).copy()
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def reference_maxboxacc(maps, gts, thresholds, iou_thresholds, largest: bool = False) -> np.ndarray:
    """wsolevaluation BoxEvaluator: per-threshold contour boxes, hit counts.

    multi_contour_eval=True (V2: every contour) by default; ``largest=True`` keeps only the contour of
    largest ``cv2.contourArea`` (V1, multi_contour_eval=False).
    """
    hits = np.zeros((len(iou_thresholds), len(thresholds)), dtype=np.int64)
    for cam, gt in zip(maps, gts, strict=True):
        scoremap = _normalize(cam)
        h, w = scoremap.shape
        image = (scoremap * 255).astype(np.uint8)
        boxes, counts = [], []
        for t in thresholds:
            _, binary = cv2.threshold(image, int(t * np.max(image)), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            if len(contours) == 0:
                boxes.append([0, 0, 0, 0])
                counts.append(1)
                continue
            if largest:
                contours = [max(contours, key=cv2.contourArea)]
            for c in contours:
                x, y, bw, bh = cv2.boundingRect(c)
                boxes.append([x, y, min(x + bw, w - 1), min(y + bh, h - 1)])
            counts.append(len(contours))
        b = np.asarray(boxes)[:, None]
        g = np.asarray(gt)[None]
        iw = np.maximum(0, np.minimum(b[..., 2], g[..., 2]) - np.maximum(b[..., 0], g[..., 0]) + 1)
        ih = np.maximum(0, np.minimum(b[..., 3], g[..., 3]) - np.maximum(b[..., 1], g[..., 1]) + 1)
        inter = iw * ih
        union = (
            (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
            + (g[..., 2] - g[..., 0] + 1) * (g[..., 3] - g[..., 1] + 1)
            - inter
        )
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0).max(axis=1)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        best = np.maximum.reduceat(iou, starts)
        for j, d in enumerate(iou_thresholds):
            hits[j] += best >= d / 100
    return hits


def reference_histograms(maps, masks, edges) -> tuple[np.ndarray, np.ndarray]:
    """wsolevaluation MaskEvaluator: one np.histogram of positives and one of negatives per image."""
    pos = np.zeros(len(edges) - 1)
    neg = np.zeros(len(edges) - 1)
    for cam, mask in zip(maps, masks, strict=True):
        scoremap = _normalize(cam)
        pos += np.histogram(scoremap[mask], bins=edges)[0]
        neg += np.histogram(scoremap[~mask], bins=edges)[0]
    return pos, neg


# ---- streaming ----------------------------------------------------------------------------------


def streaming_maxboxacc(maps, gts, thresholds, iou_thresholds, batch_size, largest=False, threads=1):
    """V2 hit counts (and V1's with ``largest``) batch by batch, as WSOLMetrics.update computes them."""
    v2 = np.zeros((len(iou_thresholds), len(thresholds)), dtype=np.int64)
    v1 = np.zeros(len(thresholds), dtype=np.int64)
    for s in range(0, len(maps), batch_size):
        sl = slice(s, s + batch_size)
        a, b = box_hits(maps[sl], gts[sl], thresholds, iou_thresholds, largest=largest, threads=threads)
        v2 += a
        if largest:
            v1 += b
    return v2, v1


def streaming_histograms(maps, masks, edges, batch_size) -> tuple[np.ndarray, np.ndarray]:
    pos = np.zeros(len(edges) - 1, dtype=np.int64)
    neg = np.zeros(len(edges) - 1, dtype=np.int64)
    for s in range(0, len(maps), batch_size):
        p, q = pixel_histograms(normalize_maps(maps[s : s + batch_size]), masks[s : s + batch_size], edges)
        pos += p
        neg += q
    return pos, neg


def untimed_v1_traced_fraction(maps, gts, thresholds) -> float:
    """Share of (map, threshold) pairs whose V1 box is traced (area bounds leave the largest contour open)."""
    return float(np.mean(contour_box_ious(maps, gts, thresholds).v1 == 2))


def _interleaved(n: int, chunk: int, *fns) -> tuple[list[list], list[float]]:
    """Run the functions chunk by chunk, alternating, so all see the same machine load."""
    outs: list[list] = [[] for _ in fns]
    times = [0.0] * len(fns)
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            outs[i].append(fn(sl))
            times[i] += time.perf_counter() - t0
    return outs, times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="number of maps")
    p.add_argument("--size", type=int, default=224, help="map side in pixels")
    p.add_argument("--interval", type=float, default=0.01, help="MaxBoxAcc CAM threshold interval")
    p.add_argument("--pxap-interval", type=float, default=0.001, help="PxAP threshold interval")
    p.add_argument("--batch-size", type=int, default=32, help="batch size of the streaming metrics")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=0.15, help="background noise amplitude of the maps")
    p.add_argument(
        "--blocky",
        type=int,
        default=0,
        metavar="N",
        help="instead: N x N random values upsampled by nearest neighbour (few distinct values, so most "
        "CAM thresholds share a level)",
    )
    args = p.parse_args()
    cv2.setNumThreads(1)  # both sides single-threaded

    maps, gts, masks = make_data(args.n, args.size, args.seed, args.noise)
    if args.blocky:
        maps = blocky_maps(args.n, args.size, args.blocky, args.seed)
    iou_thresholds = (30, 50, 70)
    thresholds = cam_thresholds(args.interval)
    chunk = max(args.batch_size, 100)
    cores = os.cpu_count() or 1
    (ref_parts, our_parts, both_parts, cores_parts), (t_ref, t_ours, t_both, t_cores) = _interleaved(
        args.n,
        chunk,
        lambda sl: reference_maxboxacc(maps[sl], gts[sl], thresholds, iou_thresholds),
        lambda sl: streaming_maxboxacc(maps[sl], gts[sl], thresholds, iou_thresholds, args.batch_size),
        lambda sl: streaming_maxboxacc(maps[sl], gts[sl], thresholds, iou_thresholds, args.batch_size, True),
        lambda sl: streaming_maxboxacc(
            maps[sl], gts[sl], thresholds, iou_thresholds, args.batch_size, threads=cores
        ),
    )
    ref_hits, hits = sum(ref_parts), sum(p[0] for p in our_parts)
    ref_v1 = reference_maxboxacc(maps, gts, thresholds, (50,), largest=True)[0]  # untimed
    acc = 100.0 * hits / args.n
    box = {
        "reference_s": round(t_ref, 3),
        "streaming_s": round(t_ours, 3),
        "speedup": round(t_ref / t_ours, 2),
        "identical": bool(np.array_equal(hits, ref_hits)),
        "maxboxacc_v2": round(float(acc.max(axis=1).mean()), 4),
        f"streaming_{cores}_threads_s": round(t_cores, 3),
        f"speedup_{cores}_threads": round(t_ref / t_cores, 2),
        f"identical_{cores}_threads": bool(np.array_equal(sum(p[0] for p in cores_parts), ref_hits)),
        "with_v1_s": round(t_both, 3),
        "with_v1_speedup": round(t_ref / t_both, 2),
        "v1_identical": bool(
            np.array_equal(sum(p[0] for p in both_parts), ref_hits)
            and np.array_equal(sum(p[1] for p in both_parts), ref_v1)
        ),
        "v1_traced_fraction": round(untimed_v1_traced_fraction(maps, gts, thresholds), 4),
    }

    edges = pxap_edges(cam_thresholds(args.pxap_interval))
    (ref_parts, our_parts), (t_ref_px, t_px) = _interleaved(
        args.n,
        chunk,
        lambda sl: reference_histograms(maps[sl], masks[sl], edges),
        lambda sl: streaming_histograms(maps[sl], masks[sl], edges, args.batch_size),
    )
    ref_pos, ref_neg = (sum(p[i] for p in ref_parts) for i in (0, 1))
    pos, neg = (sum(p[i] for p in our_parts) for i in (0, 1))
    ours_px = pxap_from_histograms(pos, neg, edges[:-3])
    ref_px = pxap_from_histograms(ref_pos, ref_neg, edges[:-3])
    pix = {
        "reference_s": round(t_ref_px, 3),
        "streaming_s": round(t_px, 3),
        "speedup": round(t_ref_px / t_px, 2),
        "identical": bool(
            np.array_equal(pos, ref_pos) and np.array_equal(neg, ref_neg) and ours_px == ref_px
        ),
        "pxap": round(ours_px["pxap"], 4),
    }
    result = {
        "n_maps": args.n,
        "size": args.size,
        "noise": args.noise,
        "blocky": args.blocky,
        "maxboxacc_v2": {"interval": args.interval, "thresholds": len(thresholds), **box},
        "pxap": {"interval": args.pxap_interval, "thresholds": len(edges) - 3, **pix},
        "batch_size": args.batch_size,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
