"""The names of the registered datasets (see :mod:`medreg.datasets.specs`, where they are registered).

Standard library only, so the CLI can use them at ``--help`` time. ``DATASETS`` is
the built-in list, fixed at import; use :func:`~medreg.datasets.specs.is_registered`
for a name registered later.
"""

from medreg.datasets.specs import dataset_names

DATASETS = dataset_names()
