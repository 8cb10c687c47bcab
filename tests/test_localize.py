"""bas_zoo.localize: normalization, masks and boxes against hand-computed cases and scikit-image."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.measure import label, regionprops

from bas_zoo.localize import boxes_from_map, boxes_from_maps, mask_from_map, normalize_map, normalize_maps


def test_normalize_map_reference_convention():
    m = np.array([[2.0, 4.0], [6.0, 10.0]], dtype=np.float32)
    out = normalize_map(m)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[0, 0.25], [0.5, 1.0]], dtype=np.float32))
    # NaN anywhere, or a constant map -> zeros
    assert not normalize_map(np.array([[np.nan, 1.0], [2.0, 3.0]])).any()
    assert not normalize_map(np.full((3, 3), 7.0)).any()
    # torch input, float64 kept
    t = normalize_map(torch.tensor([[0.0, 5.0]], dtype=torch.float64))
    assert t.dtype == np.float64 and t.tolist() == [[0.0, 1.0]]


def test_normalize_maps_batched_matches_per_map():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(4, 6, 5)).astype(np.float32)
    maps[1] = 3.0
    maps[2, 0, 0] = np.nan
    out = normalize_maps(maps)
    for i in range(4):
        np.testing.assert_array_equal(out[i], normalize_map(maps[i]))
    assert not out[1].any() and not out[2].any()


def test_mask_is_strict_at_threshold():
    m = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert mask_from_map(m, 0.5).tolist() == [[False, False, True]]
    assert mask_from_map(m, 0.49).tolist() == [[False, True, True]]
    # degenerate maps never have foreground, even below zero
    assert not mask_from_map(np.ones((2, 2)), -1.0).any()


def test_single_box_convention():
    m = np.zeros((10, 12), dtype=np.float32)
    m[2:6, 3:8] = 1.0  # rows 2..5, cols 3..7
    np.testing.assert_array_equal(boxes_from_map(m, 0.1), [[3, 2, 8, 6]])  # [x0, y0, x1 + 1, y1 + 1]
    np.testing.assert_array_equal(boxes_from_map(torch.from_numpy(m), 0.1, mode="all"), [[3, 2, 8, 6]])


def test_several_regions_largest_and_all():
    m = np.zeros((8, 10), dtype=np.float32)
    m[0:2, 0:2] = 1.0  # 4 px, first in raster order
    m[5:7, 7:9] = 1.0  # 4 px (tie)
    m[3, 4] = 1.0  # 1 px
    m[4, 5] = 1.0  # diagonal neighbour: same 8-connected component (2 px)
    np.testing.assert_array_equal(
        boxes_from_map(m, 0.5, mode="all"), [[0, 0, 2, 2], [4, 3, 6, 5], [7, 5, 9, 7]]
    )
    # tie on pixel count -> first in raster order
    np.testing.assert_array_equal(boxes_from_map(m, 0.5), [[0, 0, 2, 2]])
    m[6, 9] = 1.0  # now the lower-right component is the largest
    np.testing.assert_array_equal(boxes_from_map(m, 0.5), [[7, 5, 10, 7]])


def test_holes_do_not_split_a_component():
    m = np.zeros((9, 9), dtype=np.float32)
    m[1:8, 1:8] = 1.0
    m[3:6, 3:6] = 0.0
    np.testing.assert_array_equal(boxes_from_map(m, 0.5, mode="all"), [[1, 1, 8, 8]])


@pytest.mark.parametrize("bad", [np.zeros((5, 7)), np.full((5, 7), 3.0), np.full((5, 7), np.nan)])
def test_no_foreground_gives_whole_image(bad):
    np.testing.assert_array_equal(boxes_from_map(bad, 0.1), [[0, 0, 7, 5]])
    assert boxes_from_map(bad, 0.1, mode="all").shape == (0, 4)


def test_threshold_above_everything():
    m = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    np.testing.assert_array_equal(boxes_from_map(m, 1.0), [[0, 0, 5, 4]])


def test_invalid_arguments():
    with pytest.raises(ValueError, match="mode"):
        boxes_from_map(np.ones((3, 3)), mode="biggest")
    with pytest.raises(ValueError, match="H, W"):
        boxes_from_map(np.ones((2, 3, 3)))


def test_agrees_with_scikit_image_on_random_maps():
    rng = np.random.default_rng(1)
    for i in range(20):
        size = int(rng.integers(24, 48))
        m = ndimage.gaussian_filter(rng.normal(size=(size, size + 3)), rng.uniform(1, 3))
        t = float(rng.uniform(0.2, 0.8))
        norm = (m - m.min()) / (m - m.min()).max()
        lab = label(norm.astype(np.float32) > t, connectivity=2)
        props = regionprops(lab)  # labels in raster order of first pixel
        expected_all = [[p.bbox[1], p.bbox[0], p.bbox[3], p.bbox[2]] for p in props]
        np.testing.assert_array_equal(
            boxes_from_map(m, t, mode="all").reshape(-1, 4), np.reshape(expected_all, (-1, 4))
        )
        areas = [p.area for p in props]
        expected = expected_all[int(np.argmax(areas))] if areas else [0, 0, m.shape[1], m.shape[0]]
        np.testing.assert_array_equal(boxes_from_map(m, t)[0], expected, err_msg=f"map {i}")
    got = boxes_from_maps(np.stack([m, m]), t)
    assert len(got) == 2 and np.array_equal(got[0], got[1])
