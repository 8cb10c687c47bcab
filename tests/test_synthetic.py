"""The synthetic default dataset: determinism, caching, exact ground truth, small parts, multi-label."""

from __future__ import annotations

import numpy as np
import pytest

import bas_zoo.data.synthetic as synthetic
from bas_zoo.data import SyntheticOptions, generate_split, load_mask, load_wsol_dataset, make_synthetic

SMALL = {"size": 32, "classes": 3, "per_class": 4}


def _bbox(mask: np.ndarray) -> list[float]:
    rows, cols = np.nonzero(mask)
    return [float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())]


def _raw_bytes(ds) -> list[bytes]:
    import datasets

    raw = ds.cast_column("image", datasets.Image(decode=False))
    return [row["bytes"] for row in raw["image"]]


def test_same_seed_same_bytes_other_seed_other_images():
    opts = SyntheticOptions(**SMALL)
    first, second = generate_split(opts, "train"), generate_split(opts, "train")
    assert _raw_bytes(first) == _raw_bytes(second)
    assert first["bboxes"] == second["bboxes"] and first["label"] == second["label"]
    other = generate_split(SyntheticOptions(**SMALL, seed=1), "train")
    assert _raw_bytes(other) != _raw_bytes(first)
    test = generate_split(opts, "test")
    assert set(_raw_bytes(test)).isdisjoint(_raw_bytes(first))  # splits come from different seeds


def test_cache_is_reused(tmp_path, monkeypatch):
    first = make_synthetic(cache_dir=tmp_path, **SMALL)
    assert list(first) == ["train", "val", "test"] and len(first["val"]) == 12
    entries = list((tmp_path / "synthetic").iterdir())
    assert len(entries) == 1 and (entries[0] / "options.json").is_file()

    def fail(*args, **kwargs):
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(synthetic, "generate_split", fail)
    again = make_synthetic(cache_dir=tmp_path, **SMALL)
    assert _raw_bytes(again["train"]) == _raw_bytes(first["train"])


def test_schema_balance_and_exact_ground_truth(tmp_path):
    ds = load_wsol_dataset("synthetic:size=48,classes=3,per_class=5,seed=3", "val", cache_dir=tmp_path)
    assert list(ds.features) == ["image", "label", "bboxes", "mask", "part_bboxes", "image_id"]
    assert ds.features["label"].names == ["red", "green", "blue"]
    assert np.bincount(ds["label"]).tolist() == [5, 5, 5]
    for row in ds:
        assert row["image"].size == (48, 48) and row["image"].mode == "RGB"
        mask = np.asarray(row["mask"])
        assert set(np.unique(mask).tolist()) == {0, 1}
        assert row["bboxes"] == [_bbox(mask == 1)]  # the box is the bbox of the whole object's mask
        x0, y0, x1, y1 = row["bboxes"][0]
        assert min(x0, y0) > 0 and max(x1, y1) < 47  # fully inside the image
        area = (mask == 1).mean()
        assert 0.1 < area < 0.5


def test_part_is_small_and_inside_the_object():
    opts = SyntheticOptions(size=64, classes=4, per_class=10)
    ratios = []
    for index in range(20):
        example = synthetic.render_example(opts, "test", index, index % 4)
        (px0, py0, px1, py1), (ox0, oy0, ox1, oy1) = example["part_bboxes"][0], example["bboxes"][0]
        assert ox0 <= px0 and oy0 <= py0 and px1 <= ox1 and py1 <= oy1
        part_area = (px1 - px0 + 1) * (py1 - py0 + 1) * np.pi / 4  # the head is a disc
        ratios.append(part_area / example["mask"].sum())
    assert 0.03 < np.mean(ratios) < 0.12 and max(ratios) < 0.2
    headless = synthetic.render_example(SyntheticOptions(size=64, part=False), "train", 0, 0)
    assert headless["part_bboxes"] == []


def test_multilabel(tmp_path):
    ds = load_wsol_dataset(
        "synthetic:size=64,classes=5,per_class=3,multilabel=1,max_objects=3", "train", cache_dir=tmp_path
    )
    assert {"labels", "bbox_labels", "mask"} <= set(ds.features)
    import datasets

    raw = ds.cast_column("mask", datasets.Image(decode=False))
    counts = []
    for row, raw_row in zip(ds, raw, strict=True):
        mask = load_mask(raw_row["mask"])
        present = sorted(int(v) - 1 for v in np.unique(mask) if v)
        assert row["labels"] == present and sorted(row["bbox_labels"]) == present
        for cls, box in zip(row["bbox_labels"], row["bboxes"], strict=True):
            assert box == _bbox(mask == cls + 1)
        pixels = {c: int((mask == c + 1).sum()) for c in present}
        assert row["label"] == max(pixels, key=pixels.get)  # primary = most pixels
        counts.append(len(present))
    assert max(counts) >= 2


def test_options_and_errors(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown synthetic option\(s\) \['colour'\]"):
        load_wsol_dataset("synthetic:colour=1", "train", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="classes must be between"):
        SyntheticOptions(classes=0)
    with pytest.raises(ValueError, match="must be an integer"):
        SyntheticOptions.from_dict({"size": 32.5})
    with pytest.raises(ValueError, match="Malformed synthetic option"):
        load_wsol_dataset("synthetic:size", "train", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="Unknown split 'dev'"):
        load_wsol_dataset("synthetic:size=32,classes=2,per_class=1", "dev", cache_dir=tmp_path)
    assert SyntheticOptions.from_dict({"multilabel": "1", "clutter": 0}).multilabel is True


def test_column_mapping_is_refused_for_local_specs(tmp_path):
    with pytest.raises(ValueError, match="drop --columns"):
        load_wsol_dataset("synthetic:size=32", "train", columns="image=img", cache_dir=tmp_path)


def test_heads_hidden_in_train_only():
    opts = SyntheticOptions(size=48, classes=4, per_class=10, part_dropout=0.3)
    train = [synthetic.render_example(opts, "train", i, i % 4) for i in range(60)]
    test = [synthetic.render_example(opts, "test", i, i % 4) for i in range(60)]
    hidden = sum(not e["part_bboxes"] for e in train) / len(train)
    assert 0.15 < hidden < 0.45 and all(e["part_bboxes"] for e in test)
    for example in train:  # a hidden head is not part of the object
        assert example["bboxes"] == [[float(v) for v in _bbox(example["mask"] == 1)]]
    default = SyntheticOptions(size=48, classes=4, per_class=10)
    assert all(synthetic.render_example(default, "train", i, i % 4)["part_bboxes"] for i in range(20))
