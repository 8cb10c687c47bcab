"""bas_zoo.data: raw layouts -> common schema, image decoding, box/mask-aware transforms."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
import torch

from bas_zoo.data import (
    DatasetFormatError,
    ImageLoadError,
    collate,
    eval_transform,
    load_mask,
    load_rgb,
    load_wsol_dataset,
    parse_columns,
    train_transform,
    with_transform,
)
from bas_zoo.data.sources import VOC_CLASSES


def _jpeg(path: Path, size=(40, 30), colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.new("RGB", size, colour).save(path, quality=95)
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------------- load_rgb
def test_load_rgb_modes(tmp_path):
    gray = PIL.Image.fromarray(np.full((4, 5), 77, np.uint8), "L")
    assert np.asarray(load_rgb(gray)).tolist()[0][0] == [77, 77, 77]

    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[0, 0, 3] = 0  # transparent -> white
    rgba[1, 1, 3] = 255  # opaque red stays red
    out = np.asarray(load_rgb(PIL.Image.fromarray(rgba, "RGBA")))
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [255, 0, 0]

    palette = PIL.Image.new("P", (4, 4))
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.putpixel((1, 1), 1)
    assert np.asarray(load_rgb(palette))[1, 1].tolist() == [10, 200, 30]
    palette.info["transparency"] = 0
    assert np.asarray(load_rgb(palette))[0, 0].tolist() == [255, 255, 255]

    cmyk_file = tmp_path / "cmyk.jpg"
    PIL.Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cmyk_file)  # pure red in CMYK
    red = np.asarray(load_rgb(cmyk_file))[4, 4]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60

    sixteen = tmp_path / "deep.png"
    PIL.Image.fromarray(np.full((3, 3), 65535, np.uint16)).save(sixteen)
    assert PIL.Image.open(sixteen).mode.startswith("I")
    assert np.asarray(load_rgb(sixteen))[0, 0].tolist() == [255, 255, 255]
    half = np.asarray(load_rgb(np.full((2, 2), 32896, np.uint16)))
    assert half[0, 0, 0] == 128

    floats = np.asarray(load_rgb(np.full((2, 2, 3), 0.5, np.float32)))
    assert floats[0, 0].tolist() == [128, 128, 128]


def test_load_rgb_exif_rotation(tmp_path):
    array = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high; a white block at the top-left
    array[:5, :10] = 255
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    PIL.Image.fromarray(array).save(path, exif=exif, quality=100)
    image = load_rgb(path)
    assert image.size == (20, 40)
    out = np.asarray(image).mean(axis=2)
    assert out[:10, -5:].mean() > 200 and out[:10, :5].mean() < 50  # top-left went to top-right
    from bas_zoo.data import image_size

    assert image_size(path) == (20, 40)


def test_load_rgb_errors(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty.jpg.*empty"):
        load_rgb(empty)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(ImageLoadError, match="junk.png.*corrupt"):
        load_rgb(junk)
    good = io.BytesIO()
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        good, "PNG"
    )
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="truncated.png"):
        load_rgb(truncated)
    with pytest.raises(ImageLoadError, match="missing.jpg.*not found"):
        load_rgb(tmp_path / "missing.jpg")
    with pytest.raises(ImageLoadError, match="truncated.png"):
        load_rgb({"bytes": None, "path": str(truncated)})


def test_load_mask_keeps_palette_indices(tmp_path):
    mask = PIL.Image.fromarray(np.array([[0, 3], [255, 15]], np.uint8), "P")
    mask.putpalette(list(np.random.default_rng(0).integers(0, 255, 768)))
    path = tmp_path / "m.png"
    mask.save(path)
    assert load_mask(path).tolist() == [[0, 3], [255, 15]]


# ---------------------------------------------------------------------------------------------- CUB
def make_cub(root: Path, per_class: int = 6, train_per_class: int = 4) -> Path:
    root = root / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    lines = {k: [] for k in ("images", "labels", "split", "boxes")}
    image_id = 0
    for c, name in enumerate(classes):
        for i in range(per_class):
            image_id += 1
            rel = f"{name}/img_{c}_{i}.jpg"
            _jpeg(root / "images" / rel, size=(40, 30))
            lines["images"].append(f"{image_id} {rel}")
            lines["labels"].append(f"{image_id} {c + 1}")
            lines["split"].append(f"{image_id} {int(i < train_per_class)}")
            lines["boxes"].append(f"{image_id} 2.0 3.0 {10 + i}.0 20.0")
    _write(root / "classes.txt", "".join(f"{i + 1} {n}\n" for i, n in enumerate(classes)))
    _write(root / "images.txt", "\n".join(lines["images"]) + "\n")
    _write(root / "image_class_labels.txt", "\n".join(lines["labels"]) + "\n")
    _write(root / "train_test_split.txt", "\n".join(lines["split"]) + "\n")
    _write(root / "bounding_boxes.txt", "\n".join(lines["boxes"]) + "\n")
    return root


def test_cub_schema_splits_and_boxes(tmp_path):
    root = make_cub(tmp_path)
    full = load_wsol_dataset(f"cub:{tmp_path}", "train_full")  # parent folder is accepted
    train = load_wsol_dataset(f"cub:{root}", "train")
    val = load_wsol_dataset(f"cub:{root}", "val")
    test = load_wsol_dataset(f"cub:{root}", "test")
    assert (len(full), len(train), len(val), len(test)) == (8, 6, 2, 4)
    assert set(train["image_id"]).isdisjoint(val["image_id"])
    assert set(train["image_id"]) | set(val["image_id"]) == set(full["image_id"])
    assert sorted(val["label"]) == [0, 1]  # at least one per class
    assert full.features["label"].names == ["Black_footed_Albatross", "Laysan_Albatross"]
    assert list(full.features) == ["image", "label", "bboxes", "image_id"]
    row = full[1]
    assert row["bboxes"] == [[2.0, 3.0, 13.0, 23.0]]  # x, y, w, h -> x, y, x + w, y + h
    assert row["image"].size == (40, 30)
    # the carve-out is deterministic
    assert load_wsol_dataset(f"cub:{root}", "val")["image_id"] == val["image_id"]


@pytest.mark.parametrize(
    ("file", "content", "match"),
    [
        ("bounding_boxes.txt", "1 2.0 3.0 10.0\n", r"bounding_boxes.txt:1: malformed line"),
        (
            "bounding_boxes.txt",
            "1 2.0 3.0 50.0 20.0\n",
            r"bounding_boxes.txt:1: box .* outside the 40x30 image",
        ),
        ("image_class_labels.txt", "1 7\n", r"image_class_labels.txt:1: unknown class id '7'"),
        (
            "images.txt",
            "1 001.Black_footed_Albatross/nope.jpg\n",
            r"images.txt:1: .*nope.jpg: image file not found",
        ),
    ],
)
def test_cub_errors(tmp_path, file, content, match):
    root = make_cub(tmp_path)
    path = root / file
    lines = path.read_text().splitlines()
    path.write_text(content + "\n".join(lines[1:]) + "\n")
    with pytest.raises(DatasetFormatError, match=match):
        load_wsol_dataset(f"cub:{root}", "train_full")


def test_cub_missing_file_and_split(tmp_path):
    root = make_cub(tmp_path)
    (root / "bounding_boxes.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"bounding_boxes.txt: .*not found.*CUB_200_2011"):
        load_wsol_dataset(f"cub:{root}", "test")
    with pytest.raises(DatasetFormatError, match="Unknown split 'dev'"):
        load_wsol_dataset(f"cub:{root}", "dev")


# ----------------------------------------------------------------------------------- wsolevaluation
def make_wsoleval(tmp_path: Path) -> tuple[Path, Path]:
    meta, data = tmp_path / "metadata", tmp_path / "dataset"
    ids = ["001.Albatross/a.jpg", "002.Auklet/b.jpg"]
    for rel in ids:
        _jpeg(data / "CUB" / rel, size=(50, 40))
    for split in ("train", "test"):
        d = meta / "CUB" / split
        _write(d / "image_ids.txt", "\n".join(ids) + "\n")
        _write(d / "class_labels.txt", f"{ids[0]},0\n{ids[1]},1\n")
        _write(d / "image_sizes.txt", f"{ids[0]},50,40\n{ids[1]},50,40\n")
        _write(d / "localization.txt", f"{ids[0]},1,2,30,20\n{ids[0]},5,5,9,9\n{ids[1]},0,0,49,39\n")
    # OpenImages: masks and ignore masks
    oi = data / "OpenImages"
    _jpeg(oi / "test" / "01abc" / "x.jpg", size=(20, 10))
    instance_a = np.zeros((10, 20), np.uint8)
    instance_a[2:5, 3:8] = 255
    instance_b = np.zeros((10, 20), np.uint8)
    instance_b[6:9, 12:15] = 255
    ignore = np.zeros((10, 20), np.uint8)
    ignore[0:10, 0:10] = 255
    for name, array in (("m_a.png", instance_a), ("m_b.png", instance_b), ("ignore.png", ignore)):
        PIL.Image.fromarray(array).save(oi / "test" / "01abc" / name)
    d = meta / "OpenImages" / "test"
    _write(d / "image_ids.txt", "test/01abc/x.jpg\n")
    _write(d / "class_labels.txt", "test/01abc/x.jpg,0\n")
    _write(
        d / "localization.txt",
        "test/01abc/x.jpg,test/01abc/m_a.png,test/01abc/ignore.png\ntest/01abc/x.jpg,test/01abc/m_b.png,\n",
    )
    return meta, data


def test_wsolevaluation_boxes(tmp_path):
    meta, data = make_wsoleval(tmp_path)
    ds = load_wsol_dataset(f"wsolevaluation:{meta}:{data}:CUB", "test", cache_dir=tmp_path / "c")
    assert ds.features["label"].names == ["Albatross", "Auklet"]
    assert ds[0]["bboxes"] == [[1, 2, 30, 20], [5, 5, 9, 9]]
    assert ds[1]["bboxes"] == [[0, 0, 49, 39]]
    assert ds["image_id"] == ["001.Albatross/a.jpg", "002.Auklet/b.jpg"]


def test_wsolevaluation_openimages_masks(tmp_path):
    meta, data = make_wsoleval(tmp_path)
    ds = load_wsol_dataset(f"wsolevaluation:{meta}:{data}:OpenImages", "test", cache_dir=tmp_path / "c")
    row = ds[0]
    mask = np.asarray(row["mask"])
    assert mask.shape == (10, 20)
    assert (mask[2:5, 3:8] == 1).all() and (mask[6:9, 12:15] == 1).all()
    assert mask[0, 0] == 255 and mask[0, 15] == 0  # ignore box minus foreground
    assert row["bboxes"] == [[3, 2, 7, 4], [12, 6, 14, 8]]
    assert ds.features["label"].names == ["01abc"]


def test_wsolevaluation_errors(tmp_path):
    meta, data = make_wsoleval(tmp_path)
    with pytest.raises(DatasetFormatError, match="unknown dataset name 'COCO'"):
        load_wsol_dataset(f"wsolevaluation:{meta}:{data}:COCO", "test")
    with pytest.raises(DatasetFormatError, match=r"available splits: \['test', 'train'\]"):
        load_wsol_dataset(f"wsolevaluation:{meta}:{data}:CUB", "val")
    loc = meta / "CUB" / "test" / "localization.txt"
    loc.write_text(loc.read_text() + "002.Auklet/b.jpg,1,2,3\n")
    with pytest.raises(DatasetFormatError, match=r"localization.txt:4: malformed line"):
        load_wsol_dataset(f"wsolevaluation:{meta}:{data}:CUB", "test")
    loc.write_text("002.Auklet/b.jpg,0,0,60,39\n")
    with pytest.raises(DatasetFormatError, match=r"localization.txt:1: box .* outside the 50x40 image"):
        load_wsol_dataset(f"wsolevaluation:{meta}:{data}:CUB", "test")
    with pytest.raises(ValueError, match="wsolevaluation:METADATA_DIR:DATA_DIR:NAME"):
        load_wsol_dataset(f"wsolevaluation:{meta}", "test")


# ------------------------------------------------------------------------------------------- ILSVRC
def _voc_xml(path: Path, wnid: str, box, size=(40, 30)) -> None:
    objects = "".join(
        f"<object><name>{wnid}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for b in box
    )
    _write(
        path,
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>{objects}</annotation>",
    )


def make_ilsvrc(root: Path) -> Path:
    wnids = ["n01440764", "n01443537"]
    _write(
        root / "LOC_synset_mapping.txt",
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n",
    )
    for c, wnid in enumerate(wnids):
        for i in range(3):
            _jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG")
            if i < 2:
                _voc_xml(root / "Annotations" / "train" / wnid / f"{wnid}_{i}.xml", wnid, [[1, 2, 20, 25]])
        _jpeg(root / "val" / f"ILSVRC2012_val_0000000{c + 1}.JPEG")
        _voc_xml(
            root / "Annotations" / "val" / f"ILSVRC2012_val_0000000{c + 1}.xml",
            wnid,
            [[0, 0, 39, 29], [3, 3, 9, 9]],
        )
    return root


def test_ilsvrc(tmp_path):
    root = make_ilsvrc(tmp_path / "imagenet")
    cache = tmp_path / "c"
    test = load_wsol_dataset(f"ilsvrc:{root}", "test", cache_dir=cache)
    assert test.features["label"].names == ["tench", "goldfish"]
    assert test["label"] == [0, 1]
    assert test[1]["bboxes"] == [[0, 0, 39, 29], [3, 3, 9, 9]]
    full = load_wsol_dataset(f"ilsvrc:{root}", "train_full", cache_dir=cache)
    train = load_wsol_dataset(f"ilsvrc:{root}", "train", cache_dir=cache)
    val = load_wsol_dataset(f"ilsvrc:{root}", "val", cache_dir=cache)
    assert len(full) == 6 and len(train) + len(val) == 6 and sorted(val["label"]) == [0, 1]
    assert all(len(b) == 1 for b in val["bboxes"])  # held-out images have boxes
    assert sum(len(b) == 0 for b in full["bboxes"]) == 2  # train images without XML keep no box


def test_ilsvrc_errors(tmp_path):
    root = make_ilsvrc(tmp_path / "imagenet")
    _voc_xml(root / "Annotations" / "val" / "ILSVRC2012_val_00000001.xml", "n99999999", [[0, 0, 5, 5]])
    with pytest.raises(DatasetFormatError, match="unknown class 'n99999999'"):
        load_wsol_dataset(f"ilsvrc:{root}", "test", cache_dir=tmp_path / "c")
    (root / "LOC_synset_mapping.txt").unlink()
    with pytest.raises(DatasetFormatError, match="LOC_synset_mapping.txt"):
        load_wsol_dataset(f"ilsvrc:{root}", "test", cache_dir=tmp_path / "c2")


# ---------------------------------------------------------------------------------------------- VOC
def _palette_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = PIL.Image.fromarray(array.astype(np.uint8), "P")
    image.putpalette([(i * 37) % 256 for i in range(768)])
    image.save(path)


def make_voc(root: Path) -> Path:
    voc = root / "VOC2012"
    mask = np.zeros((30, 40), np.uint8)
    mask[5:20, 2:12] = 15  # person: the largest
    mask[4:7, 30:35] = 12  # dog
    mask[20, :] = 255  # boundary / ignore
    _jpeg(voc / "JPEGImages" / "2007_000001.jpg")
    _palette_png(voc / "SegmentationClass" / "2007_000001.png", mask)
    second = np.zeros((30, 40), np.uint8)
    second[0:3, 0:4] = 1
    _jpeg(voc / "JPEGImages" / "2007_000002.jpg")
    _palette_png(voc / "SegmentationClass" / "2007_000002.png", second)
    _write(voc / "ImageSets" / "Segmentation" / "train.txt", "2007_000001\n2007_000002\n")
    _write(voc / "ImageSets" / "Segmentation" / "val.txt", "2007_000002\n")
    aug = voc / "SegmentationClassAug"
    aug.mkdir()
    PIL.Image.fromarray(second).save(aug / "2007_000002.png")  # SBD masks are plain grayscale
    _write(voc / "ImageSets" / "Segmentation" / "train_aug.txt", "2007_000002\n")
    return root


def test_voc(tmp_path):
    root = make_voc(tmp_path)
    ds = load_wsol_dataset(f"voc:{root}", "train", cache_dir=tmp_path / "c")
    assert ds.features["label"].names == list(VOC_CLASSES)
    row = ds[0]
    assert row["labels"] == [11, 14] and row["label"] == 14  # dog, person; person covers most pixels
    assert row["bbox_labels"] == [11, 14]
    assert row["bboxes"] == [[30, 4, 34, 6], [2, 5, 11, 19]]
    mask = load_mask(ds.cast_column("mask", datasets.Image(decode=False))[0]["mask"])
    assert mask[20, 0] == 255 and mask[10, 5] == 15 and mask[0, 0] == 0
    assert ds[1]["labels"] == [0] and ds[1]["label"] == 0
    aug = load_wsol_dataset(f"voc:{root}", "train_aug", cache_dir=tmp_path / "c")
    assert aug["image_id"] == ["2007_000002"] and aug[0]["labels"] == [0]


def test_voc_errors(tmp_path):
    root = make_voc(tmp_path)
    bad = np.zeros((30, 40), np.uint8)
    bad[0, 0] = 40
    _palette_png(root / "VOC2012" / "SegmentationClass" / "2007_000002.png", bad)
    with pytest.raises(DatasetFormatError, match=r"2007_000002.png: unknown class ids \[40\]"):
        load_wsol_dataset(f"voc:{root}", "val", cache_dir=tmp_path / "c")
    with pytest.raises(DatasetFormatError, match="split list not found"):
        load_wsol_dataset(f"voc:{root}", "test", cache_dir=tmp_path / "c")
    _write(root / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt", "2007_000009\n")
    with pytest.raises(DatasetFormatError, match=r"val.txt:1: .*2007_000009.jpg not found"):
        load_wsol_dataset(f"voc:{root}", "val", cache_dir=tmp_path / "c")


# -------------------------------------------------------------------------------------- imagefolder
def make_imagefolder(root: Path) -> Path:
    for split, n in (("train", 3), ("test", 2)):
        lines = []
        for i in range(n):
            _jpeg(root / split / f"img{i}.jpg")
            mask = np.zeros((30, 40), np.uint8)
            mask[2:10, 3:12] = 1
            PIL.Image.fromarray(mask).save(root / split / f"img{i}_mask.png")
            label = ["cat", "dog"][i % 2]
            lines.append(
                json.dumps(
                    {
                        "file_name": f"img{i}.jpg",
                        "label": label,
                        "bboxes": [[3, 2, 11, 9]],
                        "mask_file_name": f"img{i}_mask.png",
                    }
                )
            )
        _write(root / split / "metadata.jsonl", "\n".join(lines) + "\n")
    return root


def test_imagefolder(tmp_path):
    root = make_imagefolder(tmp_path / "folder")
    ds = load_wsol_dataset(f"imagefolder:{root}", "train")
    assert ds.features["label"].names == ["cat", "dog"]
    assert ds["label"] == [0, 1, 0]
    assert ds[0]["bboxes"] == [[3, 2, 11, 9]] and ds[0]["image_id"] == "img0.jpg"
    assert np.asarray(ds[0]["mask"])[5, 5] == 1


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"file_name": "img0.jpg", "label": "cow", "bboxes": []}', r"metadata.jsonl:2: unknown class 'cow'"),
        (
            '{"file_name": "img0.jpg", "label": "cat", "bboxes": [[0, 0, 99, 5]]}',
            r"metadata.jsonl:2: box .* outside",
        ),
        (
            '{"file_name": "img0.jpg", "label": "cat", "bboxes": [[0, 0, 5]]}',
            r"metadata.jsonl:2: 'bboxes' must be",
        ),
        ('{"file_name": "gone.jpg", "label": "cat"}', r"metadata.jsonl:2: .*gone.jpg: image file not found"),
        ('{"file_name": "img0.jpg", "label": "cat",', r"metadata.jsonl:2: malformed JSON"),
    ],
)
def test_imagefolder_errors(tmp_path, line, match):
    root = make_imagefolder(tmp_path / "folder")
    _write(root / "classes.txt", "cat\ndog\n")
    meta = root / "train" / "metadata.jsonl"
    first = meta.read_text().splitlines()[0]
    meta.write_text(first + "\n" + line + "\n")
    with pytest.raises(DatasetFormatError, match=match):
        load_wsol_dataset(f"imagefolder:{root}", "train")


# ------------------------------------------------------------------------------- Hub / local datasets
def _hub_like(n: int = 3) -> datasets.DatasetDict:
    images = [PIL.Image.new("RGB", (16, 12), (i * 40, 0, 0)) for i in range(n)]
    feats = datasets.Features(
        {
            "img": datasets.Image(),
            "objects": {
                "bbox": datasets.List(datasets.List(datasets.Value("float32"))),
                "id": datasets.List(datasets.Value("int64")),
            },
            "species": datasets.Value("string"),
        }
    )
    rows = {
        "img": images,
        "objects": [{"bbox": [[1, 2, 3, 4]], "id": [0]} for _ in range(n)],
        "species": ["b", "a", "b"][:n],
    }
    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows, features=feats),
            "test": datasets.Dataset.from_dict({**rows, "species": ["c"] * n}, features=feats),
        }  # fmt: skip
    )


def test_hub_saved_to_disk_with_column_mapping(tmp_path):
    _hub_like().save_to_disk(tmp_path / "saved")
    columns = "image=img,bboxes=objects.bbox,label=species,box_format=xywh"
    ds = load_wsol_dataset(str(tmp_path / "saved"), "train", columns=columns)
    assert list(ds.features) == ["image", "label", "bboxes", "image_id"]
    assert ds.features["label"].names == ["a", "b", "c"]  # from every split, so indices agree
    assert ds["label"] == [1, 0, 1]
    assert ds[0]["bboxes"] == [[1, 2, 4, 6]]  # x, y, w, h -> xyxy
    assert ds["image_id"] == ["0", "1", "2"]
    test = load_wsol_dataset(str(tmp_path / "saved"), "test", columns=parse_columns(columns))
    assert test["label"] == [2, 2, 2]


def test_hub_missing_column_message(tmp_path):
    _hub_like().save_to_disk(tmp_path / "saved")
    with pytest.raises(DatasetFormatError) as info:
        load_wsol_dataset(str(tmp_path / "saved"), "train", columns={"image": "img"})
    message = str(info.value)
    assert "no column 'label'" in message and "species" in message and "--columns label=" in message
    with pytest.raises(DatasetFormatError, match="Unknown split 'val'"):
        load_wsol_dataset(str(tmp_path / "saved"), "val", columns={"image": "img"})


def test_hub_local_data_files(tmp_path):
    folder = tmp_path / "parquet"
    folder.mkdir()
    ds = (
        _hub_like()["train"]
        .flatten()
        .rename_columns({"img": "image", "objects.bbox": "bboxes", "species": "label"})
    )
    ds.to_parquet(str(folder / "train-00000.parquet"))
    loaded = load_wsol_dataset(str(folder), "train", cache_dir=tmp_path / "hf")
    assert loaded.features["label"].names == ["a", "b"] and len(loaded) == 3
    assert isinstance(loaded[0]["image"], PIL.Image.Image)


def test_parse_columns():
    assert parse_columns("image=img, bboxes=objects.bbox") == {"image": "img", "bboxes": "objects.bbox"}
    assert parse_columns(None) == {} and parse_columns({"a": "b"}) == {"a": "b"}
    with pytest.raises(ValueError, match="Malformed column mapping 'image'"):
        parse_columns("image")


# ----------------------------------------------------------------------------------------- transforms
def _rect_dataset(multilabel: bool = False) -> datasets.Dataset:
    """One 64x48 image with a white rectangle at columns 10..29, rows 6..17 (inclusive) and its mask."""
    array = np.zeros((48, 64, 3), np.uint8)
    array[6:18, 10:30] = 255
    mask = np.zeros((48, 64), np.uint8)
    mask[6:18, 10:30] = 1
    buffer = io.BytesIO()
    PIL.Image.fromarray(mask).save(buffer, "PNG")
    names = ["a", "b", "c"]
    from bas_zoo.data import wsol_features

    rows = {
        "image": [PIL.Image.fromarray(array)],
        "label": [1],
        "bboxes": [[[10, 6, 29, 17]]],
        "mask": [{"bytes": buffer.getvalue(), "path": None}],
        "image_id": ["r"],
    }
    if multilabel:
        rows |= {"labels": [[1, 2]], "bbox_labels": [[1]]}
    return datasets.Dataset.from_dict(
        rows, features=wsol_features(names, multilabel=multilabel, with_mask=True)
    )


def _bright_bbox(pixels: torch.Tensor) -> list[float]:
    rows, cols = torch.nonzero(pixels.mean(0) > 0.5, as_tuple=True)  # normalized image: white >> black
    return [cols.min().item(), rows.min().item(), cols.max().item(), rows.max().item()]


def test_eval_transform_keeps_box_and_mask_aligned():
    ds = with_transform(_rect_dataset(), eval_transform(224, mean=(0, 0, 0), std=(1, 1, 1)))
    ex = ds[0]
    assert ex["pixel_values"].shape == (3, 224, 224) and ex["masks"].dtype == torch.uint8
    box = ex["bboxes"][0].tolist()
    rows, cols = torch.nonzero(ex["masks"] == 1, as_tuple=True)
    mask_box = [cols.min().item(), rows.min().item(), cols.max().item(), rows.max().item()]
    # exact scaling of the covered extent: columns 10..29 of 64 -> [35, 105) of 224, rows 6..17 of 48 -> [28, 84)
    assert box == pytest.approx([35.0, 28.0, 104.0, 83.0])
    assert mask_box == pytest.approx(box, abs=1)
    assert _bright_bbox(ex["pixel_values"]) == pytest.approx(box, abs=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_train_transform_crop_and_flip(seed):
    torch.manual_seed(seed)
    ds = with_transform(_rect_dataset(), train_transform(96, 80, mean=(0, 0, 0), std=(1, 1, 1), flip_p=1.0))
    ex = ds[0]
    box = ex["bboxes"][0].tolist()
    assert ex["pixel_values"].shape == (3, 80, 80)
    rows, cols = torch.nonzero(ex["masks"] == 1, as_tuple=True)
    mask_box = [cols.min().item(), rows.min().item(), cols.max().item(), rows.max().item()]
    assert mask_box == pytest.approx(box, abs=1)
    assert _bright_bbox(ex["pixel_values"]) == pytest.approx(box, abs=1)


def test_flip_is_exact_mirror():
    ds = with_transform(
        _rect_dataset(), train_transform(64, 64, flip_p=1.0)
    )  # resize 64x48 -> 64x64, no crop
    box = ds[0]["bboxes"][0].tolist()
    # columns 10..29 of 64 mirror to 34..53; rows 6..17 of 48 cover [8, 24) of 64
    assert box == pytest.approx([34.0, 8.0, 53.0, 23.0])


def test_collate_and_dataloader_multilabel():
    ds = with_transform(_rect_dataset(multilabel=True), eval_transform(32))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (1, 3, 32, 32)
    assert batch["labels"].tolist() == [1] and batch["labels"].dtype == torch.long
    assert batch["label_vector"].tolist() == [[0.0, 1.0, 1.0]]
    assert batch["masks"].shape == (1, 32, 32) and batch["bboxes"][0].shape == (1, 4)
    assert batch["bbox_labels"][0].tolist() == [1] and batch["image_ids"] == ["r"]


def test_collate_fills_missing_masks():
    image = torch.zeros(3, 4, 4)
    batch = collate(
        [
            {
                "pixel_values": image,
                "labels": 0,
                "bboxes": torch.zeros(0, 4),
                "masks": torch.ones(4, 4, dtype=torch.uint8),
            },
            {"pixel_values": image, "labels": 1, "bboxes": torch.zeros(0, 4), "masks": None},
        ]
    )
    assert batch["masks"][1].unique().tolist() == [255]


def test_hub_local_data_files_unknown_split(tmp_path):
    folder = tmp_path / "parquet"
    folder.mkdir()
    ds = (
        _hub_like()["train"]
        .flatten()
        .rename_columns({"img": "image", "objects.bbox": "bboxes", "species": "label"})
    )
    ds.to_parquet(str(folder / "train-00000.parquet"))
    with pytest.raises(DatasetFormatError, match="Unknown split 'test'"):
        load_wsol_dataset(str(folder), "test", cache_dir=tmp_path / "hf")
