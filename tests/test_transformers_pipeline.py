"""transformers.pipeline("bas-localization", ...) returns exactly what bas_zoo.pipeline returns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
import transformers
from test_hub import ORG_NAME, offline_cache, saved  # noqa: F401  (fixtures)
from test_pipeline import _rng_image, bad_inputs, base_model, mixed, model  # noqa: F401  (fixtures)
from test_wsss import tiny_model as multilabel_model
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.pt_utils import KeyDataset

import bas_zoo
from bas_zoo.data.image import ImageLoadError
from bas_zoo.transformers_pipeline import TASK, BASLocalizationPipeline


@pytest.fixture(scope="module", autouse=True)
def registered() -> None:
    assert bas_zoo.register_transformers_pipeline() is BASLocalizationPipeline
    assert bas_zoo.register_transformers_pipeline() is BASLocalizationPipeline  # twice: no-op
    assert TASK in PIPELINE_REGISTRY.get_supported_tasks()


def assert_same(got: list[dict] | dict, want: list[dict] | dict) -> None:
    got, want = (got, want) if isinstance(want, list) else ([got], [want])
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert set(a) == set(b)
        if "error" in b:
            assert a == b
            continue
        assert (a["label"], a["label_id"], a["boxes"]) == (b["label"], b["label_id"], b["boxes"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)
        np.testing.assert_allclose(a["map"], b["map"], atol=1e-5)
        np.testing.assert_array_equal(a["mask"], b["mask"])
        if "segments" in b:
            np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
            assert [s["label_id"] for s in a["segments"]] == [s["label_id"] for s in b["segments"]]


def test_model_instance_gives_bas_zoo_results(model: bas_zoo.BASModel, mixed) -> None:  # noqa: F811
    items, _ = mixed
    pipe = transformers.pipeline(TASK, model=model, device="cpu")
    assert isinstance(pipe, BASLocalizationPipeline) and pipe.model is model
    want = bas_zoo.pipeline(model, threshold=0.2)(items, batch_size=8)
    assert_same(pipe(items, batch_size=2, threshold=0.2), want)
    assert_same(pipe(tuple(items), threshold=0.2), want)  # default batch_size 1, a tuple is a list
    assert_same(pipe(items[1], threshold=0.2), want[1])  # one image: one dict
    assert pipe([]) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"top_k": 2}, {"target": 1}, {"target": [0, 2, 1, 1, 0]}, {"mode": "all", "threshold": 0.5}],
)
def test_call_parameters_match(model: bas_zoo.BASModel, mixed, kwargs: dict) -> None:  # noqa: F811
    items, _ = mixed
    init = {k: v for k, v in kwargs.items() if k in ("top_k", "threshold", "mode")}
    call = {k: v for k, v in kwargs.items() if k not in init}
    want = bas_zoo.pipeline(model, **init)(items, **call)
    pipe = transformers.pipeline(TASK, model=model, device="cpu")
    assert_same(pipe(items, batch_size=3, **kwargs), want)  # per call
    at_init = transformers.pipeline(TASK, model=model, device="cpu", **init)
    assert_same(at_init(items, **call), want)


def test_call_overrides_init_defaults(model: bas_zoo.BASModel) -> None:  # noqa: F811
    image = _rng_image(48, 40, 3)
    pipe = transformers.pipeline(TASK, model=model, device="cpu", threshold=0.9, top_k=3, mode="all")
    want = bas_zoo.pipeline(model, threshold=0.3)(image)
    assert_same(pipe(image, threshold=0.3, top_k=1, mode="largest"), want)
    assert_same(pipe(image), bas_zoo.pipeline(model, threshold=0.9, top_k=3, mode="all")(image))


def test_errors_and_generators(model: bas_zoo.BASModel, bad_inputs) -> None:  # noqa: F811
    items = [_rng_image(40, 50), *bad_inputs.values(), _rng_image(30, 20, 1)]
    skip = transformers.pipeline(TASK, model=model, device="cpu", errors="skip")
    assert_same(skip(items, batch_size=3), bas_zoo.pipeline(model, errors="skip")(items))
    with pytest.raises(ImageLoadError, match=r"images\[1\]"):
        transformers.pipeline(TASK, model=model, device="cpu")(items, batch_size=4)
    with pytest.raises(ValueError, match="set when the pipeline is built"):
        skip(items, errors="raise")
    # A generator or a torch dataset streams: an iterator of results; a per-image target needs a length.
    good = [items[0], items[-1]]
    stream = skip((x for x in good), batch_size=2, target=2)
    assert not isinstance(stream, list)
    assert_same(list(stream), bas_zoo.pipeline(model)(good, target=2))
    dataset = KeyDataset(
        datasets.Dataset.from_dict({"image": [PIL.Image.fromarray(x) for x in good]}), "image"
    )
    want = bas_zoo.pipeline(model)(good, target=[1, 0])
    assert_same(list(skip(dataset, batch_size=2, target=[1, 0])), want)
    with pytest.raises(ValueError, match="not a generator"):
        skip((x for x in good), target=[0, 1])
    with pytest.raises(ValueError, match="one per image"):
        skip(good, target=[0])


def test_segment_on_a_multilabel_model(model: bas_zoo.BASModel) -> None:  # noqa: F811
    wsss = multilabel_model().eval()
    images = [np.full((40, 50, 3), 120, np.uint8), _rng_image(30, 20)]
    want = bas_zoo.pipeline(wsss, threshold=0.3)(images, segment=True, scales=(1.0,))
    pipe = transformers.pipeline(TASK, model=wsss, device="cpu")
    assert_same(pipe(images, batch_size=2, segment=True, scales=(1.0,), threshold=0.3), want)
    with pytest.raises(ValueError, match="multi-label"):
        transformers.pipeline(TASK, model=model, device="cpu")(images, segment=True)


def test_local_folder_saved_by_the_pipeline(model: bas_zoo.BASModel, mixed, tmp_path: Path) -> None:  # noqa: F811
    items, _ = mixed
    transformers.pipeline(TASK, model=model, device="cpu").save_pretrained(tmp_path / "saved")
    for ref in (str(tmp_path / "saved"), tmp_path / "saved"):
        pipe = transformers.pipeline(TASK, model=ref, device="cpu")
        assert isinstance(pipe.model, bas_zoo.BASModel)
        assert_same(pipe(items, batch_size=2), bas_zoo.pipeline(ref)(items))
    double = transformers.pipeline(TASK, model=str(tmp_path / "saved"), device="cpu", dtype=torch.float64)
    assert next(double.model.parameters()).dtype == torch.float64
    assert_same(double(items[:2]), bas_zoo.pipeline(model)(items[:2]))


def test_hub_id_from_the_cache(offline_cache) -> None:  # noqa: F811
    images = [_rng_image(45, 70, 5), _rng_image(64, 64, 6)]
    pipe = transformers.pipeline(TASK, model=ORG_NAME, device="cpu")
    assert (pipe.localizer.threshold, pipe.localizer.top_k) == (0.35, 2)  # stored with the model
    assert_same(pipe(images, batch_size=2), bas_zoo.pipeline(ORG_NAME)(images))


def test_clear_errors(model: bas_zoo.BASModel, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(TypeError, match="BAS model"):
        transformers.pipeline(TASK, model=torch.nn.Linear(2, 2), device="cpu")
    pipe = transformers.pipeline(TASK, model=model, device="cpu")
    with pytest.raises(ValueError, match="mode"):
        pipe(_rng_image(40, 40), mode="biggest")
    with pytest.raises(ValueError, match="num_workers"):
        pipe([_rng_image(40, 40)], num_workers=2)
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="device_map is not supported"):
        transformers.pipeline(TASK, model=str(tmp_path / "m"), device_map="auto")


def test_without_transformers_a_clear_import_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    monkeypatch.delitem(sys.modules, "bas_zoo.transformers_pipeline")
    monkeypatch.delattr(bas_zoo, "transformers_pipeline")
    with pytest.raises(ImportError, match=r'pip install "bas-zoo\[transformers\]"'):
        bas_zoo.register_transformers_pipeline()


def test_importing_bas_zoo_does_not_import_transformers() -> None:
    code = "import sys, bas_zoo; assert 'transformers' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
