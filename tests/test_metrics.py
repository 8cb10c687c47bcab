"""bas_zoo.metrics against hand-computed cases and straightforward references of the published code.

The references below are written from the published definitions (wsolevaluation: per-threshold
``cv2.findContours(RETR_TREE)`` boxes and ``np.histogram`` PxAP; the official BAS GT-known box) and
are deliberately naive: one OpenCV call per threshold, one histogram per image.
"""

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from bas_zoo.metrics import EVALUATE_MODULES, SegMetrics, WSOLMetrics
from bas_zoo.metrics._boxes import cam_thresholds, contour_box_ious, largest_contour_box
from bas_zoo.metrics._pixels import pixel_histograms, pxap_edges, score_bins

# ---- references --------------------------------------------------------------------------------


def ref_normalize(m):
    m = np.asarray(m, dtype=np.float32).copy()
    if np.isnan(m).any() or m.min() == m.max():
        return np.zeros_like(m)
    m -= m.min()
    m /= m.max()
    return m


def ref_boxes_at(scoremap, t):
    """wsolevaluation: all contour boxes (V2) and the largest-area contour box (V1) at one threshold."""
    h, w = scoremap.shape
    image = (scoremap * 255).astype(np.uint8)
    _, binary = cv2.threshold(image, int(t * np.max(image)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return [[0, 0, 0, 0]], [0, 0, 0, 0]

    def box(c):
        x, y, bw, bh = cv2.boundingRect(c)
        return [x, y, min(x + bw, w - 1), min(y + bh, h - 1)]

    return [box(c) for c in contours], box(max(contours, key=cv2.contourArea))


def ref_iou(a, b):
    a = np.asarray(a, dtype=np.int64)[:, None]
    b = np.asarray(b, dtype=np.int64)[None]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    union = (
        (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
        + (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
        - inter
    )
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def ref_box_hits(maps, gts, interval, deltas=(30, 50, 70)):
    thresholds = np.arange(0, 1, interval)
    v2 = np.zeros((len(deltas), len(thresholds)), dtype=np.int64)
    v1 = np.zeros(len(thresholds), dtype=np.int64)
    for m, gt in zip(maps, gts, strict=True):
        s = ref_normalize(m)
        for k, t in enumerate(thresholds):
            boxes, largest = ref_boxes_at(s, t)
            best = ref_iou(boxes, gt).max()
            for j, d in enumerate(deltas):
                v2[j, k] += best >= d / 100
            v1[k] += ref_iou([largest], gt).max() >= 0.5
    return v2, v1


def ref_pixel_hists(maps, masks, ignore, interval):
    edges = np.append(np.arange(0, 1, interval), [1.0, 2.0, 3.0])
    pos = np.zeros(len(edges) - 1)
    neg = np.zeros(len(edges) - 1)
    for m, gt, ig in zip(maps, masks, ignore, strict=True):
        s = ref_normalize(m)
        g = np.where(ig, 255, gt.astype(np.uint8))
        pos += np.histogram(s[g == 1], bins=edges)[0]
        neg += np.histogram(s[g == 0], bins=edges)[0]
    return pos, neg


def ref_pxap(pos, neg):
    tp = pos[::-1].cumsum()
    fn = pos.sum() - tp
    fp = neg[::-1].cumsum()
    nz = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    return (precision[1:] * np.diff(recall))[nz[1:]].sum() * 100


def blob_maps(n, rng, size_range=(32, 64)):
    """Smooth maps with several blobs, rings (holes) and speckle, to hit every code path."""
    out = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(*size_range, size=2))
        m = ndimage.gaussian_filter(rng.normal(size=(h, w)), rng.uniform(1.0, 3.0)) * rng.uniform(0.2, 1.0)
        yy, xx = np.mgrid[:h, :w]
        for _ in range(int(rng.integers(1, 4))):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 12)
            d = np.hypot(yy - cy, xx - cx)
            m += np.exp(-(((d - r * (i % 3 == 0)) / rng.uniform(2, 6)) ** 2))  # every 3rd: rings
        if i % 5 == 4:
            m += (rng.random((h, w)) > 0.97) * 2.0  # isolated pixels: zero-area contours, V1 ties
        out.append(m.astype(np.float32))
    return out


def random_gt(shape, rng):
    h, w = shape
    boxes = []
    for _ in range(int(rng.integers(1, 3))):
        x0, y0 = int(rng.integers(0, w - 2)), int(rng.integers(0, h - 2))
        boxes.append([x0, y0, int(rng.integers(x0 + 1, w)), int(rng.integers(y0 + 1, h))])
    return np.array(boxes)


# ---- MaxBoxAcc: hand-computed cases ------------------------------------------------------------


def v2_of(m):
    return {k: v for k, v in m.compute().items() if k.startswith("maxboxacc")}


def test_single_box_reference_off_by_one():
    m = np.zeros((10, 10), dtype=np.float32)
    m[2:6, 3:8] = 1.0  # rows 2..5, cols 3..7 -> contour box [3, 2, min(8, 9), min(6, 9)]
    metric = WSOLMetrics()
    metric.update(m[None], [np.array([[3, 2, 8, 6]])])
    assert v2_of(metric) == {
        "maxboxacc_v2": 100.0,
        "maxboxacc_v2@30": 100.0,
        "maxboxacc_v2@50": 100.0,
        "maxboxacc_v2@70": 100.0,
        "maxboxacc_v1": 100.0,
    }
    metric.reset()
    # the exact inclusive box of the blob only reaches IoU 20 / 30 against the reference's box
    metric.update(m[None], [np.array([[3, 2, 7, 5]])])
    out = metric.compute()
    assert out["maxboxacc_v2@50"] == 100.0 and out["maxboxacc_v2@70"] == 0.0
    assert out["maxboxacc_v2"] == pytest.approx(200 / 3)


def test_hole_box_counts_for_v2_not_v1():
    m = np.zeros((12, 12), dtype=np.float32)
    m[2:9, 2:9] = 1.0
    m[4:7, 4:7] = 0.0  # hole rows/cols 4..6 -> hole box [3, 3, min(6 + 2, 11), min(6 + 2, 11)]
    thresholds = np.array([0.0, 0.5])
    for box in ([2, 2, 9, 9], [3, 3, 8, 8]):  # outer contour, hole contour: both exact
        u8, best, count, _ = contour_box_ious(m[None], [np.array([box])], thresholds)
        assert best.tolist() == [[1.0, 1.0]] and count.tolist() == [[2, 2]]
    assert largest_contour_box(u8[0], 0) == [2, 2, 9, 9]
    metric = WSOLMetrics()
    metric.update(m[None], [np.array([[3, 3, 8, 8]])])
    out = metric.compute()
    assert out["maxboxacc_v2@70"] == 100.0  # the hole box matches exactly
    assert out["maxboxacc_v1"] == 100.0  # outer box: IoU 36 / 64 >= 0.5
    metric.reset()
    metric.update(m[None], [np.array([[4, 4, 7, 7]])])  # IoU 16/36 with the hole box, 16/64 outer
    out = metric.compute()
    assert out["maxboxacc_v2@30"] == 100.0 and out["maxboxacc_v2@50"] == 0.0 and out["maxboxacc_v1"] == 0.0


def test_several_regions_v1_takes_largest_contour():
    m = np.zeros((20, 20), dtype=np.float32)
    m[1:4, 1:4] = 1.0  # small
    m[8:18, 6:16] = 1.0  # large
    gt_small = np.array([[1, 1, 4, 4]])
    metric = WSOLMetrics()
    metric.update(m[None], [gt_small])
    out = metric.compute()
    assert out["maxboxacc_v2@70"] == 100.0 and out["maxboxacc_v1"] == 0.0


@pytest.mark.parametrize("bad", ["zeros", "constant", "nan"])
def test_empty_constant_nan_maps_give_zero_box(bad):
    m = {"zeros": np.zeros((8, 8)), "constant": np.full((8, 8), 0.3), "nan": np.full((8, 8), np.nan)}[bad]
    metric = WSOLMetrics()
    metric.update(m[None], [np.array([[0, 0, 0, 0]])])  # the reference's box without foreground
    assert metric.compute()["maxboxacc_v2"] == 100.0
    metric.reset()
    metric.update(m[None], [np.array([[0, 0, 5, 5]])])
    out = metric.compute()
    assert out["maxboxacc_v2"] == 0.0 and out["gt_known_loc"] == 0.0


def test_tie_at_cut_is_background():
    # u8 values 0, 127, 255; at t = 0.5 the cut is int(0.5 * 255) = 127: the 127 pixel is background
    m = np.array([[0.0, 0.5, 1.0]], dtype=np.float32).repeat(3, axis=0)
    u8 = (m * 255).astype(np.uint8)
    assert u8[0].tolist() == [0, 127, 255]
    thresholds = np.array([0.495, 0.5])  # cuts int(126.2) = 126 and 127
    best = contour_box_ious(m[None], [np.array([[1, 0, 2, 2]])], thresholds).best
    assert best[0, 0] == 1.0 and best[0, 1] < 1.0
    best = contour_box_ious(m[None], [np.array([[2, 0, 2, 2]])], thresholds).best
    assert best[0, 0] < 1.0 and best[0, 1] == 1.0


def test_gt_known_strict_vs_non_strict():
    m = np.zeros((10, 10), dtype=np.float32)
    m[0:2, 0:2] = 1.0  # BAS box [0, 0, 2, 2]: inclusive area 9
    gt = [np.array([[0, 0, 2, 5]])]  # inclusive area 18, intersection 9 -> IoU exactly 0.5
    lenient, strict = WSOLMetrics(loc_iou_strict=False), WSOLMetrics(loc_iou_strict=True)
    for metric in (lenient, strict):
        metric.update(m[None], gt, logits=np.array([[0.1, 0.9]]), labels=np.array([1]))
    assert lenient.compute()["gt_known_loc"] == 100.0 and strict.compute()["gt_known_loc"] == 0.0
    assert lenient.compute()["top1_loc"] == 100.0 and lenient.compute()["top1_cls"] == 100.0


def test_top1_top5_loc():
    m = np.zeros((3, 10, 10), dtype=np.float32)
    m[:, 2:6, 2:6] = 1.0
    gts = [np.array([[2, 2, 6, 6]])] * 2 + [np.array([[7, 7, 9, 9]])]  # last image: localization miss
    logits = np.tile(np.arange(8, dtype=np.float32), (3, 1))  # ranking 7, 6, 5, 4, 3, ...
    labels = np.array([7, 3, 7])  # right / top-5 only / right
    metric = WSOLMetrics()
    metric.update(torch.from_numpy(m), [torch.from_numpy(g) for g in gts], logits=logits, labels=labels)
    out = metric.compute()
    assert out["gt_known_loc"] == pytest.approx(200 / 3)
    assert out["top1_loc"] == pytest.approx(100 / 3) and out["top5_loc"] == pytest.approx(200 / 3)
    assert out["top1_cls"] == pytest.approx(200 / 3) and out["top5_cls"] == 100.0


def test_image_without_gt_never_hits():
    metric = WSOLMetrics()
    metric.update(np.ones((1, 6, 6)), [np.zeros((0, 4))])
    out = metric.compute()
    assert out["maxboxacc_v2"] == 0.0 and out["gt_known_loc"] == 0.0


# ---- MaxBoxAcc: agreement with the straightforward reference -----------------------------------


def noise_maps(n, rng, widths=(2, 40)):
    """Blurred noise quantized to a few levels: many components, holes, islands in holes, diagonals."""
    out = []
    for i in range(n):
        h, w = int(rng.integers(2, 40)), int(rng.integers(*widths))
        m = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.0, 1.5))
        out.append((np.round(m * 40) if i % 2 else m).astype(np.float32))
    return out


def test_contour_box_ious_match_reference_contours():
    """Best IoU and number of contours equal cv2.findContours(RETR_TREE) at every threshold."""
    rng = np.random.default_rng(0)
    thresholds = cam_thresholds(0.01)
    # rows of 1 to 4 64-bit words (runs across word boundaries), 64 and 128 exactly included
    maps = blob_maps(12, rng) + noise_maps(60, rng) + noise_maps(8, rng, widths=(60, 200))
    maps += [np.tile(m, (1, 2))[:, :w] for m, w in zip(noise_maps(2, rng, (64, 65)), (64, 128), strict=True)]
    settled_by_bounds = 0
    for m in maps:
        gt = random_gt(m.shape, rng) if min(m.shape) > 2 else np.array([[0, 0, 1, 1]])
        u8, best, count, v1 = contour_box_ious(m[None], [gt], thresholds)
        s = ref_normalize(m)
        np.testing.assert_array_equal(u8[0], (s * 255).astype(np.uint8))
        for k, t in enumerate(thresholds):
            binary = cv2.threshold(u8[0], int(t * np.max(u8[0])), 255, cv2.THRESH_BINARY)[1]
            n_contours = len(cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0])
            ref_all, ref_largest = ref_boxes_at(s, t)
            assert best[0, k] == ref_iou(ref_all, gt).max(), (m.shape, t)
            assert count[0, k] == max(n_contours, 1), (m.shape, t)
            assert largest_contour_box(u8[0], int(t * np.max(u8[0]))) == ref_largest
            if v1[0, k] != 2:  # settled without tracing: must be the reference's V1 hit
                assert v1[0, k] == (ref_iou([ref_largest], gt).max() >= 0.5), (m.shape, t)
        settled_by_bounds += int(np.sum((v1 == 1) & (count > 1)))
    assert settled_by_bounds > 0  # the area bounds do settle V1 among several contours


def test_contour_box_ious_batches_and_bad_input():
    rng = np.random.default_rng(1)
    maps = np.stack([m[:30, :30] for m in blob_maps(5, rng, size_range=(30, 31))])
    gts = [random_gt((30, 30), rng) for _ in maps]
    thresholds = cam_thresholds(0.05)
    batch = contour_box_ious(maps, gts, thresholds, threads=2)
    for i in range(len(maps)):  # a batch equals its maps one by one, float64 input included
        one = contour_box_ious(maps[i : i + 1].astype(np.float64), gts[i : i + 1], thresholds, threads=1)
        for got, want in zip(one, batch, strict=True):
            np.testing.assert_array_equal(got[0], want[i])
    assert np.all(contour_box_ious(maps[:1], [np.zeros((0, 4))], thresholds).best == -np.inf)
    with pytest.raises(ValueError, match="non-decreasing in"):
        contour_box_ious(maps, gts, thresholds[::-1])
    with pytest.raises(ValueError, match="GT box arrays"):
        contour_box_ious(maps, gts[:2], thresholds)


@pytest.mark.parametrize("interval", [0.01, 0.05])
def test_maxboxacc_identical_to_reference(interval):
    rng = np.random.default_rng(3)
    maps = blob_maps(20, rng, size_range=(32, 48))
    maps.append(np.zeros((40, 40), np.float32))
    maps.append(np.full((40, 40), np.nan, np.float32))
    gts = [random_gt(m.shape, rng) for m in maps]
    ref_v2, ref_v1 = ref_box_hits(maps, gts, interval)
    metric = WSOLMetrics(cam_curve_interval=interval)
    for m, g in zip(maps, gts, strict=True):  # maps of different sizes: batches of one
        metric.update(m[None], [g])
    np.testing.assert_array_equal(metric.box_v2_hits, ref_v2)
    np.testing.assert_array_equal(metric.box_v1_hits, ref_v1)
    out = metric.compute()
    n = len(maps)
    assert out["maxboxacc_v2@50"] == 100.0 * ref_v2[1].max() / n
    assert out["maxboxacc_v1"] == 100.0 * ref_v1.max() / n
    assert out["best_threshold_v1"] == np.arange(0, 1, interval)[np.argmax(ref_v1)]


def test_gt_known_matches_official_definition():
    rng = np.random.default_rng(5)
    maps = np.stack(blob_maps(12, rng, size_range=(40, 41)))
    gts = [random_gt(m.shape, rng) for m in maps]
    metric = WSOLMetrics(loc_threshold=0.3)
    metric.update(maps, gts)
    hits = 0
    for m, g in zip(maps, gts, strict=True):
        s = ref_normalize(m)
        lab, n = ndimage.label(s > 0.3, structure=np.ones((3, 3)))
        if n == 0:
            box = [0, 0, s.shape[1], s.shape[0]]
        else:
            sizes = np.bincount(lab.ravel())[1:]
            ys, xs = np.nonzero(lab == np.argmax(sizes) + 1)
            box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        hits += ref_iou([box], g).max() >= 0.5
    assert metric.compute()["gt_known_loc"] == 100.0 * hits / len(maps)


# ---- state reduction ---------------------------------------------------------------------------


class FakeAccelerator:
    """accelerate-like all-reduce across simulated processes: every process reduces the same state
    tensors in the same order, so the i-th call sums the i-th tensor of every peer."""

    device = torch.device("cpu")

    def __init__(self, peers):
        self.peers = peers
        self.names = list(peers[0])
        self.calls = 0

    def reduce(self, tensor, reduction="sum"):
        assert reduction == "sum"
        name = self.names[self.calls]
        self.calls += 1
        assert tensor.shape == self.peers[0][name].shape
        return sum(p[name] for p in self.peers)


def test_split_across_processes_equals_one_process():
    rng = np.random.default_rng(7)
    maps = np.stack(blob_maps(10, rng, size_range=(36, 37)))
    gts = [random_gt(m.shape, rng) for m in maps]
    masks = maps > np.median(maps)
    ignore = rng.random(maps.shape) > 0.9
    logits = rng.normal(size=(10, 6))
    labels = rng.integers(0, 6, 10)

    def feed(metric, sl):
        metric.update(
            maps[sl],
            gts[sl],
            gt_masks=masks[sl],
            ignore_masks=ignore[sl],
            logits=logits[sl],
            labels=labels[sl],
        )

    whole = WSOLMetrics()
    feed(whole, slice(0, 10))
    a, b = WSOLMetrics(), WSOLMetrics()
    feed(a, slice(0, 4))
    feed(b, slice(4, 10))
    states = [a.state_tensors(), b.state_tensors()]
    for proc in (a, b):
        proc.sync(FakeAccelerator(states))
    assert a.compute() == whole.compute() == b.compute()
    c, d = WSOLMetrics(), WSOLMetrics()
    feed(c, slice(0, 7))
    feed(d, slice(7, 10))
    c.merge(d)
    assert c.compute() == whole.compute()
    with pytest.raises(ValueError, match="different arguments"):
        WSOLMetrics(cam_curve_interval=0.1).merge(whole)


# ---- PxAP / PIoU -------------------------------------------------------------------------------


def test_score_bins_match_np_histogram_including_edges():
    for interval in (0.01, 0.001, 0.03):
        edges = pxap_edges(cam_thresholds(interval))
        rng = np.random.default_rng(11)
        v = np.concatenate(
            [rng.random(3000), edges[:-3], np.nextafter(edges[:-3], -1), [1.0, 0.0, 2.5, 3.0, 3.5, -0.1]]
        ).astype(np.float32)
        idx = score_bins(v, edges)
        inside = idx >= 0
        np.testing.assert_array_equal(
            np.bincount(idx[inside], minlength=len(edges) - 1), np.histogram(v, bins=edges)[0]
        )
        n = len(edges)
        assert idx[-6] == n - 3 and idx[-5] == 0 and idx[-4] == n - 2 and idx[-3] == n - 2
        assert idx[-2] == -1 and idx[-1] == -1


@pytest.mark.parametrize("interval", [0.01, 0.001])
def test_pxap_identical_to_per_image_histograms(interval):
    rng = np.random.default_rng(13)
    maps = np.stack(blob_maps(8, rng, size_range=(30, 31)))
    maps[0] = np.round(maps[0] * 20) / 20  # many scores exactly on bin edges
    masks = maps > np.quantile(maps, 0.7)
    ignore = rng.random(maps.shape) > 0.85
    metric = WSOLMetrics(cam_curve_interval=interval)
    metric.update(maps[:3], [np.zeros((0, 4))] * 3, gt_masks=masks[:3], ignore_masks=ignore[:3])
    gm = masks[3:].astype(np.uint8)
    gm[ignore[3:]] = 255  # the 0 / 1 / 255 mask encoding
    metric.update(maps[3:], [np.zeros((0, 4))] * 5, gt_masks=gm)
    pos, neg = ref_pixel_hists(maps, masks, ignore, interval)
    np.testing.assert_array_equal(metric.pos_hist, pos)
    np.testing.assert_array_equal(metric.neg_hist, neg)
    out = metric.compute()
    assert out["pxap"] == ref_pxap(pos, neg)
    # PIoU: best over thresholds of tp / (tp + fp + fn), a pixel being foreground when score >= t
    norm = np.stack([ref_normalize(m) for m in maps])
    pos_px, neg_px = norm[masks & ~ignore], norm[~masks & ~ignore]
    ious = [(pos_px >= x).sum() / (len(pos_px) + (neg_px >= x).sum()) for x in np.arange(0, 1, interval)]
    assert out["piou"] == pytest.approx(100 * max(ious))
    assert out["best_threshold_piou"] == np.arange(0, 1, interval)[int(np.argmax(ious))]


def test_pixel_histograms_generic_path_and_exact_multiples():
    rng = np.random.default_rng(23)
    v = rng.random((4, 9, 11)).astype(np.float32)
    v[0, 0, :6] = [0.0, 0.25, 0.5, 0.75, 1.0, 0.03]
    cls = rng.integers(0, 3, v.shape).astype(np.uint8)
    cls[cls == 2] = 255

    def ref(edges):
        return (np.histogram(v[cls == 1], bins=edges)[0], np.histogram(v[cls == 0], bins=edges)[0])

    # thresholds that are not k / N: guess-and-correct binning + bincount
    edges = pxap_edges(cam_thresholds(0.03))
    for got, want in zip(pixel_histograms(v, cls, edges), ref(edges), strict=True):
        np.testing.assert_array_equal(got, want)
    # k / N thresholds where an exact score k / N sits just below the edge t_k (float rounding)
    edges = pxap_edges(cam_thresholds(0.01))
    edges[50] = np.nextafter(0.5, 1.0)
    edges[25] = np.nextafter(0.25, 1.0)
    for got, want in zip(pixel_histograms(v, cls, edges), ref(edges), strict=True):
        np.testing.assert_array_equal(got, want)


def test_pxap_perfect_and_hand_computed():
    maps = np.array([[[0.0, 0.2, 0.8, 1.0]]], dtype=np.float32)
    masks = np.array([[[False, False, True, True]]])
    metric = WSOLMetrics(cam_curve_interval=0.1)
    metric.update(maps, [np.zeros((0, 4))], gt_masks=masks)
    out = metric.compute()
    assert out["pxap"] == pytest.approx(100.0) and out["piou"] == pytest.approx(100.0)
    assert 0.2 < out["best_threshold_piou"] <= 0.8


# ---- SegMetrics --------------------------------------------------------------------------------


def ref_confusion(scores, present, gt, thresholds, num_classes, ignore=255):
    k = num_classes + 1
    out = np.zeros((len(thresholds), k, k), dtype=np.int64)
    for j, t in enumerate(thresholds):
        for s, p, g in zip(scores, present, gt, strict=True):
            s = s.astype(np.float64).copy()
            s[~p] = -np.inf
            stack = np.concatenate([np.full((1, *g.shape), t), s])
            pred = stack.argmax(axis=0)
            valid = g != ignore
            np.add.at(out[j], (g[valid], pred[valid]), 1)
    return out


def test_seg_metrics_match_direct_reference():
    rng = np.random.default_rng(17)
    c = 4
    scores = rng.random((3, c, 12, 14)).astype(np.float32)
    scores[0, 1] = 0.3  # exactly on a threshold: background wins the tie
    present = rng.random((3, c)) > 0.4
    gt = rng.integers(0, c + 1, (3, 12, 14))
    gt[:, 0, :3] = 255
    metric = SegMetrics(c)
    metric.update(scores[:2], present[:2], gt[:2])
    metric.update(torch.from_numpy(scores[2:]), torch.from_numpy(present[2:]), torch.from_numpy(gt[2:]))
    ref = ref_confusion(scores, present, gt, metric.bg_thresholds, c)
    np.testing.assert_array_equal(metric.confusion, ref)
    out = metric.compute()
    j = int(np.argmax(out["miou_curve"]))
    conf = ref[j].astype(float)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    assert out["miou"] == pytest.approx(100 * np.mean(inter[union > 0] / union[union > 0]))
    assert out["best_bg_threshold"] == metric.bg_thresholds[j] and len(out["per_class_iou"]) == c + 1
    # all classes competing (no image labels)
    m2 = SegMetrics(c, bg_thresholds=[0.1, 0.5])
    m2.update(scores, None, gt)
    np.testing.assert_array_equal(
        m2.confusion, ref_confusion(scores, np.ones((3, c), bool), gt, [0.1, 0.5], c)
    )


def test_seg_metrics_reduction_and_perfect_prediction():
    gt = np.array([[[0, 1], [2, 255]]])
    scores = np.zeros((1, 2, 2, 2), dtype=np.float32)
    scores[0, 0, 0, 1] = 1.0
    scores[0, 1, 1, 0] = 1.0
    a, b = SegMetrics(2), SegMetrics(2)
    a.update(scores, None, gt)
    b.update(scores, None, gt)
    peers = [a.state_tensors(), b.state_tensors()]
    a.reduce(lambda t: sum(p["confusion"] for p in peers))
    assert int(a.confusion.sum()) == 2 * 3 * len(a.bg_thresholds)
    assert a.compute()["miou"] == 100.0


# ---- evaluate modules --------------------------------------------------------------------------


def test_evaluate_modules_load_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path)
    rng = np.random.default_rng(19)
    maps = blob_maps(3, rng, size_range=(20, 21))
    gts = [random_gt(m.shape, rng) for m in maps]
    wsol = evaluate.load(EVALUATE_MODULES["wsol_localization"])
    got = wsol.compute(predictions=maps, references=[g.tolist() for g in gts], loc_threshold=0.2)
    direct = WSOLMetrics(loc_threshold=0.2)
    direct.update(np.stack(maps), gts)
    assert got == direct.compute()

    scores = rng.random((2, 3, 6, 6)).astype(np.float32)
    gt = rng.integers(0, 4, (2, 6, 6))
    miou = evaluate.load(EVALUATE_MODULES["wsss_miou"] + "/wsss_miou.py")
    got = miou.compute(predictions=list(scores), references=list(gt), num_classes=3)
    seg = SegMetrics(3)
    seg.update(scores, None, gt)
    assert got == seg.compute()


def test_unbuilt_extension_error_names_the_fix(monkeypatch):
    import importlib
    import sys

    import bas_zoo.metrics._boxes as boxes

    monkeypatch.setitem(sys.modules, "bas_zoo.metrics._levelsets", None)  # as if never compiled
    with pytest.raises(ImportError, match=r"pip install -e \.") as err:
        importlib.reload(boxes)
    assert "C compiler" in str(err.value)
    monkeypatch.undo()
    importlib.reload(boxes)
