"""The training loop: ``train(config, data, out)`` reads top to bottom.

1. join the process group (torchrun) and pick the device;
2. read the manifest, check it against the config, load the pairs (MONAI CacheDataset)
   onto the network grid;
3. build the model and the objective (similarity + lam * regularizer [+ GradICON]);
4. start fresh (the run folder must be new or empty; the resolved config goes to
   ``RUN/config.yaml``) or resume from ``RUN/checkpoints/last``;
5. loop: a batch (deterministic in the seed and the step), forward under autocast
   (CUDA), backward (DDP averages gradients), optimiser step; log; validate and
   checkpoint every K steps on rank 0, keeping the best checkpoint.

Exact resume: weights, optimiser state, step and RNG states are saved; the data
order and the augmentation depend only on (seed, sample number); the learning
rate is a function of the step. 10 steps in one go equal 5 + resume + 5, bitwise on CPU.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medreg.config import RESUMABLE_KEYS, Config, changed_keys, load_config
from medreg.errors import ConfigError, InputError, MedregError
from medreg.io.atomic import write_text_atomic
from medreg.inference.register import model_global_stage
from medreg.io.checkpoint import existing_checkpoint_dir, load_trainer_state, save_checkpoint
from medreg.registration.build import build_model, required_multiple
from medreg.registration.objective import RegistrationObjective, objective_from_config
from medreg.training import distributed
from medreg.training.data import (LoadPaird, StepSampler, TrainPairs, check_manifest, collate_pairs, make_dataset,
                                  train_val_records)
from medreg.training.logs import RunLogger
from medreg.transforms.input_pipeline import InputPipeline
from medreg.training.motion import MotionThenGlobal, align_validation_item
from medreg.training.validation import validate


@dataclass
class TrainResult:
    out: Path
    step: int
    model: torch.nn.Module
    config: Config
    last_val: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] | None = None
    last_train: dict[str, float] = field(default_factory=dict)
    steps_per_s: float = 0.0
    seconds: float = 0.0


# --------------------------------------------------------------------------- small pieces
def lr_at(step: int, config: Config) -> float:
    """Learning rate for the step about to run (a pure function of the step: nothing to save)."""
    o, lr = config.optim, config.train.lr
    if o.warmup_steps and step < o.warmup_steps:
        return lr * (step + 1) / o.warmup_steps
    if o.schedule == "cosine":
        span = max(1, config.train.steps - o.warmup_steps)
        t = min(1.0, (step - o.warmup_steps) / span)
        return lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
    return lr


def make_optimizer(config: Config, params) -> torch.optim.Optimizer:
    o = config.optim
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=config.train.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


def make_objective(model: torch.nn.Module, config: Config) -> RegistrationObjective:
    return objective_from_config(model, config.loss)


def autocast_for(config: Config, device: torch.device):
    """A context-manager factory: bf16/fp16 autocast on CUDA when ``train.amp``, else nothing."""
    if device.type == "cuda" and config.train.amp:
        dtype = torch.bfloat16 if config.train.amp_dtype == "bfloat16" else torch.float16
        return lambda: torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _oom_error(err: BaseException, config: Config, device: torch.device) -> MedregError:
    return MedregError(
        f"out of memory on {device} ({str(err).splitlines()[0][:160]}); reduce train.batch_size "
        f"(now {config.train.batch_size}), model.unet_channels (now {config.model.unet_channels}), use a coarser "
        f"preprocess.spacing (now {config.preprocess.spacing}; e.g. --set 'preprocess.spacing=[2.0,2.0,2.0]'), "
        f"or turn off loss.gradicon (now {config.loss.gradicon})"
    )


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


# --------------------------------------------------------------------------- run folder
def resolve_run_config(out: Path, config: Config | None, resume: bool) -> Config:
    """The config to train with; on resume the saved one, with only harmless keys allowed to change."""
    saved_path = out / "config.yaml"
    if not resume:
        if config is None:
            raise ConfigError("no config given (pass --config FILE or --dataset NAME for its preset)")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(out, "expected a new or empty run folder, found existing files; pass --resume to "
                                  "continue that run or choose another --out")
        return config
    if not (out / "checkpoints").is_dir() or not (existing_checkpoint_dir(out / "checkpoints" / "last")).is_dir():
        raise InputError(out, "expected a run folder with checkpoints/last to resume from, found none")
    saved = load_config(saved_path)
    if config is None:
        return saved
    bad = [k for k in changed_keys(saved, config) if k not in RESUMABLE_KEYS]
    if bad:
        raise ConfigError(f"{saved_path}: a resumed run keeps its config; these keys differ: {bad} "
                          f"(only {list(RESUMABLE_KEYS)} may change on --resume)")
    return config


# --------------------------------------------------------------------------- the loop
def _load_init(model: torch.nn.Module, config: Config, init: str | Path, device: torch.device) -> dict:
    """Copy the weights of the model at ``init`` into ``model`` (the same ``model`` section, else ConfigError);
    return where they came from (file and sha256), which the run records in ``RUN/init.json``."""
    import hashlib

    from medreg.inference.bundle import load_bundle

    bundle = load_bundle(init, "cpu")
    # a multi-channel model may start a single-channel any-contrast one (data.contrasts): each image's input
    # weights are summed over its channels, i.e. the old network seeing the one image in every channel
    adapt = (bool(config.data.contrasts) and len(config.channels) == 1 and len(bundle.config.channels) > 1)
    if bundle.config.model != config.model or (bundle.config.channels != config.channels and not adapt):
        raise ConfigError(f"--init {init}: its model section {bundle.config.model.model_dump()} with channels "
                          f"{bundle.config.channels} differs from this config's {config.model.model_dump()} with "
                          f"channels {config.channels}; fine-tune with the same model section")
    state = bundle.model.state_dict()
    if adapt:
        state = adapt_input_channels(state, model.state_dict(), len(bundle.config.channels))
    model.load_state_dict(state, strict=True)
    model.to(device)
    path = Path(bundle.path).resolve()
    origin = {"init": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    if adapt:
        origin["adapted"] = (f"input weights of channels {bundle.config.channels} summed per image into the one "
                             f"channel {config.channels[0]}")
    return origin


def adapt_input_channels(state: dict, target: dict, channels: int) -> dict:
    """``state`` of a ``channels``-channel model made to fit ``target`` (one channel): every tensor whose
    second axis holds ``2 * channels`` inputs (moving then fixed, each ``channels`` wide) is summed per image."""
    out = {}
    for key, value in state.items():
        want = target[key].shape
        if value.shape != want:
            if value.ndim < 2 or value.shape[1] != 2 * channels or want[1] != 2 or value.shape[2:] != want[2:]:
                raise ConfigError(f"--init: cannot adapt {key} from shape {tuple(value.shape)} to {tuple(want)}")
            value = value.reshape(value.shape[0], 2, channels, *value.shape[2:]).sum(2)
        out[key] = value
    return out


def train(config: Config | None, data: str | Path, out: str | Path, *, device: str = "auto", resume: bool = False,
          max_steps: int | None = None, progress: bool = True, tensorboard: bool = True,
          init: str | Path | None = None) -> TrainResult:
    """Train a registration model on the manifest in ``data``; write logs and checkpoints to ``out``."""
    from medreg.datasets.manifest import read_manifest

    out = Path(out)
    ctx = distributed.setup(device)
    try:
        # -- config and data ------------------------------------------------------
        config = resolve_run_config(out, config, resume)
        manifest_path = Path(data) / "manifest.json" if Path(data).is_dir() else Path(data)
        manifest = read_manifest(manifest_path, dataset=config.data.dataset)
        check_manifest(manifest, manifest_path, config)
        distributed.barrier(ctx)  # every rank has checked the run folder before rank 0 writes into it
        t = config.train
        # validation pairs drawn from the training split are held out before the training set is built
        train_records, val_records = train_val_records(manifest, manifest_path, config.data, config.channels)
        data_preprocess = manifest.config.model_dump_json()
        pipeline = InputPipeline.for_model(config, manifest.config).to_json()  # what a new pair must go through
        multiple = required_multiple(config.model)
        hint = f"levels={config.model.levels}, unet_channels={config.model.unet_channels}"
        loader_fn = LoadPaird(config.channels, config.preprocess, multiple, hint)
        synth = None
        if t.augmentation.enabled and t.augmentation.synth.prob > 0:  # the training pairs also carry their labels
            from medreg.training.label_synth import LabelSynth

            synth = LabelSynth(t.augmentation.synth)
        train_loader = LoadPaird(config.channels, config.preprocess, multiple, hint, labels=synth is not None)
        train_set = make_dataset(train_records, train_loader, config.data.cache)
        has_val = bool(val_records)  # the same on every rank; only rank 0 loads and runs validation
        if config.data.val_split is not None and not has_val and ctx.is_main:
            print(f"medreg train: warning: no pairs of split {config.data.val_split!r} (data.val_split) in "
                  f"{manifest_path}; training without validation or best checkpoint", file=sys.stderr)
        global_stage = model_global_stage(config)
        val_items = [align_validation_item(loader_fn(r), global_stage) for r in val_records] if ctx.is_main else []
        augment = prealign = None
        if t.augmentation.enabled:
            from medreg.training.augment import PairAugmenter

            augment = PairAugmenter(t.augmentation)
        if (t.augmentation.enabled and t.augmentation.motion.enabled) or global_stage.enabled:
            motion = t.augmentation.motion if t.augmentation.enabled else t.augmentation.motion.model_copy(
                update={"enabled": False})
            prealign = MotionThenGlobal(motion, global_stage.mode, similarity=global_stage.similarity)

        # -- model, objective, optimiser -----------------------------------------
        torch.manual_seed(t.seed)
        model = build_model(config.model, len(config.channels)).to(ctx.device)
        objective = make_objective(model, config)
        optimizer = make_optimizer(config, model.parameters())
        scaler = torch.amp.GradScaler("cuda", enabled=ctx.device.type == "cuda" and t.amp and t.amp_dtype == "float16")
        step, best = 0, None
        if resume:
            from safetensors.torch import load_model as st_load

            last = existing_checkpoint_dir(out / "checkpoints" / "last")
            state = load_trainer_state(last)
            st_load(model, str(last / "model.safetensors"), strict=True, device=str(ctx.device))
            optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            step, best = int(state["step"]), state.get("best")
        else:
            origin = _load_init(model, config, init, ctx.device) if init is not None else None
            if ctx.is_main:
                out.mkdir(parents=True, exist_ok=True)
                write_text_atomic(out / "config.yaml", config.to_yaml())
                if origin is not None:
                    import json

                    write_text_atomic(out / "init.json", json.dumps(origin, indent=1))
        if resume and ctx.is_main:
            write_text_atomic(out / "config.yaml", config.to_yaml(), overwrite=True)
        stop = t.steps if max_steps is None else int(max_steps)
        runner: torch.nn.Module = objective
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            runner = DDP(objective, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        distributed.barrier(ctx)

        sampler = StepSampler(len(train_set), t.batch_size, t.seed, step, stop, ctx.rank, ctx.world)
        loader = torch.utils.data.DataLoader(
            TrainPairs(train_set, augment, prealign, synth), batch_size=t.batch_size, sampler=sampler,
            num_workers=t.workers,
            collate_fn=collate_pairs, pin_memory=ctx.device.type == "cuda",
            generator=torch.Generator().manual_seed(t.seed),
        )
        autocast = autocast_for(config, ctx.device)
        logger = RunLogger(out, enabled=ctx.is_main, resume_step=step, tensorboard=tensorboard)
        from tqdm.auto import tqdm

        bar = tqdm(total=stop, initial=step, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr,
                   disable=not (progress and ctx.is_main))
        result = TrainResult(out=out, step=step, model=model, config=config, best=best)
        ckpt_every = t.ckpt_every or t.val_every
        n_val = 0
        start, window_start, window_step = time.perf_counter(), time.perf_counter(), step
        objective.train()

        def save(kind: str, metrics: dict[str, float] | None = None) -> None:
            if kind == "last":
                state = {"step": step, "optimizer": optimizer.state_dict(), "rng": rng_state(),
                         "scaler": scaler.state_dict() if scaler.is_enabled() else None, "best": result.best,
                         "config_hash": config.config_hash()}
                save_checkpoint(out / "checkpoints" / "last", model, config.to_json(), step=step, trainer_state=state,
                                data_preprocess_json=data_preprocess, input_pipeline_json=pipeline)
            else:
                save_checkpoint(out / "checkpoints" / "best", model, config.to_json(), step=step, metrics=metrics,
                                data_preprocess_json=data_preprocess, input_pipeline_json=pipeline)

        # -- loop -------------------------------------------------------------------
        for batch in loader:
            lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            fixed = batch["fixed"].to(ctx.device, non_blocking=True)
            moving = batch["moving"].to(ctx.device, non_blocking=True)
            try:
                with autocast():
                    res = runner(moving, fixed)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(res.total).backward()
                if config.optim.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
            except (RuntimeError, torch.OutOfMemoryError) as err:
                if _is_oom(err):
                    raise _oom_error(err, config, ctx.device) from None
                raise
            step += 1
            bar.update(1)

            if step % t.log_every == 0 or step == stop:
                scalars = res.scalars()
                if not math.isfinite(scalars["total"]):
                    raise MedregError(f"the loss became {scalars['total']} at step {step}; lower train.lr "
                                      f"(now {t.lr}) or set optim.grad_clip")
                now = time.perf_counter()
                sps = (step - window_step) / max(now - window_start, 1e-9)
                window_start, window_step = now, step
                result.last_train, result.steps_per_s = scalars, sps
                logger.log(step, "train", {**scalars, "lr": lr, "steps_per_s": sps, "seconds": now - start})
                post = {"loss": f"{scalars['total']:.4f}", "sim": f"{scalars['similarity']:.4f}",
                        "reg": f"{scalars['regularity']:.3g}", "fold": f"{scalars['folding_fraction']:.2g}"}
                if result.last_val.get("tre_mm") is not None:
                    post["val_tre"] = f"{result.last_val['tre_mm']:.2f}mm"
                bar.set_postfix(post, refresh=False)
            del res

            is_val = has_val and (step % t.val_every == 0 or step == stop)
            if ctx.is_main and is_val:
                n_val += 1
                want_panel = t.image_every > 0 and (n_val - 1) % t.image_every == 0
                metrics, image = validate(objective, val_items, ctx.device, autocast, want_panel)
                result.last_val = metrics
                logger.log(step, "val", {**metrics, "seconds": time.perf_counter() - start})
                logger.image(step, "val/fixed_moving_warped_diff_grid", image)
                key = "tre_mm" if "tre_mm" in metrics else "total"
                if result.best is None or metrics[key] < result.best[key]:
                    result.best = {"step": step, **metrics}
                    save("best", result.best)
            if ctx.is_main and (step % ckpt_every == 0 or step == stop):
                save("last")
            if step % ckpt_every == 0 or step == stop or is_val:
                distributed.barrier(ctx)
        bar.close()
        logger.close()
        result.step = step
        result.seconds = time.perf_counter() - start
        return result
    finally:
        distributed.teardown(ctx)
