"""WSSS: the multi-label BAS loss (hand-computed terms), seeds, pseudo masks on a tiny VOC layout."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
import timm
import torch

import bas_zoo
from bas_zoo.losses import BASMultiLabelLoss, multilabel_ce, sample_positive
from bas_zoo.metrics import SegMetrics
from bas_zoo.models import BASOutput
from bas_zoo.wsss import (
    DEFAULT_BG_THRESHOLDS,
    class_probabilities,
    evaluate_seeds,
    max_normalize,
    multiscale_maps,
    predict_present,
    save_palette_png,
    seed_scores,
    seeds_to_mask,
    voc_palette,
)

ROOT = Path(__file__).resolve().parents[1]


def tiny_model(num_classes: int = 3) -> bas_zoo.BASModel:
    """The WSSS network shape (output stride 16, bias-free 1x1 classifier) on a narrow ResNet-18."""
    torch.manual_seed(0)
    return timm.create_model(
        "bas_generic",
        backbone="resnet18",
        layout="wsss",
        num_classes=num_classes,
        head_chs=0,
        head_bias=False,
        multilabel=True,
        backbone_args=dict(channels=(8, 16, 32, 64), stem_width=8),
    )


# ------------------------------------------------------------------------------------------- L_mcls
def test_multilabel_ce_hand_values():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 2.0, 3.0], [5.0, -5.0, 0.0]])
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]])
    # image 0: positives 2 and 1 against the negative 0: log(1 + e^-2) + log(1 + e^-1)
    # image 1: positive 1 against two zeros: -log(e / (e + 2)) = log(1 + 2 / e)
    # image 2: no negatives (each positive alone in its softmax) -> 0; image 3: no positives -> 0
    expected = torch.tensor([0.1269280110 + 0.3132616875, 0.5514447139, 0.0, 0.0])
    torch.testing.assert_close(multilabel_ce(logits, labels), expected)


def test_multilabel_ce_matches_per_image_softmax_and_has_finite_gradients():
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(5, 6, generator=g) * 3).requires_grad_()
    labels = (torch.rand(5, 6, generator=g) < 0.4).float()
    labels[0], labels[1] = 1.0, 0.0  # all positive, none positive
    reference = []
    for s, y in zip(logits, labels, strict=True):
        pos, neg = s[y > 0.5], s[y < 0.5]
        rows = torch.cat([pos[:, None], neg[None].expand(len(pos), -1)], 1)  # [s_c, negatives...]
        ce = torch.nn.functional.cross_entropy(rows, torch.zeros(len(pos), dtype=torch.long), reduction="sum")
        reference.append(ce if len(pos) else s.sum() * 0)
    torch.testing.assert_close(multilabel_ce(logits, labels), torch.stack(reference))
    multilabel_ce(logits, labels).sum().backward()
    assert torch.isfinite(logits.grad).all()


# ------------------------------------------------------------------------------- positive-class draw
def test_sample_positive_is_seeded_uniform_and_positive():
    labels = torch.tensor([[1.0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]])
    a = sample_positive(labels, torch.Generator().manual_seed(3))
    b = sample_positive(labels, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.long
    assert a[1] == 1 and a[2] == 0  # the only positive; no positive -> class 0 (a valid index)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_positive(labels[:1], gen)[0] for _ in range(1500)])
    counts = torch.bincount(draws, minlength=4)
    assert counts[1] == 0 and counts[[0, 2, 3]].min() > 420  # about 500 each


# ------------------------------------------------------------------------------ BASMultiLabelLoss
def fake_output() -> tuple[BASOutput, torch.Tensor, torch.Tensor]:
    """Three images: positives {0, 2} with p = 2, positive {1} with p = 1, and no positive at all."""
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0], [5.0, -5.0, 0.0]], requires_grad=True)
    fg_logits = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [9.0, 0.0, 0.0]], requires_grad=True)
    fg_map = torch.tensor([[[0.25, 0.25]], [[1.0, 0.5]], [[1.0, 1.0]]], requires_grad=True)
    out = BASOutput(
        logits=logits,
        fg_logits=fg_logits,
        cam=torch.zeros(3, 3, 1, 2),
        fpm=torch.zeros(3, 3, 1, 2),
        score=torch.tensor([1.0, 1.0, 0.0]),  # logits[p]
        bg_score=torch.tensor([0.5, 3.0, 0.0], requires_grad=True),
        fg_map=fg_map,
    )
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 0]])
    return out, labels, torch.tensor([2, 1, 0])


def test_multilabel_loss_terms_by_hand():
    out, labels, positive = fake_output()
    terms = BASMultiLabelLoss(alpha=0.2, beta=1.2, variant="ijcv")(out, labels, positive)
    # means over the two images with a positive class; the third image is left out of every term
    cls = (0.1269280110 + 0.3132616875 + 0.5514447139) / 2
    frg = (math.log(3.0) + math.log(math.e + 2.0)) / 2  # CE of [0,0,0] at 2 and [1,0,0] at 1
    bas = (0.5 / 1.0 + 1.0) / 2  # S_bg / S, and the ijcv clamp 1 where S_bg > S
    ac = (0.25 + 0.75) / 2
    expected = {"cls": cls, "frg": frg, "bas": bas, "ac": ac, "loss": cls + 0.2 * frg + bas + 1.2 * ac}
    for key, value in expected.items():
        assert terms[key].item() == pytest.approx(value, abs=1e-6), key
    terms["loss"].backward()
    assert out.fg_map.grad[2].abs().sum() == 0 and out.logits.grad[2].abs().sum() == 0


def test_multilabel_loss_cvpr_variant_and_clamp():
    out, labels, positive = fake_output()
    terms = BASMultiLabelLoss(variant="cvpr")(out, labels, positive)
    assert terms["bas"].item() == pytest.approx((0.5 + 0.0) / 2)  # cvpr: 0 where S_bg >= S
    terms = BASMultiLabelLoss(variant="ijcv", clamp_value=0.0)(out, labels, positive)
    assert terms["bas"].item() == pytest.approx(0.25)


def test_multilabel_loss_without_any_positive_is_zero_not_nan():
    out, labels, positive = fake_output()
    terms = BASMultiLabelLoss()(out, torch.zeros_like(labels), torch.zeros_like(positive))
    assert all(v.item() == 0.0 for v in terms.values())
    terms["loss"].backward()
    assert torch.isfinite(out.logits.grad).all() and out.logits.grad.abs().sum() == 0


def test_multilabel_loss_rejects_a_negative_target():
    out, labels, _ = fake_output()
    with pytest.raises(ValueError, match="sample_positive"):
        BASMultiLabelLoss()(out, labels, torch.tensor([1, 1, 0]))


def test_multilabel_loss_on_the_model_trains_the_generator_only_through_frg():
    model = tiny_model().train()
    x = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    criterion = BASMultiLabelLoss(generator=torch.Generator().manual_seed(0))
    positive = criterion.sample_positive(labels)
    out = model.forward_bas(x, target=positive)
    terms = criterion(out, labels, positive)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["frg"].backward(retain_graph=True)  # fg logits read stopgrad(F): only the generator side learns
    assert model.classifier.weight.grad is None or model.classifier.weight.grad.abs().sum() == 0
    assert model.generator.weight.grad.abs().sum() > 0
    model.zero_grad()
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ------------------------------------------------------------------------------------------- seeds
def test_max_normalize_and_mask_by_hand():
    maps = torch.tensor([[[[0.0, 2.0], [1.0, 4.0]], [[3.0, 3.0], [0.0, 1.5]], [[9.0, 9.0], [9.0, 9.0]]]])
    scores = max_normalize(maps, present=torch.tensor([[1.0, 1.0, 0.0]]), eps=0.0)
    expected = torch.tensor([[[[0.0, 0.5], [0.25, 1.0]], [[1.0, 1.0], [0.0, 0.5]], [[0.0, 0.0], [0.0, 0.0]]]])
    torch.testing.assert_close(scores, expected)
    # best class beats the threshold strictly: (0,0) class 1 -> 2, (0,1) tie at 1.0 -> first -> 2 ...
    mask = seeds_to_mask(scores, 0.25)
    assert mask.tolist() == [[[2, 2], [0, 1]]]  # (1,0): best 0.25 is not > 0.25 -> background
    assert mask.dtype == torch.uint8


def test_seeds_agree_with_segmetrics_rule():
    g = torch.Generator().manual_seed(1)
    scores = max_normalize(torch.rand(2, 3, 8, 8, generator=g))
    present = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    scores = max_normalize(scores, present)
    gt = torch.randint(0, 4, (2, 8, 8), generator=g)
    metrics = SegMetrics(3, bg_thresholds=[0.3])
    metrics.update(scores, present, gt)
    pred = seeds_to_mask(scores, 0.3).long()
    confusion = torch.bincount((gt * 4 + pred).flatten(), minlength=16).view(4, 4).numpy()
    assert np.array_equal(metrics.confusion[0], confusion)


def test_predict_present_takes_classes_that_beat_the_rest_below():
    logits = torch.tensor([[5.0, 4.0, -3.0, -3.0], [5.0, -1.0, -1.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    assert predict_present(logits).tolist() == [
        [True, True, False, False],  # 4 > log(2 e^-3); -3 is not > -3
        [True, False, False, False],
        [True, False, False, False],  # the top class is always kept
    ]


def test_multiscale_maps_sum_scales_and_mirrors_at_the_input_size():
    model = tiny_model().eval()
    x = torch.randn(2, 3, 48, 64)  # multiples of 16 at both scales: no stride padding to crop
    maps = multiscale_maps(model, x, scales=(1.0, 0.5), flip=True, sources=("bas", "cam"))

    def plain(inp: torch.Tensor, scale: float) -> dict[str, torch.Tensor]:
        return multiscale_maps(model, inp, scales=(scale,), flip=False, sources=("bas", "cam"))

    for source in ("bas", "cam"):
        assert maps[source].shape == (2, 3, 48, 64)
        by_hand = sum(plain(x, s)[source] + plain(x.flip(-1), s)[source].flip(-1) for s in (1.0, 0.5))
        torch.testing.assert_close(maps[source], by_hand, atol=1e-5, rtol=1e-5)
    assert maps["bas"].max() <= 4.0 and maps["cam"].min() >= 0  # sums of 4 sigmoids; ReLU CAM
    x = torch.randn(2, 3, 40, 52)
    single = multiscale_maps(model, x, scales=(1.0,), flip=False)["bas"]
    fpm = model.forward_maps(x, with_logits=False)[1]  # 3 x 4 cells, stride 16 -> 48 x 64, cropped
    up = torch.nn.functional.interpolate(fpm, size=(48, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(single, up[..., :40, :52])


def test_seed_scores_fusion_and_absent_classes():
    model = tiny_model().eval()
    x = torch.randn(1, 3, 32, 32)
    present = torch.tensor([[1.0, 0.0, 1.0]])
    for kwargs in ({}, {"fuse_cam": True}, {"source": "cam"}):
        scores = seed_scores(model, x, present, scales=(1.0,), **kwargs)
        assert scores[0, 1].abs().max() == 0
        peaks = scores[0, [0, 2]].amax((1, 2))
        assert peaks.max() < 1.0 and (kwargs.get("source") == "cam" or peaks.min() > 0.999)  # max-normalized
    with pytest.raises(ValueError, match="source"):
        multiscale_maps(model, x, sources=("gradcam",))


# ------------------------------------------------------------------------------------------ palette
def test_voc_palette_and_png_round_trip(tmp_path):
    palette = voc_palette()
    assert palette[0].tolist() == [0, 0, 0] and palette[1].tolist() == [128, 0, 0]
    assert palette[15].tolist() == [192, 128, 128] and palette[255].tolist() == [224, 224, 192]
    mask = np.array([[0, 1, 2], [15, 20, 255]], np.uint8)
    path = save_palette_png(tmp_path / "m.png", mask)
    with PIL.Image.open(path) as image:
        assert image.mode == "P" and np.array_equal(np.asarray(image), mask)
        assert image.getpalette()[3:6] == [128, 0, 0]
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]  # no temporary file left


# ------------------------------------------------------------------------------------ VOC fixtures
def make_voc(root: Path, n_train: int = 3, n_val: int = 2, size: tuple[int, int] = (36, 44)) -> Path:
    """A tiny VOC 2012 layout: JPEGImages, SegmentationClass palette PNGs, ImageSets/Segmentation."""
    rng = np.random.default_rng(0)
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    h, w = size
    for split, n in (("train", n_train), ("val", n_val)):
        ids = [f"2007_{split}{i:03d}" for i in range(n)]
        for i, image_id in enumerate(ids):
            mask = np.zeros((h, w), np.uint8)
            mask[4 : h // 2, 4 : w // 2] = 1 + i % 3  # class ids 1..3 (aeroplane, bicycle, bird)
            mask[h // 2 + 2 : h - 3, w // 2 : w - 4] = 15  # person
            mask[h // 2 + 1, :] = 255  # a VOC-style ignore boundary
            image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            image[mask == 15] = (200, 60, 60)
            PIL.Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg")
            save_palette_png(root / "SegmentationClass" / f"{image_id}.png", mask)
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


@pytest.fixture
def voc_root(tmp_path) -> Path:
    return make_voc(tmp_path / "VOC2012")


def test_evaluate_seeds_on_a_voc_fixture(voc_root, tmp_path):
    ds = bas_zoo.data.load_wsol_dataset(f"voc:{voc_root}", "val", cache_dir=tmp_path / "cache")
    data = bas_zoo.data.with_transform(ds, bas_zoo.data.eval_transform(32))
    model = tiny_model(num_classes=20).eval()
    result = evaluate_seeds(model, data, scales=(1.0, 0.5), batch_size=2, progress=False, bg_threshold=0.3,
                            class_names=ds.features["label"].names)  # fmt: skip
    assert 0 <= result["miou"] <= 100 and result["best_bg_threshold"] in DEFAULT_BG_THRESHOLDS
    assert {"iou_background", "iou_person", "miou_fixed"} <= set(result)
    assert result["fixed_bg_threshold"] == pytest.approx(0.3)


# ------------------------------------------------------------------------------------ pseudo masks
@pytest.fixture
def pseudo_masks():
    sys.path.insert(0, str(ROOT / "train"))
    try:
        import pseudo_masks as module
    finally:
        sys.path.remove(str(ROOT / "train"))
    return module


def test_pseudo_masks_end_to_end_and_resume(voc_root, tmp_path, pseudo_masks, monkeypatch):
    monkeypatch.setenv("BAS_ZOO_CACHE", str(tmp_path / "cache"))
    model_dir = tmp_path / "model"
    tiny_model(num_classes=20).eval().save_pretrained(model_dir)
    out = tmp_path / "pseudo"
    argv = ["--model", str(model_dir), "--dataset", f"voc:{voc_root}", "--split", "train", "--eval-split", "val",
            "--output-dir", str(out), "--scales", "1.0", "0.5", "--device", "cpu", "--fuse-cam"]  # fmt: skip
    summary = pseudo_masks.main(argv)
    assert summary["masks_written"] == 3 and summary["images"] == 3
    metrics = json.loads((out / "seed_metrics.json").read_text())
    assert metrics["images"] == 2 and "iou_person" in metrics and len(metrics["miou_curve"]) == 25
    for path in sorted((out / "masks").glob("*.png")):
        with PIL.Image.open(path) as image:
            assert image.mode == "P" and image.size == (44, 36)
            ids = set(np.unique(np.asarray(image)).tolist())
        image_id = path.stem
        gt = set(
            np.unique(bas_zoo.data.load_mask(voc_root / "SegmentationClass" / f"{image_id}.png")).tolist()
        )
        assert ids <= (gt - {255}) | {0}  # only the image's own classes (and background)
    ds = datasets.load_from_disk(str(out / "dataset"))
    assert len(ds) == 3 and set(ds.column_names) == {"image", "mask", "labels", "image_id"}
    row = ds[0]
    assert row["image"].size == (44, 36) and row["mask"].mode == "P"
    assert ds.features["labels"].feature.names[14] == "person"

    (out / "masks" / f"{row['image_id']}.png").unlink()  # an interrupted run: one mask missing
    again = pseudo_masks.main(argv)
    assert again["masks_written"] == 1 and again["seed_metrics"]["miou"] == metrics["miou"]
    with pytest.raises(SystemExit, match="other settings"):
        pseudo_masks.main([*argv[:-1]])  # without --fuse-cam into the same folder


# ---------------------------------------------------------------------------------------- training
def test_train_py_multilabel_path_selects_on_seed_miou(tmp_path, monkeypatch):
    """train.py on synthetic multi-label data: BASMultiLabelLoss, seed mIoU on val, exported model."""
    monkeypatch.setenv("BAS_ZOO_CACHE", str(tmp_path / "cache"))
    sys.path.insert(0, str(ROOT / "train"))
    try:
        import train
    finally:
        sys.path.remove(str(ROOT / "train"))
    model_args = (
        "{backbone: resnet18, layout: wsss, head_chs: 0, head_bias: false, multilabel: true, "
        "backbone_args: {channels: [8, 16, 32, 64], stem_width: 8}}"
    )
    out = tmp_path / "run"
    argv = ["--output-dir", str(out), "dataset=synthetic:size=32,classes=3,per_class=4,multilabel=1",
            "model=bas_generic", f"model_args={model_args}", "image_size=32", "resize_size=32", "epochs=1",
            "batch_size=4", "method=bas", "eval.metric=miou", "eval.grid_images=2", "seeds.scales=[1.0]",
            "schedule={name: poly, power: 0.9}", "loss={alpha: 0.2, beta: 1.2}", "num_workers=0"]  # fmt: skip
    result = train.main(argv)["bas"]
    assert 0 <= result["test"]["miou"] <= 100 and "miou_fixed" in result["test"]
    assert result["threshold"] == result["val"]["best_bg_threshold"]  # the seeds' threshold comes from val
    history = json.loads((out / "history.json").read_text())
    assert history["history"][0]["miou"] == pytest.approx(result["val"]["miou"])
    assert (out / "grid.png").is_file()
    model = bas_zoo.BASModel.from_pretrained(out / "model")
    assert model.multilabel and model.loc_threshold == pytest.approx(result["threshold"])
    # init_from: a second run starts from the exported weights (the demo's warm-up start), strictly loaded
    again = train.main(
        [*argv[:1], str(tmp_path / "run2"), *argv[2:], f"init_from={out / 'model'}", "method=cam"]
    )
    assert 0 <= again["cam"]["test"]["miou"] <= 100
    with pytest.raises(Exception, match="does not match"):
        train.main([*argv[:1], str(tmp_path / "run3"), *argv[2:], f"init_from={out / 'model'}", "loss.beta=0.5",
                    "model_args.backbone_args.channels=[8, 16, 32, 32]"])  # fmt: skip


# ---------------------------------------------------------------------------------------- pipeline
def test_pipeline_segment_returns_per_class_masks_at_the_image_size():
    model = tiny_model(num_classes=3).eval()
    model.loc_threshold = 0.3
    pipe = bas_zoo.pipeline(model)
    images = [np.full((40, 50, 3), 120, np.uint8), np.zeros((30, 20, 3), np.uint8), "missing.jpg"]
    pipe.errors = "skip"
    results = pipe(images, segment=True, scales=(1.0, 0.5))
    assert "error" in results[2] and "segments" not in results[2]
    for result, (h, w) in zip(results[:2], [(40, 50), (30, 20)], strict=True):
        seg = result["segmentation"]
        assert seg.shape == (h, w) and seg.dtype == np.uint8 and len(result["segments"]) >= 1
        for part in result["segments"]:
            assert part["mask"].shape == (h, w) and np.array_equal(part["mask"], seg == part["label_id"] + 1)
            assert 0.0 <= part["score"] <= 1.0
    forced = pipe(images[0], segment=True, target=2, scales=(1.0,))
    assert [s["label_id"] for s in forced["segments"]] == [2] and set(np.unique(forced["segmentation"])) <= {
        0,
        3,
    }
    single = timm.create_model("bas_resnet18", num_classes=3)
    with pytest.raises(ValueError, match="multi-label"):
        bas_zoo.pipeline(single)(images[0], segment=True)


def test_class_probabilities_by_hand():
    logits = torch.tensor([[2.0, 0.0, 1.0], [1.0, 2.0, 3.0]])
    present = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    probs = class_probabilities(logits, present)
    # e^s / (e^s + e^0): sigmoid(2) and sigmoid(1); nothing absent -> 1
    torch.testing.assert_close(probs[0, [0, 2]], torch.tensor([0.8807970779, 0.7310585786]))
    torch.testing.assert_close(probs[1], torch.ones(3))
