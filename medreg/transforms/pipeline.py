"""MONAI dictionary pipelines that turn a fixed/moving pair into network inputs.

Built from a :class:`~medreg.transforms.config.PreprocessConfig`. Keys of the
dictionary: ``fixed`` and ``moving`` (a list of channel sources each: paths or
:class:`~medreg.io.nifti.Volume` objects, stacked as channels), optionally
``fixed_label``/``moving_label`` (one source each, resampled with nearest
neighbour) and ``fixed_points``/``moving_points`` (LPS mm, (N, 3); kept inside
the crop).

Steps (the moving image always ends on the fixed image's grid):

1. ``LoadVolumed``: medreg's validated readers (NIfTI through nibabel, headerless
   DIR-Lab ``.img`` through ``medreg.io.dirlab``; MONAI cannot read the latter),
   channels stacked into a ``MetaTensor`` (C, X, Y, Z) carrying the voxel -> RAS affine;
2. intensity: ``ScaleIntensityRangePercentilesd`` (MRI, per channel) or
   ``ScaleIntensityRanged`` (CT HU window), both to [0, 1] clipped, computed on
   the original samples;
3. fixed: ``Orientationd`` then ``Spacingd`` (if a spacing is set and differs);
4. moving: ``Orientationd``, then ``ResampleToMatchd`` onto the fixed grid, in world coordinates (so
   fixed and moving may come with different grids, orientations and spacings;
   skipped, exactly, when the moving image already lies on that grid);
5. ``CropForegroundd`` on the union of both foregrounds and the landmarks, with a margin;
6. ``CenterSpatialCropd`` to ``max_shape`` (if set), ``DivisiblePadd`` to ``shape_multiple``;
   or, with ``target_shape``, ``ResizeWithPadOrCropd`` to exactly that shape.

Step 2 is left out with ``normalize=False`` (files that ``medreg preprocess`` already
normalised: :class:`~medreg.transforms.input_pipeline.InputPipeline`). Every step updates the MetaTensor's affine, so world coordinates are
preserved exactly; :class:`~medreg.geometry.image_geometry.ImageGeometry` records
the original and preprocessed grids of each image.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch

from medreg.errors import InputError
from medreg.geometry.frames import lps_to_voxel
from medreg.geometry.image_geometry import ImageGeometry
from medreg.io.nifti import Volume
from medreg.transforms.config import CtWindow, PreprocessConfig

Source = str | Path | Volume
_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def read_source(source: Source, *, raw_geometry: Any = None, label: bool = False) -> Volume:
    """Load one channel: a Volume is returned as is; ``.img`` needs ``raw_geometry`` (DIR-Lab)."""
    if isinstance(source, Volume):
        return source
    path = Path(source)
    if path.suffix.lower() == ".img":
        from medreg.io.dirlab import read_dirlab_img

        if raw_geometry is None:
            raise InputError(path, "expected a NIfTI file or a raw .img with a known case geometry, found a raw .img without one")
        vol = read_dirlab_img(path, raw_geometry)
        return Volume(array=np.asarray(vol.array, dtype=np.float32), affine=vol.affine, path=path)
    from medreg.io.nifti import load_volume

    return load_volume(path, dtype=np.float32, allow_constant=label)


def stack_channels(volumes: Sequence[Volume]):
    """Stack same-grid volumes into a MetaTensor (C, X, Y, Z) with their common affine."""
    from monai.data import MetaTensor

    first = volumes[0]
    for vol in volumes[1:]:
        if vol.shape != first.shape or not np.allclose(vol.affine, first.affine, atol=1e-4):
            raise InputError(
                vol.path,
                f"expected every channel on the grid of {first.path} (shape {first.shape}), "
                f"found shape {vol.shape} with affine\n{np.round(vol.affine, 4)}",
            )
    data = np.stack([np.asarray(v.array, dtype=np.float32) for v in volumes])
    return MetaTensor(torch.from_numpy(data), affine=torch.from_numpy(first.affine.copy()))


class LoadVolumed:
    """Dictionary transform: load channel sources with medreg.io into MetaTensors.

    Also stores ``<key>_original`` = (affine, shape) of the input grid.
    """

    def __init__(self, keys: Sequence[str], label_keys: Sequence[str] = (), raw_geometry: Any = None):
        self.keys, self.label_keys, self.raw_geometry = list(keys), list(label_keys), raw_geometry

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys + self.label_keys:
            if d.get(key) is None:
                continue
            sources = d[key] if isinstance(d[key], (list, tuple)) else [d[key]]
            if not sources:
                raise ValueError(f"expected at least one channel for {key!r}, found none")
            is_label = key in self.label_keys
            vols = [read_source(s, raw_geometry=self.raw_geometry, label=is_label) for s in sources]
            img = stack_channels(vols)
            d[key] = img
            d[f"{key}_original"] = (vols[0].affine.copy(), tuple(vols[0].shape))
        return d


class UnionForegroundd:
    """Dictionary transform: ``out_key`` = (any channel of any ``keys`` > threshold) or a landmark voxel.

    All ``keys`` must share one grid (that of ``keys[0]``). An empty mask becomes
    all-true, so a blank image is never cropped to nothing.
    """

    def __init__(self, keys: Sequence[str], point_keys: Sequence[str], out_key: str, threshold: float):
        self.keys, self.point_keys, self.out_key, self.threshold = list(keys), list(point_keys), out_key, threshold

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ref = d[self.keys[0]]
        mask = torch.zeros((1, *ref.shape[1:]), dtype=torch.bool)
        for key in self.keys:
            if d.get(key) is not None:
                mask |= (torch.as_tensor(d[key]) > self.threshold).any(dim=0, keepdim=True)
        shape = np.array(ref.shape[1:])
        for key in self.point_keys:
            pts = d.get(key)
            if pts is None or len(pts) == 0:
                continue
            ijk = np.rint(lps_to_voxel(np.asarray(ref.affine, dtype=np.float64), pts)).astype(int)
            ok = np.all((ijk >= 0) & (ijk < shape), axis=1)
            ijk = ijk[ok]
            mask[0, ijk[:, 0], ijk[:, 1], ijk[:, 2]] = True
        if not mask.any():
            mask[:] = True
        d[self.out_key] = mask
        return d


class DropKeysd:
    """Dictionary transform removing helper keys."""

    def __init__(self, keys: Sequence[str]):
        self.keys = list(keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        return {k: v for k, v in data.items() if k not in self.keys}


def _same_grid(a, b) -> bool:
    return tuple(a.shape[1:]) == tuple(b.shape[1:]) and np.allclose(
        np.asarray(a.affine, dtype=np.float64), np.asarray(b.affine, dtype=np.float64), atol=1e-6
    )


class ResampleToMatchIfNeededd:
    """``ResampleToMatchd`` that passes an image through untouched when it already lies on the target grid.

    Resampling onto the same grid would only blur (and cost time); skipping it is exact.
    """

    def __init__(self, key: str, key_dst: str, mode: str):
        from monai.transforms import ResampleToMatchd

        self.key, self.key_dst = key, key_dst
        self.resample = ResampleToMatchd(key, key_dst=key_dst, mode=mode, padding_mode="zeros")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        if _same_grid(data[self.key], data[self.key_dst]):
            return dict(data)
        return self.resample(data)


class SpacingIfNeededd:
    """``Spacingd`` skipped when the (reoriented) image already has the target spacing on an axis-aligned grid."""

    def __init__(self, keys: list[str], pixdim: list[float], modes: list[str]):
        from monai.transforms import Spacingd

        self.keys, self.pixdim = keys, np.asarray(pixdim, dtype=np.float64)
        self.spacing = Spacingd(keys, pixdim=pixdim, mode=modes, padding_mode="zeros")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        a = np.asarray(data[self.keys[0]].affine, dtype=np.float64)[:3, :3]
        if np.allclose(a, np.diag(self.pixdim), atol=1e-6):
            return dict(data)
        return self.spacing(data)


def _intensity(config: PreprocessConfig, keys: list[str]):
    from monai.transforms import ScaleIntensityRanged, ScaleIntensityRangePercentilesd

    it = config.intensity
    if isinstance(it, CtWindow):
        return ScaleIntensityRanged(keys, a_min=it.hu_min, a_max=it.hu_max, b_min=0.0, b_max=1.0, clip=True)
    return ScaleIntensityRangePercentilesd(
        keys, lower=it.lower, upper=it.upper, b_min=0.0, b_max=1.0, clip=True, channel_wise=True
    )


def _grid_steps(config: PreprocessConfig, image: str, label: str | None) -> list:
    """Reorientation and resampling of one image; its label map (nearest neighbour) follows onto the same grid."""
    from monai.transforms import Orientationd

    keys = [image] + ([label] if label else [])
    steps: list = [Orientationd(keys, axcodes=config.orientation, labels=_LABELS)]
    if config.spacing is not None:
        steps.append(SpacingIfNeededd([image], config.spacing, ["bilinear"]))
    if label:
        steps.append(ResampleToMatchIfNeededd(label, image, "nearest"))
    return steps


def _shape_steps(config: PreprocessConfig, image_keys: list[str], keys: list[str], point_keys: list[str], tag: str) -> list:
    """Crop to the foreground of ``image_keys`` (and points), centre-crop to max_shape, pad to a multiple."""
    from monai.transforms import CenterSpatialCropd, CropForegroundd, DivisiblePadd, ResizeWithPadOrCropd

    steps: list = []
    if config.crop_foreground:
        fg = f"_foreground_{tag}"
        steps += [
            UnionForegroundd(image_keys, point_keys, fg, config.foreground_threshold),
            CropForegroundd(keys, source_key=fg, select_fn=lambda m: m > 0, margin=config.crop_margin, allow_smaller=True),
            DropKeysd([fg]),
        ]
    if config.target_shape is not None:
        steps.append(ResizeWithPadOrCropd(keys, spatial_size=config.target_shape, mode="constant"))
        return steps
    if config.max_shape is not None:
        steps.append(CenterSpatialCropd(keys, roi_size=config.max_shape))
    steps.append(DivisiblePadd(keys, k=config.shape_multiple, mode="constant"))
    return steps


def build_pair_pipeline(
    config: PreprocessConfig,
    *,
    fixed_label: bool = False,
    moving_label: bool = False,
    raw_geometry: Any = None,
    normalize: bool = True,
):
    """The MONAI ``Compose`` for one pair (see the module docstring for the steps)."""
    from monai.transforms import Compose, Orientationd

    fl = "fixed_label" if fixed_label else None
    ml = "moving_label" if moving_label else None
    labels = [k for k in (fl, ml) if k]
    steps: list = [LoadVolumed(["fixed", "moving"], labels, raw_geometry)]
    if normalize:
        steps.append(_intensity(config, ["fixed", "moving"]))
    steps += _grid_steps(config, "fixed", fl)
    # reorienting first is exact and cheap, and lets a moving image on the fixed image's grid skip resampling
    steps.append(Orientationd(["moving"] + ([ml] if ml else []), axcodes=config.orientation, labels=_LABELS))
    steps.append(ResampleToMatchIfNeededd("moving", "fixed", "bilinear"))
    if ml:
        steps.append(ResampleToMatchIfNeededd(ml, "fixed", "nearest"))  # the moving label's own grid may differ
    keys = ["fixed", "moving"] + labels
    steps += _shape_steps(config, ["fixed", "moving"], keys, ["fixed_points", "moving_points"], "pair")
    return Compose(steps)


def _unwrap(err: BaseException) -> BaseException:
    """MONAI wraps errors raised inside a transform in RuntimeError('applying transform ...'); return ours."""
    inner = err
    while isinstance(inner, RuntimeError) and str(inner).startswith("applying transform") and inner.__cause__ is not None:
        inner = inner.__cause__
    return inner if isinstance(inner, (InputError, ValueError)) else err


@dataclass
class PreprocessedPair:
    """A preprocessed pair: channel-first arrays, optional label maps, and each image's geometry."""

    fixed: np.ndarray  # (C, X, Y, Z)
    moving: np.ndarray  # (C, X, Y, Z), on the fixed grid
    fixed_geometry: ImageGeometry
    moving_geometry: ImageGeometry
    fixed_label: np.ndarray | None = None  # (X, Y, Z) int16
    moving_label: np.ndarray | None = None


def _geometry(original: tuple[np.ndarray, tuple[int, ...]], image) -> ImageGeometry:
    return ImageGeometry(
        original_affine=original[0],
        original_shape=original[1],
        affine=np.asarray(image.affine, dtype=np.float64),
        shape=tuple(int(s) for s in image.shape[1:]),
    )


def preprocess_pair(
    fixed: Sequence[Source],
    moving: Sequence[Source],
    config: PreprocessConfig,
    *,
    fixed_label: Source | None = None,
    moving_label: Source | None = None,
    fixed_points: np.ndarray | None = None,
    moving_points: np.ndarray | None = None,
    raw_geometry: Any = None,
    normalize: bool = True,
) -> PreprocessedPair:
    """Run the pair pipeline; ``fixed``/``moving`` list one source per channel (``config.modalities`` order).

    ``normalize=False`` leaves the intensities as they are (files already normalised).
    """
    for role, sources in (("fixed", fixed), ("moving", moving)):
        if len(sources) != len(config.modalities):
            raise ValueError(f"expected {len(config.modalities)} {role} channels {config.modalities}, found {len(sources)}")
    pipeline = build_pair_pipeline(
        config, fixed_label=fixed_label is not None, moving_label=moving_label is not None, raw_geometry=raw_geometry,
        normalize=normalize,
    )
    data = {
        "fixed": list(fixed), "moving": list(moving),
        "fixed_label": fixed_label, "moving_label": moving_label,
        "fixed_points": fixed_points, "moving_points": moving_points,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with torch.no_grad():
            try:
                out = pipeline(data)
            except RuntimeError as err:
                inner = _unwrap(err)
                if inner is err:
                    raise
                raise inner from None
    dtype = np.dtype(np.float32)

    def array(key: str) -> np.ndarray:
        return np.ascontiguousarray(torch.as_tensor(out[key]).numpy().astype(dtype, copy=False))

    def label(key: str) -> np.ndarray | None:
        if out.get(key) is None or key not in out or not hasattr(out[key], "affine"):
            return None
        return np.rint(torch.as_tensor(out[key])[0].numpy()).astype(np.int16)

    fixed_geo = _geometry(out["fixed_original"], out["fixed"])
    moving_geo = _geometry(out["moving_original"], out["moving"])
    return PreprocessedPair(
        fixed=array("fixed"), moving=array("moving"),
        fixed_geometry=fixed_geo, moving_geometry=moving_geo,
        fixed_label=label("fixed_label"), moving_label=label("moving_label"),
    )
