"""Inference: a model bundle in one call, a pair prepared as in training, registered, refined, written.

- :mod:`~medreg.inference.bundle`: :func:`load_bundle` (model + config + input pipeline).
- :mod:`~medreg.inference.prepare`: :func:`prepare_pair` (the model's input pipeline).
- :mod:`~medreg.inference.io_config`: instance optimisation as a typed object with presets.
- :mod:`~medreg.inference.refine`: running it (field stages, or fine-tuning a copy).
- :mod:`~medreg.inference.register`: :func:`register_pair` and its result.
- :mod:`~medreg.inference.outputs`: writing a result atomically.
- :mod:`~medreg.inference.batch`: many pairs, resumable.
- :mod:`~medreg.inference.apply`: a written transform applied to images and landmarks.

Nothing here imports :mod:`medreg.train` or :mod:`medreg.training`.
"""
