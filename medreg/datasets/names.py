"""The dataset names medreg knows, in one place (no imports, so the CLI can use it at ``--help`` time)."""

DATASETS = ("brats", "dirlab", "copd", "learn2reg", "demo-brain", "demo-lung")
