"""A new pair, prepared exactly as the model's training pairs were: preprocessing, then the network grid.

:func:`prepare_pair` runs the model's input pipeline (:class:`~medreg.transforms.input_pipeline.InputPipeline`:
the preprocessing its training data went through, then the network grid) and keeps the preprocessed data
too, for instance optimisation on the data's own grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from medreg.geometry import Grid, index_to_normalized
from medreg.geometry.image_geometry import ImageGeometry
from medreg.spatial.grid import identity_grid, sample
from medreg.spatial.transforms import Affine
from medreg.transforms.input_pipeline import InputPipeline


@dataclass
class PreparedPair:
    """A new pair on the network grid: ``fixed``/``moving`` (1, C, X, Y, Z) and the grid's geometry.

    ``geometry`` maps the network grid of the fixed image back to its original file
    (``geometry.affine`` is network voxel -> RAS mm; ``geometry.original_*`` the input
    image), see :class:`medreg.geometry.image_geometry.ImageGeometry`. The moving image is
    on the same network grid; ``moving_geometry`` records its original file.
    """

    fixed: torch.Tensor
    moving: torch.Tensor
    geometry: Any
    moving_geometry: Any
    fixed_data: torch.Tensor | None = None  # (1, C, *S) the preprocessed pair, before the network grid
    moving_data: torch.Tensor | None = None
    fixed_data_affine: np.ndarray | None = None  # voxel -> RAS of fixed_data / moving_data
    moving_data_affine: np.ndarray | None = None

    @property
    def network_grid(self) -> Grid:
        """The grid both network inputs lie on."""
        return Grid(self.geometry.affine, self.geometry.shape)

    @property
    def fixed_data_grid(self) -> Grid | None:
        """The fixed image's preprocessed grid (before the network grid), if the data are kept."""
        if self.fixed_data is None or self.fixed_data_affine is None:
            return None
        return Grid(self.fixed_data_affine, tuple(self.fixed_data.shape[2:]))

    def data_to_network(self) -> tuple[np.ndarray, np.ndarray]:
        """4x4 maps from the moving and the fixed data's normalized coordinates to the network grid's."""
        if self.fixed_data is None or self.moving_data is None:
            raise ValueError("this pair keeps no preprocessed data (made by prepare_pair?)")
        to_net = index_to_normalized(self.geometry.shape) @ np.linalg.inv(self.geometry.affine)
        return tuple(to_net @ affine @ np.linalg.inv(index_to_normalized(data.shape[2:]))  # type: ignore[return-value]
                     for data, affine in ((self.moving_data, self.moving_data_affine),
                                          (self.fixed_data, self.fixed_data_affine)))

    def finer(self, factor: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(moving, fixed)`` on the network grid's box with ``factor`` times as many voxels per axis.

        Resampled (trilinear) from the preprocessed data, not from the network images,
        so the finer grid keeps detail the network grid has lost; zero outside the data,
        as the network images are zero in their padding. The box is the network grid's,
        so normalized coordinates (and any ``phi``) mean the same on both grids.
        """
        if int(factor) != factor or factor < 1:
            raise ValueError(f"expected an integer factor >= 1, found {factor}")
        to_network = self.data_to_network()  # checks that the data are kept
        shape = tuple(int(n) * int(factor) for n in self.geometry.shape)
        dev = torch.device(device) if device is not None else self.fixed.device
        grid = identity_grid(shape, dev, torch.float32)
        out = []
        for data, to_net in zip((self.moving_data, self.fixed_data), to_network):
            theta = np.linalg.inv(to_net)  # network normalized -> data normalized
            to_data = Affine(torch.as_tensor(theta[:3], dtype=torch.float32, device=dev))
            out.append(sample(data.to(dev), to_data(grid), padding_mode="zeros"))
        return out[0], out[1]


def prepare_pair(fixed: Sequence[Any], moving: Sequence[Any], pipeline: InputPipeline,
                 **pair_options: Any) -> PreparedPair:
    """Preprocess a new pair exactly as the training data was (``fixed``/``moving``: one source per channel).

    ``pipeline`` is the model's :class:`~medreg.transforms.input_pipeline.InputPipeline`
    (:func:`medreg.inference.bundle.load_bundle`, or ``InputPipeline.for_model(config)``):
    its MONAI stages, then the network grid, the path the training pairs took.
    ``pair_options`` go to ``preprocess_pair`` (e.g. ``fixed_points`` to keep landmarks
    inside the foreground crop).
    """
    pp = pipeline.preprocess(fixed, moving, **pair_options)
    fixed_data = torch.from_numpy(np.ascontiguousarray(pp.fixed, dtype=np.float32))
    moving_data = torch.from_numpy(np.ascontiguousarray(pp.moving, dtype=np.float32))
    f, affine = pipeline.to_network(fixed_data, pp.fixed_geometry.affine)
    m, _ = pipeline.to_network(moving_data, pp.moving_geometry.affine)
    shape = tuple(int(s) for s in f.shape[1:])

    def geo(g) -> ImageGeometry:
        return ImageGeometry(original_affine=g.original_affine, original_shape=g.original_shape,
                             affine=affine, shape=shape)

    return PreparedPair(fixed=f[None], moving=m[None], geometry=geo(pp.fixed_geometry),
                        moving_geometry=geo(pp.moving_geometry),
                        fixed_data=fixed_data[None], moving_data=moving_data[None],
                        fixed_data_affine=np.asarray(pp.fixed_geometry.affine, dtype=np.float64),
                        moving_data_affine=np.asarray(pp.moving_geometry.affine, dtype=np.float64))
