"""Pieces of the training loop (``medreg.train``): data, augmentation, validation, logs, distributed setup."""
