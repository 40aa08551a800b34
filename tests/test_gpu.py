"""The CUDA paths (deselected by default; run with `pytest -m gpu` on a machine with a GPU).

Without CUDA these tests are skipped with that reason, never silently passed.
"""

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (pytest -m gpu on a GPU machine)")]


def test_cuda_training_with_amp_runs_and_loads_on_cuda(tmp_path):
    from medreg.config import load_config, preset_path
    from medreg.inference.bundle import load_model
    from medreg.train import train
    from medreg.training.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", shape=(32, 32, 32), n_train=4, n_test=2)
    config = load_config(preset_path("demo-brain"), ["train.steps=40", "train.val_every=20", "train.lr=3e-3",
                                                     "train.amp=true", "data.val_split=train"])
    result = train(config, tmp_path / "data", tmp_path / "run", device="cuda", progress=False)
    assert result.step == 40 and result.last_val  # validation ran on the GPU
    model, _ = load_model(tmp_path / "run", device="cuda")
    assert next(model.parameters()).is_cuda


def test_cuda_and_cpu_predict_the_same_field():
    from medreg.networks import UNet
    from medreg.registration import Downsample, FromVectorField, TwoStep

    torch.manual_seed(0)
    model = TwoStep(Downsample(FromVectorField(UNet(3, 2, channels=(8, 16, 16)))),
                    FromVectorField(UNet(3, 2, channels=(8, 16, 16))))
    for p in model.parameters():
        p.data.normal_(0, 0.02)
    m, f = torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        cpu = model(m, f).displacement((32, 32, 32))
        gpu = model.cuda()(m.cuda(), f.cuda()).displacement((32, 32, 32), device="cuda")
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-3)
