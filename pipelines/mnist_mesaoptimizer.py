"""The seed experiment: an MLP applied nine times as a multistep registration of MNIST fives.

    python pipelines/mnist_mesaoptimizer.py --out runs/mnist

Trains FCNet inside FromVectorField, stacked as eight TwoStep stages that reuse the
same inner network (nine applications), with SSD + 0.05 * diffusion on pairs of
fives. Then, for held-out fives and for sevens (never seen in training), it
records after every step the similarity to the fixed image and how much the
warped moving image looks like a five: p(5) under a digit classifier trained on
a disjoint part of the same file, and the distance to the mean training five.
Writes metrics.json, steps.png (the curves) and grid_5.png / grid_7.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medreg.datasets.mnist import load_mnist, split_indices
from medreg.io.atomic import write_text_atomic
from medreg.losses import ssd_loss
from medreg.networks import FCNet
from medreg.networks.classifier import DigitClassifier
from medreg.registration import FromVectorField, RegistrationObjective, multistep_steps, stack_two_step
from medreg.spatial import folding_fraction, identity_grid, jacobian_determinant, warp

STEPS = 9  # eight TwoStep stages around one inner network


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


def evaluate(inner, clf, mean_five, moving, fixed) -> dict:
    with torch.no_grad():
        grid = identity_grid(fixed.shape[2:])
        steps = multistep_steps(inner, moving, fixed, STEPS)
        warped = [moving] + [warp(moving, phi) for phi in steps]
        sim = [ssd_loss(w, fixed).item() for w in warped]
        probs = [torch.softmax(clf(w), 1) for w in warped]
        p5 = [p[:, 5].mean().item() for p in probs]
        p7 = [p[:, 7].mean().item() for p in probs]
        frac5 = [(p.argmax(1) == 5).float().mean().item() for p in probs]
        dist5 = [(w - mean_five).pow(2).flatten(1).mean(1).mean().item() for w in warped]
        fold = folding_fraction(jacobian_determinant(steps[-1](grid))).mean().item()
    return {
        "pairs": int(moving.shape[0]),
        "similarity_before": sim[0],
        "similarity_after": sim[-1],
        "folding_fraction": fold,
        "per_step": {
            "step": list(range(STEPS + 1)),
            "similarity": sim,
            "p_five": p5,
            "p_seven": p7,
            "classified_as_five": frac5,
            "mse_to_mean_five": dist5,
        },
        "_warped": warped,
    }


def save_grid(path: Path, moving, fixed, warped, rows: int = 6) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [moving] + warped[1:] + [fixed]
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


def save_curves(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for digit, res in results.items():
        ps = res["per_step"]
        axes[0].plot(ps["step"], ps["similarity"], marker="o", label=f"{digit}s")
        axes[1].plot(ps["step"], ps["p_five"], marker="o", label=f"{digit}s")
        axes[2].plot(ps["step"], ps["mse_to_mean_five"], marker="o", label=f"{digit}s")
    for ax, title in zip(axes, ["MSE warped vs fixed", "p(5) of warped moving", "MSE warped vs mean five"]):
        ax.set_title(title)
        ax.set_xlabel("step (0 = before)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (must be new or empty)")
    parser.add_argument("--steps", type=int, default=400, help="training steps")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lam", type=float, default=0.05, help="diffusion weight")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-pairs", type=int, default=500)
    args = parser.parse_args(argv)

    if args.out.exists() and any(args.out.iterdir()):
        print(f"error: {args.out} already holds files; choose a new --out", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    images, labels = load_mnist()
    x_all = torch.from_numpy(images).unsqueeze(1)
    fives = split_indices(labels, {"train": 0.5, "classifier": 0.3, "eval": 0.2}, 5, args.seed)
    sevens = split_indices(labels, {"classifier": 0.5, "eval": 0.5}, 7, args.seed)
    held_out = np.concatenate([fives["train"], fives["eval"], sevens["eval"]])
    clf_idx = np.setdiff1d(np.arange(len(labels)), held_out)
    clf_idx = clf_idx[rng.permutation(len(clf_idx))]
    clf, clf_acc = train_classifier(x_all[clf_idx], torch.from_numpy(labels[clf_idx]), 600, args.seed)
    clf.eval()

    train = x_all[fives["train"]]
    mean_five = train.mean(0, keepdim=True)
    inner = FromVectorField(FCNet((28, 28), in_channels=2, hidden=50))
    model = stack_two_step(inner, STEPS)
    objective = RegistrationObjective(model, "ssd", "diffusion", lam=args.lam)
    opt = torch.optim.Adam(inner.parameters(), lr=args.lr)

    losses = []
    t0 = time.perf_counter()
    for step in range(args.steps):
        a, b = random_pairs(len(train), args.batch, rng)
        res = objective(train[a], train[b])
        opt.zero_grad(set_to_none=True)
        res.total.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            losses.append({"step": step, **res.scalars()})
    train_seconds = time.perf_counter() - t0

    results = {}
    for digit, idx in (("5", fives["eval"]), ("7", sevens["eval"])):
        x = x_all[idx]
        a, b = random_pairs(len(x), args.eval_pairs, rng)
        res = evaluate(inner, clf, mean_five, x[a], x[b])
        save_grid(args.out / f"grid_{digit}.png", x[a], x[b], res.pop("_warped"))
        results[digit] = res
    save_curves(args.out / "steps.png", results)

    metrics = {
        "train_seconds": train_seconds,
        "steps": args.steps,
        "steps_per_second": args.steps / train_seconds,
        "batch": args.batch,
        "lambda": args.lam,
        "model_steps": STEPS,
        "classifier_accuracy": clf_acc,
        "training_log": losses,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        **results,
    }
    write_text_atomic(args.out / "metrics.json", json.dumps(metrics, indent=2))
    for digit in ("5", "7"):
        r = results[digit]
        ps = r["per_step"]
        print(f"{digit}s: MSE {r['similarity_before']:.4f} -> {r['similarity_after']:.4f}, "
              f"folding {100 * r['folding_fraction']:.2f} %, p(5) per step "
              + " ".join(f"{p:.2f}" for p in ps["p_five"]))
    print(f"trained {args.steps} steps in {train_seconds:.1f} s ({args.steps / train_seconds:.1f} steps/s); "
          f"classifier accuracy {clf_acc:.3f}; wrote {args.out}/metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
