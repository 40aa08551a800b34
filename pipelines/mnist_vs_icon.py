"""The seed's MNIST training in medreg and in icon_registration, side by side in one sitting.

    pip install --no-deps icon_registration==1.1.9     # once, into the same environment
    python pipelines/mnist_vs_icon.py --seconds 60 --rounds 2 --out runs/mnist-vs-icon

Both train the same model (shared/REFERENCE.md §6: a 2x28x28 -> 50 -> 50 -> 2x28x28
fully connected network, zero last layer, nine applications as eight nested two-step
stages, squared difference + 0.05 * diffusion, Adam 1e-3, batch 128) on the same
training fives, drawn in the same order, for the same wall-clock budget, on the same
threads, in turns (icon, medreg, icon, medreg, ...), so that the machine's drift hits
both alike. icon_registration's loop is its plain ``net(moving, fixed).all_loss.backward()``;
each framework keeps its own loss scaling (icon doubles the similarity and averages its
diffusion term over channels). After each budget, both are scored the same way: the mean
squared difference between the warped moving and the fixed digit on 500 held-out pairs of
fives (and of sevens), each framework warping with its own transform.

Prints a row per run and the per-round ratio of steps per second; writes ``results.json``.
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
import torch.nn as nn

from medreg.datasets.mnist import start_seed_run
from medreg.errors import InputError
from medreg.io.atomic import write_text_atomic
from medreg.networks import FCNet
from medreg.registration import FromVectorField, RegistrationObjective, stack_two_step
from medreg.spatial import warp

APPLICATIONS = 9
BATCH = 128


def _pairs(n: int, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = rng.integers(0, n, count)
    return a, (a + rng.integers(1, n, count)) % n


class _IconFC(nn.Module):
    """The seed's network in icon_registration's ``net(image_A, image_B)`` signature."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(2 * 784, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU(),
                                    nn.Linear(50, 2 * 784))
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, a, b):
        return self.layers(torch.cat([a, b], 1).flatten(1)).view(-1, 2, 28, 28)


class IconRunner:
    name = "icon_registration"

    def __init__(self, lam: float):
        import icon_registration as icon

        inner = icon.FunctionFromVectorField(_IconFC())
        net = inner
        for _ in range(APPLICATIONS - 1):
            net = icon.TwoStepRegistration(net, inner)
        self.model = icon.losses.DiffusionRegularizedNet(net, icon.SSD(), lmbda=lam)
        self.model.assign_identity_map([BATCH, 1, 28, 28])
        self.params = inner.parameters()
        self.inner = inner

    def loss(self, moving, fixed):
        return self.model(moving, fixed).all_loss

    def warped(self, moving, fixed):
        with torch.no_grad():
            out = []
            for i in range(0, len(moving), BATCH):  # icon's identity map has the training batch size
                m, f = moving[i:i + BATCH], fixed[i:i + BATCH]
                n = len(m)
                if n < BATCH:
                    m = torch.cat([m, m[:1].expand(BATCH - n, -1, -1, -1)])
                    f = torch.cat([f, f[:1].expand(BATCH - n, -1, -1, -1)])
                self.model(m, f)
                out.append(self.model.warped_image_A[:n])
            return torch.cat(out)


class MedregRunner:
    name = "medreg"

    def __init__(self, lam: float, compose: str = "dense"):
        self.inner = FromVectorField(FCNet((28, 28), in_channels=2, hidden=50))
        self.model = stack_two_step(self.inner, APPLICATIONS, compose=compose)
        self.objective = RegistrationObjective(self.model, "ssd", "diffusion", lam=lam)
        self.params = self.inner.parameters()
        if compose != "dense":
            self.name = f"medreg ({compose})"

    def loss(self, moving, fixed):
        return self.objective(moving, fixed).total

    def warped(self, moving, fixed):
        with torch.no_grad():
            return warp(moving, self.model(moving, fixed), fixed.shape[2:])


def train_for(runner, train: torch.Tensor, seconds: float, lr: float, seed: int) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(runner.params, lr=lr)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a, b = _pairs(len(train), BATCH, rng)
        loss = runner.loss(train[a], train[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    elapsed = time.perf_counter() - t0
    return {"steps": steps, "seconds": elapsed, "steps_per_second": steps / elapsed}


def msd(runner, moving, fixed) -> float:
    return float((runner.warped(moving, fixed) - fixed).pow(2).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (must be new or empty)")
    parser.add_argument("--seconds", type=float, default=60.0, help="training budget of each run")
    parser.add_argument("--rounds", type=int, default=2, help="turns of (icon, medreg)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lam", type=float, default=0.05)
    parser.add_argument("--lazy", action="store_true", help="also run medreg with lazy (exact) composition")
    args = parser.parse_args(argv)
    try:
        import icon_registration  # noqa: F401
    except ImportError:
        print("error: icon_registration is not installed; run: pip install --no-deps icon_registration==1.1.9",
              file=sys.stderr)
        return 2
    try:
        x, labels, splits = start_seed_run(args.out, args.threads)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    fives, sevens = splits["5"], splits["7"]
    train = x[fives["train"]]
    rng = np.random.default_rng(1234)
    evals = {}
    for digit, idx in (("5", fives["eval"]), ("7", sevens["eval"])):
        a, b = _pairs(len(idx), 500, rng)
        evals[digit] = (x[idx][a], x[idx][b])

    makers = [lambda: IconRunner(args.lam), lambda: MedregRunner(args.lam)]
    if args.lazy:
        makers.append(lambda: MedregRunner(args.lam, compose="lazy"))
    rows = []
    print(f"{'round':>5} {'framework':<20} {'steps':>6} {'steps/s':>8} {'fives MSD':>10} {'sevens MSD':>11}")
    for r in range(args.rounds):
        for make in makers:
            torch.manual_seed(r)
            runner = make()
            before = {d: float((m - f).pow(2).mean()) for d, (m, f) in evals.items()}
            row = {"round": r, "framework": runner.name, **train_for(runner, train, args.seconds, args.lr, seed=r)}
            row.update({f"msd_{d}": msd(runner, m, f) for d, (m, f) in evals.items()})
            row.update({f"msd_{d}_before": v for d, v in before.items()})
            rows.append(row)
            print(f"{r:>5} {row['framework']:<20} {row['steps']:>6} {row['steps_per_second']:>8.2f} "
                  f"{row['msd_5']:>10.4f} {row['msd_7']:>11.4f}", flush=True)
    ratios = []
    for r in range(args.rounds):
        by = {row["framework"]: row for row in rows if row["round"] == r}
        ratios.append(by["medreg"]["steps_per_second"] / by["icon_registration"]["steps_per_second"])
    print("medreg / icon_registration steps per second, per round: " + ", ".join(f"{q:.2f}x" for q in ratios))
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "icon_registration": __import__("icon_registration").__version__
               if hasattr(__import__("icon_registration"), "__version__") else "1.1.9"}
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    write_text_atomic(args.out / "results.json", json.dumps({"rows": rows, "ratios": ratios, "machine": machine,
                                                              "seconds": args.seconds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
