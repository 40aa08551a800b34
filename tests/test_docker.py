"""What can be checked of the Docker images without a Docker engine."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_image_runs_the_makefile_setup():
    text = (ROOT / "docker" / "Dockerfile.cpu").read_text()
    assert re.search(r"^RUN make setup\b", text, re.M), "the CPU image must install with the Makefile's setup"
    assert "download.pytorch.org/whl/cpu" in text  # CPU torch, not PyPI's CUDA build
    assert re.search(r"^setup: \$\(STAMP\)", (ROOT / "Makefile").read_text(), re.M)


def test_images_copy_what_the_package_needs_and_use_medreg_entrypoint():
    for name in ("Dockerfile", "Dockerfile.cpu"):
        text = (ROOT / "docker" / name).read_text()
        for part in ("pyproject.toml", "medreg", "configs"):
            assert re.search(rf"^COPY .*\b{part}\b", text, re.M), f"{name} does not copy {part}"
        assert 'ENTRYPOINT ["medreg"]' in text
        copied = re.findall(r"^COPY (\S+)", text, re.M)
        for src in copied:
            assert (ROOT / src).exists(), f"{name} copies {src}, which is not in the repository"


def test_cuda_image_keeps_the_pinned_torch():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    pin = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"pytorch:{pin}-cuda" in text
