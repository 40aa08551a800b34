"""What the ``medreg bench`` sub-commands read alike: a comma-separated baseline list and the shipped model."""

from __future__ import annotations


def baseline_specs(text: str) -> list[str]:
    """``--baselines``: comma-separated specs, or ``none`` (an empty list)."""
    return [] if text.strip().lower() == "none" else [s.strip() for s in text.split(",") if s.strip()]


def checked_baselines(text: str) -> list[str]:
    """:func:`baseline_specs`, each one built once so that an unknown one fails before any work."""
    from medreg.baselines import get_baseline

    specs = baseline_specs(text)
    for s in specs:
        get_baseline(s)
    return specs


def shipped_model(dataset: str) -> str:
    """The model shipped for a built-in dataset: ``medreg/weights/<dataset>.safetensors``."""
    from pathlib import Path

    import medreg

    return str(Path(medreg.__file__).parent / "weights" / f"{dataset}.safetensors")
