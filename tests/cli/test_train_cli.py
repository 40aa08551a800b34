"""``medreg train`` and ``medreg bench train`` through the command line."""

from __future__ import annotations

import pytest

from medreg.cli.main import main
from medreg.config import preset_path
from medreg.inference.bundle import load_model
from medreg.io.checkpoint import read_metadata
from medreg.training.synthetic import write_synthetic_dataset

TINY = ["--set", "model.unet_channels=[4, 8, 8]", "--set", "train.val_every=2", "--set", "data.val_split=train",
        "--set", "data.val_pairs=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, n_train=2, n_test=1, shape=(16, 16, 16))
    return root


def test_train_writes_a_checkpoint_with_its_config(data, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "demo-brain", "--data", str(data), "--out", str(out), "--max-steps", "3",
                 "--device", "cpu", "--no-progress", *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert "trained to step 3" in printed and "val TRE" in printed
    model, config = load_model(out / "checkpoints" / "last" / "model.safetensors")
    assert config.data.dataset == "demo-brain" and config.model.unet_channels == [4, 8, 8]
    assert read_metadata(out / "checkpoints" / "last")["step"] == "3"
    assert (out / "config.yaml").is_file() and (out / "metrics.csv").is_file()
    # resume continues to a later step; a second fresh run into the same folder is refused
    assert main(["train", "--dataset", "demo-brain", "--data", str(data), "--out", str(out), "--resume",
                 "--max-steps", "4", "--device", "cpu", "--no-progress"]) == 0
    assert read_metadata(out)["step"] in ("2", "4")  # best or last
    assert read_metadata(out / "checkpoints" / "last")["step"] == "4"
    assert main(["train", "--dataset", "demo-brain", "--data", str(data), "--out", str(out), "--device", "cpu",
                 "--no-progress", *TINY]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--set", "train.lrr=1"], "train.lrr"),
    (["--set", "train.lr=fast"], "train.lr"),
    (["--config", str(preset_path("demo-lung"))], "data.dataset"),
    (["--max-steps", "0"], "--max-steps"),
    (["--device", "cuda"], "cuda"),
])
def test_bad_arguments_exit_2_with_a_clear_message(data, tmp_path, capsys, args, message):
    import torch

    if args == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("a GPU is present, so --device cuda is valid here")
    code = main(["train", "--dataset", "demo-brain", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--no-progress", *TINY, *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_data_folder(tmp_path, capsys):
    code = main(["train", "--dataset", "demo-brain", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run"),
                 "--device", "cpu", "--no-progress"])
    assert code == 2 and "manifest" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bench_train_prints_speed_memory_and_machine(capsys):
    code = main(["bench", "train", "--dataset", "demo-brain", "--shape", "16", "16", "16", "--steps", "2",
                 "--warmup", "0", "--device", "cpu", "--set", "model.unet_channels=[4, 8, 8]"])
    assert code == 0
    out = capsys.readouterr().out
    assert "steps/s:" in out and "peak memory" in out and "machine:" in out and "16x16x16" in out


def test_bench_rejects_a_shape_the_model_cannot_take(capsys):
    code = main(["bench", "train", "--dataset", "demo-brain", "--shape", "16", "16", "20", "--steps", "1",
                 "--device", "cpu"])
    assert code == 2 and "divisible by 16" in capsys.readouterr().err


def test_help_lists_train_and_bench(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "train" in out and "bench" in out
