"""The ``bas-zoo`` command, run in-process through ``bas_zoo.cli.main`` (one real subprocess for the script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_hub import LABELS, METRICS, ORG_NAME, TRAIN_CONFIG, check_pushed_folder, fake_hub, tiny_model  # noqa: E402,F401

from bas_zoo import hub  # noqa: E402
from bas_zoo.cli import main  # noqa: E402
from bas_zoo.models import BASModel  # noqa: E402

SUBCOMMANDS = ("localize", "convert-official", "evaluate", "push", "list")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "model"
    hub.save_pretrained(tiny_model(), folder, label_names=LABELS)
    return folder


def run_dir_from(model_dir: Path, root: Path, with_card: bool = False) -> Path:
    """A finished training run as train.py leaves it: model/, metrics.json, config.yaml."""
    run = root / "run"
    shutil.copytree(model_dir, run / "model")
    if not with_card:
        (run / "model" / "README.md").unlink()
    (run / "metrics.json").write_text(json.dumps(METRICS))
    (run / "config.yaml").write_text(yaml.safe_dump(TRAIN_CONFIG))
    return run


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# ---- help and list -------------------------------------------------------------------------------
def test_help_everywhere(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0 and all(name in text for name in SUBCOMMANDS)
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
        assert f"usage: bas-zoo {name}" in capsys.readouterr().out


def test_console_script_is_installed(tmp_path):
    """The real `bas-zoo` script: entry point registered, user errors exit 1 with one line, no traceback."""
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="console_scripts") if e.name == "bas-zoo"]
    assert entry.value == "bas_zoo.cli:main"
    script = Path(sys.executable).with_name("bas-zoo")
    out = subprocess.run(
        [str(script), "push", str(tmp_path / "missing-run"), "--repo-id", ORG_NAME],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"bas-zoo push: error: No such run folder: {tmp_path / 'missing-run'}"


def test_list_shows_models_and_tags(capsys):
    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "bas_resnet50" in lines and "bas_resnet18" in lines and "untrained" in lines["bas_resnet50"]
    assert main(["list", "no_such_model*"]) == 1


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["localize", "x.jpg", "--model", "m", "--out", "o", "--batch-size", "0"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main(["push", "run"])  # --repo-id missing
    assert exit_.value.code == 2


# ---- push ----------------------------------------------------------------------------------------
def test_push_builds_missing_card_and_uploads(model_dir, tmp_path, fake_hub, capsys):  # noqa: F811
    run = run_dir_from(model_dir, tmp_path)
    code = main(
        [
            "push",
            str(run),
            "--repo-id",
            ORG_NAME,
            "--private",
            "--token",
            "hf_fake",
            "--commit-message",
            "first BAS model",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert ORG_NAME in capsys.readouterr().out
    check_pushed_folder(fake_hub, run / "model")
    assert fake_hub.created[0]["visibility"] == "private"
    assert fake_hub.commit_header()["summary"] == "first BAS model"
    card = (run / "model" / "README.md").read_text()
    assert "gt_known_loc" in card and "value: 72.5" in card  # from metrics.json
    assert "epochs: 2" in card and f'"hf-hub:{ORG_NAME}"' in card  # config.yaml, real repo id


def test_push_to_a_branch_keeps_an_existing_card(model_dir, tmp_path, fake_hub):  # noqa: F811
    run = run_dir_from(model_dir, tmp_path, with_card=True)
    before = (run / "model" / "README.md").read_text()
    assert main(["push", str(run), "--repo-id", ORG_NAME, "--branch", "v2"]) == 0
    assert fake_hub.branches == ["v2"] and fake_hub.commits[0][0] == "v2"
    assert (run / "model" / "README.md").read_text() == before.replace(hub.REPO_PLACEHOLDER, ORG_NAME)


def test_push_user_errors(tmp_path, capsys):
    assert main(["push", str(tmp_path / "nope"), "--repo-id", ORG_NAME]) == 1
    assert "No such run folder" in error_line(capsys)
    assert main(["push", str(tmp_path), "--repo-id", ORG_NAME]) == 1
    assert "finished training run" in error_line(capsys)


# ---- convert-official ----------------------------------------------------------------------------
def test_convert_official_checkpoint(tmp_path, capsys):
    """A journal-style release file ({'model': DataParallel state dict, 'best_thr', 'epoch'}) -> Hub folder."""
    model = tiny_model()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    ckpt = tmp_path / "official.pth.tar"
    torch.save({"model": state, "best_thr": 0.2, "epoch": 99}, ckpt)
    out = tmp_path / "converted"
    args = ["convert-official", str(ckpt), "--arch", "bas_resnet18", "--num-classes", "3", "--out", str(out)]
    # head_chs differs from the registry default here, so the plain conversion must fail cleanly
    assert main(args) == 1
    assert "official.pth.tar" in error_line(capsys)

    # official heads are 1024 wide (the registry default)
    model = BASModel(backbone="resnet18", layout="paper", num_classes=3).eval()
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "best_thr": 0.2}, ckpt)
    assert main([*args, "--threshold", "0.2", "--dataset", "cub"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = BASModel.from_pretrained(out)
    assert loaded.loc_threshold == 0.2
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert "CUB-200-2011" in (out / "README.md").read_text()


def test_convert_official_user_errors(tmp_path, capsys):
    assert main(["convert-official", str(tmp_path / "x.pth"), "--arch", "bas_resnet18", "--out", "o"]) == 1
    assert "No such checkpoint" in error_line(capsys)
    (tmp_path / "x.pth").write_bytes(b"garbage")
    assert main(["convert-official", str(tmp_path / "x.pth"), "--arch", "resnet18", "--out", "o"]) == 1
    assert "Unknown BAS architecture" in error_line(capsys)


# ---- evaluate ------------------------------------------------------------------------------------
def test_evaluate_delegates_to_the_package(model_dir, tmp_path, capsys, monkeypatch):
    calls = {}

    def fake_evaluate(model, dataset, **kwargs):
        calls.update(model=model, dataset=dataset, **kwargs)
        return {"gt_known_loc": 50.0}

    import bas_zoo.cli as cli

    monkeypatch.setattr(cli, "_evaluation_fn", lambda: fake_evaluate)
    out = tmp_path / "m.json"
    args = [
        "evaluate",
        "--model",
        str(model_dir),
        "--dataset",
        "synthetic",
        "--batch-size",
        "4",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert isinstance(calls["model"], BASModel) and calls["dataset"] == "synthetic"
    assert calls["batch_size"] == 4 and calls["split"] == "test" and "gt_class" not in calls
    assert json.loads(out.read_text()) == {"gt_known_loc": 50.0}


def test_evaluate_bad_dataset_is_a_user_error(model_dir, capsys):
    pytest.importorskip("bas_zoo.evaluation", exc_type=ImportError)
    assert main(["evaluate", "--model", str(model_dir), "--dataset", "nosuchkind:/nowhere"]) == 1
    assert "nosuchkind" in error_line(capsys)


# ---- localize ------------------------------------------------------------------------------------
def _image(path: Path, size: tuple[int, int], seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_localize_writes_overlay_and_json(model_dir, tmp_path, capsys):
    pytest.importorskip("bas_zoo.pipeline", exc_type=ImportError)
    images = tmp_path / "images"
    images.mkdir()
    _image(images / "a.png", (40, 30), 0)
    _image(images / "b.jpg", (32, 48), 1)
    other = tmp_path / "other"
    other.mkdir()
    _image(other / "a.png", (24, 24), 2)  # same stem as images/a.png
    (images / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    code = main(
        [
            "localize",
            str(images),
            str(other / "a.png"),
            "--model",
            str(model_dir),
            "--out",
            str(out),
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--threshold",
            "0.3",
            "--mode",
            "all",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "broken.png" in err and "Traceback" not in err  # one bad file, the rest went on
    assert sorted(p.name for p in out.iterdir()) == [
        "a.json",
        "a.png",
        "a_1.json",
        "a_1.png",
        "b.json",
        "b.png",
    ]
    record = json.loads((out / "b.json").read_text())
    assert record["label"] in LABELS and 0 <= record["label_id"] < 3
    assert (record["width"], record["height"]) == (32, 48)
    for x0, y0, x1, y1 in record["boxes"]:
        assert 0 <= x0 <= x1 <= 32 and 0 <= y0 <= y1 <= 48
    with Image.open(out / "a_1.png") as overlay:
        assert overlay.mode == "RGB" and overlay.size == (24, 24)


def test_localize_user_errors(model_dir, tmp_path, capsys):
    assert (
        main(["localize", str(tmp_path / "missing.jpg"), "--model", str(model_dir), "--out", str(tmp_path)])
        == 1
    )
    assert "No such image" in error_line(capsys)
    pytest.importorskip("bas_zoo.pipeline", exc_type=ImportError)
    image = _image(tmp_path / "x.png", (16, 16), 0)
    assert (
        main(["localize", str(image), "--model", str(tmp_path / "no" / "model"), "--out", str(tmp_path)]) == 1
    )
    assert "no" in error_line(capsys)


def test_localize_against_the_pipeline_contract(tmp_path, monkeypatch, capsys):
    """The CLI side alone, with a stand-in honouring the pipeline contract (DESIGN.md)."""
    import types

    seen = {}

    class StubPipe:
        def __call__(self, images, batch_size=1):
            seen.setdefault("batches", []).append((list(images), batch_size))
            out = []
            for path in images:
                if path.endswith("bad.png"):
                    out.append({"error": "cannot identify image file", "input": path})
                    continue
                w, h = Image.open(path).size
                mask = np.zeros((h, w), bool)
                mask[1:4, 2:6] = True
                out.append(
                    {
                        "label": "square",
                        "label_id": 1,
                        "score": 0.9,
                        "map": mask.astype(np.float32),
                        "boxes": [[2, 1, 6, 4]],
                        "mask": mask,
                    }
                )
            return out

    def stub_pipeline(model_or_id, device=None, threshold=None, top_k=None, mode="largest", errors="raise"):
        seen.update(
            model=model_or_id, device=device, threshold=threshold, top_k=top_k, mode=mode, errors=errors
        )
        return StubPipe()

    def stub_overlay(image, result):
        return Image.open(image).convert("RGB")

    module = types.ModuleType("bas_zoo.pipeline")
    module.pipeline, module.overlay = stub_pipeline, stub_overlay
    monkeypatch.setitem(sys.modules, "bas_zoo.pipeline", module)
    paths = [str(_image(tmp_path / f"{i}.png", (12, 10), i)) for i in range(3)]
    (tmp_path / "bad.png").write_bytes(b"")
    out = tmp_path / "out"
    code = main(
        [
            "localize",
            *paths,
            str(tmp_path / "bad.png"),
            "--model",
            "org/name",
            "--out",
            str(out),
            "--batch-size",
            "2",
            "--top-k",
            "5",
            "--mode",
            "all",
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1 and "bad.png" in captured.err and "wrote 3 overlay(s)" in captured.out
    assert (
        seen["model"] == "org/name"
        and seen["top_k"] == 5
        and seen["mode"] == "all"
        and seen["errors"] == "skip"
    )
    assert [len(batch) for batch, _ in seen["batches"]] == [2, 2]
    record = json.loads((out / "0.json").read_text())
    assert record == {
        "image": paths[0],
        "width": 12,
        "height": 10,
        "label": "square",
        "label_id": 1,
        "score": 0.9,
        "boxes": [[2.0, 1.0, 6.0, 4.0]],
        "mask_area": 12,
    }
    assert sorted(p.name for p in out.glob("*.png")) == ["0.png", "1.png", "2.png"]
