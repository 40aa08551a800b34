"""Parts of ``medreg evaluate`` (the protocol itself is :mod:`medreg.evaluate`).

- ``methods``: medreg and the baselines behind one interface;
- ``pair_metrics``: every metric of one (pair, method) result;
- ``outputs``: per-pair transforms, mapped landmarks, BraTS-Reg submission files;
- ``rows``: one JSON per (pair, method) under ``DIR/rows/`` (resume) and ``metrics.csv``;
- ``shard``: ``--shard I/N`` and ``--shard slurm``;
- ``summary``: ``summary.json`` (per-method statistics and ratios to the reference baseline);
- ``run_info``: ``evaluation.json`` (what was registered, how and on which machine).
"""
