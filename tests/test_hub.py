"""Hub layout, strict loading, model cards and pushing, all offline (pytest-socket blocks the network).

The push tests drive the real ``HfApi`` (create_repo, create_branch, upload_folder -> preupload,
LFS batch + PUT, commit) through an in-process ``httpx2.MockTransport`` installed with
``huggingface_hub.set_client_factory``: only the transport is fake, every request is built by
huggingface_hub itself. ``hf-hub:`` loading reads a hand-built HF cache in offline mode.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import shutil
from pathlib import Path

import httpx2
import pytest
import timm
import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin, constants
from huggingface_hub.repocard import metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from huggingface_hub.utils import _http
from safetensors.torch import load_file, save_file
from timm.models import PretrainedCfg
from timm.models._hub import load_model_config_from_path

import bas_zoo
from bas_zoo import hub
from bas_zoo.models import BASModel

ORG_NAME = "bas-org/bas-resnet18-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
LABELS = ["circle", "square", "triangle"]
METRICS = {
    "top1_loc": 61.25,
    "top5_loc": 80.0,
    "gt_known_loc": 72.5,
    "maxboxacc_v2": 55.123456,
    "maxboxacc_v2@30": 70.0,
    "best_threshold": 0.25,
}
TRAIN_CONFIG = {"model": "bas_resnet18", "dataset": "synthetic", "epochs": 2, "lr": 0.001, "seed": 0}


def tiny_model(**kwargs) -> BASModel:
    """bas_resnet18 with a narrow head and non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = timm.create_model("bas_resnet18", num_classes=3, head_chs=32, **kwargs)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64))
    return model.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[BASModel, Path]:
    model = tiny_model(loc_threshold=0.35, loc_top_k=2)
    folder = tmp_path_factory.mktemp("saved") / "model"
    bas_zoo.hub.save_pretrained(
        model, folder, metrics=METRICS, config=TRAIN_CONFIG, dataset="synthetic", label_names=LABELS
    )
    return model, folder


def make_cache(folder: Path, root: Path, repo_id: str = ORG_NAME) -> Path:
    """The HF cache layout huggingface_hub reads: models--ORG--NAME/{refs/main, snapshots/<sha>/...}."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        shutil.copy(file, snapshot / file.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return root


@pytest.fixture
def offline_cache(saved, tmp_path, monkeypatch) -> Path:
    """A pre-populated HF cache, used as the default cache, with HF_HUB_OFFLINE=1."""
    cache = make_cache(saved[1], tmp_path / "hf_cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


# ---- layout and config ---------------------------------------------------------------------------
def test_folder_layout_and_config(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "bas_resnet18"
    assert config["num_classes"] == 3 and config["label_names"] == LABELS
    assert config["num_features"] == 32
    expected = {
        "backbone": "resnet18",
        "layout": "paper",
        "num_classes": 3,
        "in_chans": 3,
        "head_relu": False,
        "head_chs": 32,
        "loc_top_k": 2,
        "loc_threshold": 0.35,
    }
    assert config["model_args"].items() >= expected.items()
    # every constructor argument is recorded (so new ones are too), never the ImageNet download switch
    init_args = set(inspect.signature(BASModel.__init__).parameters) - {"self", "pretrained_backbone"}
    assert set(config["model_args"]) == init_args - {"backbone_args"}
    assert config["bas_zoo"]["loc_threshold"] == 0.35 and config["bas_zoo"]["loc_top_k"] == 2
    cfg = config["pretrained_cfg"]
    PretrainedCfg(**cfg)  # timm rejects unknown keys
    assert cfg["num_classes"] == 3 and cfg["first_conv"] == "f1.conv1"
    assert not {"file", "url", "hf_hub_id", "source", "architecture", "state_dict"} & cfg.keys()
    # timm's own parser accepts it as is
    pretrained_cfg, name, args = load_model_config_from_path(folder)
    assert name == "bas_resnet18" and args == config["model_args"] and pretrained_cfg["label_names"] == LABELS
    tensors = load_file(folder / "model.safetensors")
    assert tensors.keys() == model.state_dict().keys()


def test_model_method_is_the_hub_mixin(tmp_path):
    model = tiny_model()
    assert isinstance(model, PyTorchModelHubMixin)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    # the mixin's low-level hook writes the same weights + config
    other = tmp_path / "mixin"
    other.mkdir()
    model._save_pretrained(other)
    assert json.loads((other / "config.json").read_text()) == json.loads(
        (tmp_path / "config.json").read_text()
    )


# ---- loading -------------------------------------------------------------------------------------
def _outputs(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return model(x), model.localize(x)


def test_three_loaders_give_identical_outputs(saved, offline_cache):
    model, folder = saved
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    reference = _outputs(model, x)
    loaded = {
        "from_pretrained(dir)": BASModel.from_pretrained(folder),
        "from_pretrained(id)": BASModel.from_pretrained(ORG_NAME),
        "hf-hub": timm.create_model(f"hf-hub:{ORG_NAME}", pretrained=True),
        "local-dir": timm.create_model(f"local-dir:{folder}", pretrained=True),
    }
    for name, other in loaded.items():
        assert type(other) is BASModel, name
        logits, maps = _outputs(other, x)
        assert torch.equal(logits, reference[0]), name
        assert torch.equal(maps, reference[1]), name
        assert other.loc_threshold == 0.35 and other.loc_top_k == 2, name
        assert other.pretrained_cfg["architecture"] == "bas_resnet18", name
        assert other.pretrained_cfg["label_names"] == LABELS, name
    assert not loaded["from_pretrained(id)"].training  # mixin convention: eval mode
    assert loaded["from_pretrained(id)"].pretrained_cfg["source"] == "hf-hub"


def test_from_pretrained_cache_options(saved, tmp_path, fake_hub):
    """cache_dir / local_files_only / revision without the global offline switch: no file requests."""
    model, folder = saved
    cache = make_cache(folder, tmp_path / "cache")
    x = torch.randn(1, 3, 64, 64)
    other = BASModel.from_pretrained(ORG_NAME, cache_dir=cache, local_files_only=True, revision=COMMIT)
    assert torch.equal(_outputs(other, x)[0], _outputs(model, x)[0])
    assert other.pretrained_cfg["hf_hub_id"] == f"{ORG_NAME}@{COMMIT}"
    with pytest.raises(FileNotFoundError):
        BASModel.from_pretrained("bas-org/not-cached", cache_dir=cache, local_files_only=True)
    # huggingface_hub may fetch its user-agent registry; nothing about the repo goes out
    assert not [r for r in fake_hub.requests if r.url.path != "/api/agent-harnesses"]


def test_from_pretrained_new_num_classes_replaces_heads(saved):
    other = BASModel.from_pretrained(saved[1], num_classes=5)
    assert other.num_classes == 5 and other.generator.out_channels == 5
    assert torch.equal(other.f1.conv1.weight, saved[0].f1.conv1.weight)


def test_bad_ids_and_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model folder"):
        BASModel.from_pretrained(str(tmp_path / "missing" / "model"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        BASModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet18"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="model_args"):
        BASModel.from_pretrained(tmp_path)


def _copy(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(folder, out)
    return out


def test_strict_loading_names_missing_and_unexpected_keys(saved, tmp_path):
    folder = _copy(saved[1], tmp_path)
    tensors = load_file(folder / "model.safetensors")
    tensors.pop("generator.weight")
    tensors["extra.weight"] = torch.zeros(1)
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(hub.CheckpointMismatchError) as err:
        BASModel.from_pretrained(folder)
    assert "'generator.weight'" in str(err.value) and "'extra.weight'" in str(err.value)
    with pytest.raises((RuntimeError, ValueError), match="generator.weight"):  # timm's path is strict too
        timm.create_model(f"local-dir:{folder}", pretrained=True)


def test_strict_loading_names_shape_mismatch(saved, tmp_path):
    folder = _copy(saved[1], tmp_path)
    tensors = load_file(folder / "model.safetensors")
    tensors["classifier.bias"] = torch.zeros(7)
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(hub.CheckpointMismatchError, match="classifier.bias"):
        BASModel.from_pretrained(folder)


class _NotATensor:
    pass


def test_pickle_weights_are_read_with_weights_only(saved, tmp_path):
    model, source = saved
    folder = tmp_path / "legacy"
    folder.mkdir()
    shutil.copy(source / "config.json", folder / "config.json")
    torch.save({"model": model.state_dict(), "best_thr": 0.35}, folder / "pytorch_model.bin")
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(_outputs(BASModel.from_pretrained(folder), x)[0], _outputs(model, x)[0])
    # an arbitrary object inside the pickle is refused, never executed
    torch.save({"model": model.state_dict(), "payload": _NotATensor()}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="Cannot read weights file"):
        BASModel.from_pretrained(folder)


def test_corrupt_safetensors_is_a_clear_error(saved, tmp_path):
    folder = _copy(saved[1], tmp_path)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="Cannot read weights file"):
        BASModel.from_pretrained(folder)


def test_writes_are_atomic(saved, tmp_path, monkeypatch):
    model, source = saved
    folder = _copy(source, tmp_path)
    before = (folder / "model.safetensors").read_bytes()

    def broken_save(model, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_model", broken_save)
    with pytest.raises(OSError, match="disk full"):
        hub.save_pretrained(model, folder)
    assert (folder / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_generic_architecture_round_trip(tmp_path):
    """A hand-built BASModel (no registry cfg) saves as bas_generic and reloads the same."""
    torch.manual_seed(0)
    model = BASModel(backbone="resnet18", layout="generic", num_classes=3, head_chs=16).eval()
    hub.save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "bas_generic" and config["model_args"]["layout"] == "generic"
    x = torch.randn(1, 3, 64, 64)
    for other in (
        BASModel.from_pretrained(tmp_path),
        timm.create_model(f"local-dir:{tmp_path}", pretrained=True),
    ):
        assert torch.equal(_outputs(other, x)[0], _outputs(model, x)[0])


def test_save_unwraps_training_wrappers_and_marks_cam_baselines(tmp_path):
    model = tiny_model()
    hub.save_pretrained(torch.nn.DataParallel(model), tmp_path, config={"method": "cam"})
    assert load_file(tmp_path / "model.safetensors").keys() == model.state_dict().keys()
    assert "CAM baseline" in (tmp_path / "README.md").read_text()
    with pytest.raises(TypeError, match="BASModel"):
        hub.save_pretrained(torch.nn.Linear(2, 2), tmp_path)


# ---- model card ----------------------------------------------------------------------------------
def test_model_card_metadata(saved):
    folder = saved[1]
    meta = metadata_load(folder / "README.md")
    assert meta["library_name"] == "timm" and meta["license"] == "apache-2.0"
    assert {"bas_zoo", "timm", "weakly-supervised-object-localization", "image-classification"} <= set(
        meta["tags"]
    )
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "bas_resnet18 on bas_zoo synthetic shapes"
    by_metric = {r.metric_type: r for r in results}
    assert set(by_metric) == {"top1_loc", "top5_loc", "gt_known_loc", "maxboxacc_v2", "maxboxacc_v2@30"}
    gt = by_metric["gt_known_loc"]
    assert gt.metric_value == 72.5 and gt.metric_name == "GT-known Loc"
    assert (
        gt.task_type == "object-detection" and gt.dataset_type == "synthetic" and gt.dataset_split == "test"
    )
    assert by_metric["maxboxacc_v2"].metric_value == 55.1235
    # ModelCardData round trip, and the card as huggingface_hub loads it
    data = ModelCardData(**meta)
    assert data.to_dict()["model-index"] == meta["model-index"]
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "timm" and len(card.data.eval_results) == 5
    text = card.text
    for needle in (
        "2112.00580",
        "2309.12943",
        "@inproceedings{wu2022background",
        "@article{zhai2024background",
        "Background Activation Suppression for Weakly Supervised Object Localization and Semantic Segmentation",
        "```yaml\nmodel: bas_resnet18",
        'timm.create_model("hf-hub:',
        "BASModel.from_pretrained(",
        "bas_zoo.pipeline(",
        "## Limitations",
        "## License",
    ):
        assert needle in text, needle


def test_model_card_hides_local_paths_and_handles_no_metrics():
    model = tiny_model()
    card = hub.build_model_card(model, None, "cub:/home/someone/data/CUB_200_2011", None)
    assert "/home/someone" not in str(card)
    assert card.data.eval_results is None and "CUB-200-2011" in card.data.model_name
    card = hub.build_model_card(model, {"pxap": 66.86, "piou": 50.72}, "wsolevaluation:/m:/d:OpenImages")
    assert {r.metric_type for r in card.data.eval_results} == {"pxap", "piou"}
    assert card.data.eval_results[0].dataset_name == "OpenImages30k"
    card = hub.build_model_card(model, {"gt_known_loc": 50.0}, "someone/my-wsol-dataset")
    assert card.data.datasets == ["someone/my-wsol-dataset"]


# ---- push through the real HfApi, fake transport -------------------------------------------------
class FakeHub:
    """Answers the Hub endpoints huggingface_hub calls for create_repo / upload_folder, and records them."""

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []
        self.created: list[dict] = []
        self.branches: list[str] = []
        self.validated: list[str] = []
        self.lfs_puts: dict[str, bytes] = {}
        self.commits: list[tuple[str, list[dict]]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path, method = request.url.path, request.method
        if method == "POST" and path == "/api/repos/create":
            body = json.loads(request.content)
            self.created.append(body)
            return httpx2.Response(
                200, json={"url": f"https://huggingface.co/{body['organization']}/{body['name']}"}
            )
        if method == "POST" and path == "/api/validate-yaml":
            self.validated.append(json.loads(request.content)["content"])
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if method == "POST" and "/branch/" in path:
            self.branches.append(path.rsplit("/branch/", 1)[1])
            return httpx2.Response(200, json={})
        if method == "POST" and "/preupload/" in path:
            files = json.loads(request.content)["files"]
            modes = [
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if f["path"].endswith(".safetensors") else "regular",
                    "shouldIgnore": False,
                }
                for f in files
            ]
            return httpx2.Response(200, json={"files": modes})
        if method == "POST" and path.endswith(".git/info/lfs/objects/batch"):
            objects = json.loads(request.content)["objects"]
            actions = [
                {
                    "oid": o["oid"],
                    "size": o["size"],
                    "actions": {"upload": {"href": f"https://lfs.example/upload/{o['oid']}"}},
                }
                for o in objects
            ]
            return httpx2.Response(200, json={"transfer": "basic", "objects": actions})
        if method == "PUT" and request.url.host == "lfs.example":
            self.lfs_puts[path.rsplit("/", 1)[1]] = request.read()
            return httpx2.Response(200)
        if method == "POST" and "/commit/" in path:
            lines = [json.loads(line) for line in request.content.decode().splitlines() if line]
            self.commits.append((path.rsplit("/commit/", 1)[1], lines))
            return httpx2.Response(
                200,
                json={
                    "commitUrl": f"https://huggingface.co/{ORG_NAME}/commit/{COMMIT}",
                    "commitOid": COMMIT,
                    "pullRequestUrl": None,
                },
            )
        return httpx2.Response(404, json={"error": f"FakeHub: no route for {method} {path}"})

    def commit_files(self, index: int = -1) -> dict[str, dict]:
        """path -> {'content': bytes} (regular) or {'oid', 'size'} (LFS) of one commit."""
        files = {}
        for line in self.commits[index][1]:
            if line["key"] == "file":
                files[line["value"]["path"]] = {"content": base64.b64decode(line["value"]["content"])}
            elif line["key"] == "lfsFile":
                files[line["value"]["path"]] = {
                    "oid": line["value"]["oid"],
                    "size": line["value"].get("size"),
                }
        return files

    def commit_header(self, index: int = -1) -> dict:
        return next(line["value"] for line in self.commits[index][1] if line["key"] == "header")


@pytest.fixture
def fake_hub(monkeypatch):
    """Route huggingface_hub's HTTP client through FakeHub; the legacy LFS protocol instead of Xet."""
    fake = FakeHub()
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # documented switch: HF_HUB_DISABLE_XET=1
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    default_factory = _http._GLOBAL_CLIENT_FACTORY
    _http.set_client_factory(
        lambda: httpx2.Client(transport=httpx2.MockTransport(fake), follow_redirects=True)
    )
    yield fake
    _http.set_client_factory(default_factory)


def check_pushed_folder(fake: FakeHub, folder: Path) -> None:
    files = fake.commit_files()
    assert set(files) == {"config.json", "model.safetensors", "README.md"}
    assert files["config.json"]["content"] == (folder / "config.json").read_bytes()
    assert files["README.md"]["content"] == (folder / "README.md").read_bytes()
    weights = (folder / "model.safetensors").read_bytes()
    oid = hashlib.sha256(weights).hexdigest()
    assert files["model.safetensors"] == {"oid": oid, "size": len(weights)}
    assert fake.lfs_puts == {oid: weights}
    # the card's YAML went to the Hub's metadata validator before the upload
    assert fake.validated and set(fake.validated) == {(folder / "README.md").read_text()}


def test_push_folder_sends_one_commit_without_pickle(saved, tmp_path, fake_hub):
    folder = _copy(saved[1], tmp_path)
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")  # stray pickle: never sent
    (folder / "notes.txt").write_text("local only")
    info = hub.push_folder(folder, ORG_NAME, private=True, token="hf_fake", commit_message="BAS v1")
    assert info.oid == COMMIT
    assert fake_hub.created == [
        {"name": "bas-resnet18-tiny", "organization": "bas-org", "visibility": "private"}
    ]
    assert fake_hub.commits[0][0] == "main" and fake_hub.commit_header() == {
        "summary": "BAS v1",
        "description": "",
    }
    check_pushed_folder(fake_hub, folder)
    assert all(
        r.headers.get("authorization") == "Bearer hf_fake"
        for r in fake_hub.requests
        if r.url.host != "lfs.example"
    )
    assert not any(b"pytorch_model.bin" in r.content for r in fake_hub.requests if r.method == "POST")


def test_model_push_to_hub_on_a_branch(tmp_path, fake_hub):
    model = tiny_model()
    model.push_to_hub(ORG_NAME, metrics=METRICS, dataset="synthetic", branch="v1", token="hf_fake")
    assert fake_hub.branches == ["v1"] and fake_hub.commits[0][0] == "v1"
    files = fake_hub.commit_files()
    assert set(files) == {"config.json", "model.safetensors", "README.md"}
    card = files["README.md"]["content"].decode()
    assert f'timm.create_model("hf-hub:{ORG_NAME}"' in card and hub.REPO_PLACEHOLDER not in card
    assert json.loads(files["config.json"]["content"])["architecture"] == "bas_resnet18"
