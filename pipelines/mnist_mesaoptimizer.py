"""The seed experiment: an MLP applied nine times as a multistep registration of MNIST fives, probed step by step.

    python pipelines/mnist_mesaoptimizer.py --out runs/mnist                    # 3 seeds x (60 s, 300 s)
    python pipelines/mnist_mesaoptimizer.py --out runs/mnist-quick --seeds 0 --seconds 60

Trains FCNet inside FromVectorField, stacked as eight TwoStep stages that reuse the same
inner network (nine applications; the composition resampled once per step, ``compose="dense"``),
with SSD + 0.05 * diffusion on pairs of fives, for each training seed and each wall-clock
budget. Then :mod:`medreg.registration.probe` measures every step on 500 held-out pairs of
fives and 500 pairs of sevens (never seen in training), with the trained model unrolled to
4x its steps (36 applications):

- the training loss and its terms, the update's size and its descent cosine with the negative
  gradient of the training loss, of the similarity alone, and of the distance to the mean
  training five ("is this step turning the digit into a five?"), and the loss change;
- p(5) and p(7) under a digit classifier trained once on a disjoint part of the file, the share
  classified as five, and the distance to the mean five.

Writes ``steps.csv`` (one row per run, digit and step: means and standard deviations over the
pairs), ``summary.csv`` (mean and standard deviation over the seeds, per budget, digit and step),
``metrics.json``, ``steps.png`` (curves with the spread over seeds) and ``grid_5.png`` /
``grid_7.png`` (the first seed's shortest run, step by step).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medreg.datasets.mnist import start_seed_run
from medreg.evaluation.probe import finish_panel, plot_band
from medreg.evaluation.rows import rows_csv_text
from medreg.errors import InputError
from medreg.io.atomic import write_text_atomic
from medreg.losses import diffusion_loss, ssd_loss
from medreg.networks import FCNet
from medreg.networks.classifier import DigitClassifier
from medreg.registration import FromVectorField, RegistrationObjective, stack_two_step
from medreg.registration.probe import StepLoss, probe_steps, unrolled_steps
from medreg.spatial import warp

STEPS = 9  # eight TwoStep stages around one inner network
UNROLL = 4  # the probe runs the trained model to 4x its steps


def random_pairs(n: int, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = rng.integers(0, n, count)
    b = (a + rng.integers(1, n, count)) % n  # never a digit with itself
    return a, b


def train_classifier(x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> tuple[DigitClassifier, float]:
    torch.manual_seed(seed)
    clf = DigitClassifier()
    opt = torch.optim.Adam(clf.parameters(), lr=2e-3)
    n_val = len(x) // 10
    xv, yv, xt, yt = x[:n_val], y[:n_val], x[n_val:], y[n_val:]
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (256,), generator=g)
        loss = torch.nn.functional.cross_entropy(clf(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (clf(xv).argmax(1) == yv).float().mean().item()
    return clf, acc


def train_model(train: torch.Tensor, seconds: float, seed: int, args) -> tuple[FromVectorField, dict]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    inner = FromVectorField(FCNet((28, 28), in_channels=2, hidden=50))
    model = stack_two_step(inner, STEPS, compose="dense")
    objective = RegistrationObjective(model, "ssd", "diffusion", lam=args.lam)
    opt = torch.optim.Adam(inner.parameters(), lr=args.lr)
    steps, log, t0 = 0, [], time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a, b = random_pairs(len(train), args.batch, rng)
        res = objective(train[a], train[b])
        opt.zero_grad(set_to_none=True)
        res.total.backward()
        opt.step()
        if steps % 200 == 0:
            log.append({"step": steps, **res.scalars()})
        steps += 1
    elapsed = time.perf_counter() - t0
    return inner, {"steps": steps, "seconds": elapsed, "steps_per_second": steps / elapsed, "log": log}


def probe_digit(inner, clf, mean_five, moving, fixed, lam):
    model = stack_two_step(inner, STEPS, compose="dense")
    loss = StepLoss(ssd_loss, diffusion_loss, lam=lam)

    def probs(w):
        with torch.no_grad():
            return torch.softmax(clf(w), 1)

    targets = {"to_mean_five": lambda w, u: (w - mean_five).pow(2).flatten(1).mean(1)}
    measures = {"p_five": lambda w: probs(w)[:, 5], "p_seven": lambda w: probs(w)[:, 7],
                "classified_as_five": lambda w: (probs(w).argmax(1) == 5).double()}
    with torch.no_grad():
        maps = unrolled_steps(model, moving, fixed, UNROLL)
    return probe_steps(maps, moving, fixed, loss, targets, measures, trained_steps=STEPS), maps


def save_grid(path: Path, moving, fixed, maps, rows: int = 6) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with torch.no_grad():
        warped = [warp(moving[:rows], _first(phi, rows)) for phi in maps[:STEPS]]
    cols = [moving[:rows]] + warped + [fixed[:rows]]
    titles = ["moving"] + [f"step {k}" for k in range(1, STEPS + 1)] + ["fixed"]
    fig, axes = plt.subplots(rows, len(cols), figsize=(len(cols) * 1.1, rows * 1.15))
    for r in range(rows):
        for c, img in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(img[r, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _first(phi, rows):
    """The first ``rows`` pairs of a map, as a dense field (the grid plots only those)."""
    from medreg.spatial import identity_grid
    from medreg.spatial.transforms import DisplacementField

    grid = identity_grid((28, 28))
    return DisplacementField((phi(grid) - grid)[:rows])


CURVES = [("similarity", "MSE warped vs fixed"), ("loss", "training loss"),
          ("cos_loss", "descent cosine: training loss"), ("cos_to_mean_five", "descent cosine: to the mean five"),
          ("p_five", "p(5) of warped moving"), ("p_seven", "p(7) of warped moving")]


def save_curves(path: Path, summary: list[dict], budgets: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for ax, (key, title) in zip(axes.flat, CURVES):
        for digit, style in (("5", "-"), ("7", "--")):
            for budget in budgets:
                rows = [r for r in summary if r["digit"] == digit and r["seconds"] == budget]
                plot_band(ax, rows, key, f"{digit}s, {budget:g} s", style, ".")
        finish_panel(ax, title, STEPS, f"step (0 = before; trained for {STEPS}, grey line)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(step_rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of each run's per-pair mean, per budget, digit and step."""
    keys = [k[:-5] for k in step_rows[0] if k.endswith("_mean")] + ["descent_share"]
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in step_rows:
        groups.setdefault((r["seconds"], r["digit"], r["step"]), []).append(r)
    for (seconds, digit, step), rows in sorted(groups.items()):
        row = {"seconds": seconds, "digit": digit, "step": step, "seeds": len(rows),
               "beyond_training": rows[0]["beyond_training"]}
        for k in keys:
            v = np.array([r[k if k == "descent_share" else f"{k}_mean"] for r in rows], dtype=float)
            row[f"{k}_mean"] = float(np.mean(v)) if not np.isnan(v).all() else math.nan
            row[f"{k}_sd"] = float(np.std(v)) if not np.isnan(v).all() else math.nan
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (must be new or empty)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    parser.add_argument("--seconds", default="60,300", help="training budgets in wall-clock seconds, comma-separated")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lam", type=float, default=0.05, help="diffusion weight")
    parser.add_argument("--eval-pairs", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        budgets = [float(s) for s in args.seconds.split(",")]
    except ValueError:
        print(f"error: --seeds and --seconds take comma-separated numbers, found {args.seeds!r} / {args.seconds!r}",
              file=sys.stderr)
        return 2
    try:
        x_all, labels, splits = start_seed_run(args.out, args.threads)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # the data split and the classifier are fixed (split seed 0), so every run is scored the same way
    fives, sevens = splits["5"], splits["7"]
    held_out = np.concatenate([fives["train"], fives["eval"], sevens["eval"]])
    rng = np.random.default_rng(0)
    clf_idx = np.setdiff1d(np.arange(len(labels)), held_out)
    clf_idx = clf_idx[rng.permutation(len(clf_idx))]
    clf, clf_acc = train_classifier(x_all[clf_idx], torch.from_numpy(labels[clf_idx]), 600, 0)
    clf.eval()
    train = x_all[fives["train"]]
    mean_five = train.mean(0, keepdim=True)
    evals = {}
    for digit, idx in (("5", fives["eval"]), ("7", sevens["eval"])):
        a, b = random_pairs(len(idx), args.eval_pairs, rng)
        evals[digit] = (x_all[idx][a], x_all[idx][b])

    step_rows, runs = [], []
    for budget in budgets:
        for seed in seeds:
            inner, info = train_model(train, budget, seed, args)
            run = {"seed": seed, "seconds": budget, **{k: v for k, v in info.items() if k != "log"},
                   "training_log": info["log"]}
            for digit, (moving, fixed) in evals.items():
                res, maps = probe_digit(inner, clf, mean_five, moving, fixed, args.lam)
                for r in res.rows():
                    step_rows.append({"seed": seed, "seconds": budget, "train_steps": info["steps"], "digit": digit, **r})
                if seed == seeds[0] and budget == budgets[0]:
                    save_grid(args.out / f"grid_{digit}.png", moving, fixed, maps)
                last = res.rows()[STEPS]
                run[f"msd_{digit}"] = last["similarity_mean"]
            runs.append(run)
            print(f"seed {seed}, {budget:g} s: {info['steps']} steps ({info['steps_per_second']:.1f}/s); "
                  f"held-out fives MSD {run['msd_5']:.4f}, sevens {run['msd_7']:.4f}", flush=True)
    summary = summarise(step_rows)
    write_text_atomic(args.out / "steps.csv", rows_csv_text(step_rows))
    write_text_atomic(args.out / "summary.csv", rows_csv_text(summary))
    save_curves(args.out / "steps.png", summary, budgets)
    metrics = {
        "model_steps": STEPS, "unrolled_to": STEPS * UNROLL, "batch": args.batch, "lambda": args.lam, "lr": args.lr,
        "classifier_accuracy": clf_acc, "runs": runs,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    write_text_atomic(args.out / "metrics.json", json.dumps(metrics, indent=2))
    for budget in budgets:
        for digit in ("5", "7"):
            rows = [r for r in summary if r["seconds"] == budget and r["digit"] == digit]
            print(f"{budget:g} s, {digit}s (mean over {len(seeds)} seeds): step  MSE  cos(loss)  cos(five)  p5  p7")
            for r in rows:
                if r["step"] in (0, 1, 2, 3, 5, STEPS, 2 * STEPS, UNROLL * STEPS):
                    print(f"  {r['step']:>3} {r['similarity_mean']:.4f}±{r['similarity_sd']:.4f} "
                          f"{r['cos_loss_mean']:+.3f}±{r['cos_loss_sd']:.3f} "
                          f"{r['cos_to_mean_five_mean']:+.3f}±{r['cos_to_mean_five_sd']:.3f} "
                          f"{r['p_five_mean']:.3f} {r['p_seven_mean']:.3f}")
    print(f"classifier accuracy {clf_acc:.3f}; wrote {args.out}/steps.csv, summary.csv, steps.png, metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
