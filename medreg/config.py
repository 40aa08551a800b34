"""The training configuration: YAML files loaded into a typed, strict object.

A config has six sections (every key documented on its model below)::

    data:        dataset name, splits, how many validation pairs
    preprocess:  a ``medreg.transforms.config.PreprocessConfig`` (the network's input grid)
    model:       multistep UNet built by ``medreg.registration.build.build_model``
    loss:        similarity (LNCC window) + lam * regularizer (+ GradICON weight)
    optim:       optimiser, schedule, gradient clipping
    train:       steps, batch size, learning rate, AMP, validation/checkpoint periods, seed, workers, augmentation

Files may start with ``defaults: [other.yaml, ...]`` (paths relative to the file):
those are loaded first and deep-merged, the file's own keys winning. Command-line
overrides ``key.sub=value`` (``--set train.lr=1e-4``) are applied last; values are
parsed as YAML scalars/lists. Unknown keys and wrong types raise
:class:`~medreg.errors.ConfigError` naming the key and the file (or override) that
set it. YAML is read with a safe loader: nothing in a config is ever evaluated.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medreg.datasets.names import DATASETS  # noqa: F401 - re-exported
from medreg.datasets.specs import dataset_names, get_spec, is_registered
from medreg.errors import ConfigError
from medreg.presets import config_dir
from medreg.transforms.config import PreprocessConfig

_STRICT = ConfigDict(extra="forbid", strict=True)
CONFIG_DIR = config_dir()  # the shipped presets, medreg/configs/ (package data)
# keys that may change when a run is resumed (they do not change the result of a step)
RESUMABLE_KEYS = ("train.steps", "train.val_every", "train.ckpt_every", "train.log_every", "train.workers",
                  "train.image_every", "data.val_pairs")


class DataConfig(BaseModel):
    """Which manifest pairs are used. Channels are ``preprocess.modalities``."""

    model_config = _STRICT
    dataset: str
    train_split: str = "train"
    val_split: str | None = "test"        # held-out pairs for validation (None: no validation)
    val_pairs: int | None = Field(4, ge=1)  # at most this many validation pairs (None: all)
    cache: bool = True                     # MONAI CacheDataset: keep the network-grid images in memory
    # A single-channel model for any of these contrasts: every pair is used once per contrast, fixed and
    # moving in the same one, fed to the model's one channel (preprocess.modalities, e.g. [t1]). Empty: off.
    contrasts: list[str] = Field(default_factory=list)

    @field_validator("dataset")
    @classmethod
    def _known(cls, value: str) -> str:
        if not is_registered(value):
            raise ValueError(f"expected one of {list(dataset_names())}, found {value!r}")
        return value


class ModelConfig(BaseModel):
    """Multistep model: ``levels`` resolutions, each one UNet step (see ``medreg.registration.build``)."""

    model_config = _STRICT
    levels: int = Field(3, ge=1, le=5)          # 3: TwoStep(Downsample(TwoStep(Downsample(a), b)), c)
    share_weights: bool = False                 # one UNet reused at every level (else one per level)
    field: Literal["displacement", "velocity"] = "displacement"
    velocity_steps: int = Field(7, ge=1, le=12)  # scaling and squaring steps (field: velocity)
    unet_channels: list[int] = Field(default_factory=lambda: [16, 32, 32, 64], min_length=1, max_length=7)
    affine: bool = False                        # an affine network step before the deformable steps
    affine_channels: list[int] = Field(default_factory=lambda: [16, 32, 64, 64], min_length=1)

    @field_validator("unet_channels", "affine_channels")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(c < 1 for c in value):
            raise ValueError(f"expected positive channel counts, found {value}")
        return value


class LossConfig(BaseModel):
    """``similarity(warped, fixed) + lam * regularizer(displacement) [+ gradicon * GradICON]``."""

    model_config = _STRICT
    similarity: Literal["lncc", "ncc", "ssd"] = "lncc"
    window: int = Field(5, ge=1)        # LNCC window in voxels (odd)
    regularizer: Literal["diffusion", "bending"] = "diffusion"
    lam: float = Field(1.0, ge=0)
    gradicon: float = Field(0.0, ge=0)  # > 0 adds the GradICON penalty (doubles the cost of a step)

    @field_validator("window")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 != 1:
            raise ValueError(f"expected an odd window, found {value}")
        return value


class OptimConfig(BaseModel):
    """Optimiser and learning-rate schedule (the rate itself is ``train.lr``)."""

    model_config = _STRICT
    name: Literal["adam", "adamw"] = "adam"
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)  # cosine decays to lr * min_lr_ratio at train.steps
    grad_clip: float | None = Field(None, gt=0)


class MotionConfig(BaseModel):
    """A random rigid/affine world motion of the moving image, one per sample (``medreg.training.motion``).

    The global stage (``global_stage.mode``) then aligns the pair before the network, so the
    deformable steps train on what they see at test time: the residual after the global stage.
    """

    model_config = _STRICT
    enabled: bool = False
    translate_mm: float = Field(20.0, ge=0)     # +- mm per axis
    rotate_deg: float = Field(20.0, ge=0, le=90)  # +- degrees about a random axis
    scale: float = Field(0.10, ge=0, lt=1)      # +- relative scale per axis
    shear: float = Field(0.03, ge=0, lt=1)      # +- off-diagonal terms of the linear part


class ContrastAugConfig(BaseModel):
    """A random intensity curve applied to fixed and moving alike (``medreg.training.augment``): images of
    contrasts no scanner made, so the network learns the structure rather than one contrast's intensities."""

    model_config = _STRICT
    prob: float = Field(0.0, ge=0, le=1)  # probability per sample (0: off)
    nodes: int = Field(6, ge=2, le=32)    # knots of the random piecewise-linear curve on [0, 1]
    gamma: float = Field(0.4, ge=0, lt=1)  # then x ** exp(U(-gamma, gamma))


class SynthAugConfig(BaseModel):
    """Images made from the pair's label maps alone (``medreg.training.label_synth``, as SynthMorph does): a random
    intensity per class and channel (the same in fixed and moving), noise inside the head, blur, bias and gamma.
    Needs label maps in the manifest (demo-brain has them); a pair without them raises an error naming it."""

    model_config = _STRICT
    prob: float = Field(0.0, ge=0, le=1)    # probability per sample (0: off)
    noise: float = Field(0.08, ge=0)        # sd of the noise ~ U(0, noise), [0, 1] intensity units, before the blur
    blur: float = Field(1.0, ge=0)          # Gaussian sigma ~ U(0, blur), voxels of the network grid
    bias: float = Field(0.3, ge=0)          # sd of the log bias field's 4x4x4 nodes
    gamma: float = Field(0.4, ge=0, lt=1)   # then x ** exp(U(-gamma, gamma)) per channel


class AugmentConfig(BaseModel):
    """Random augmentation (MONAI), drawn independently for fixed and moving, deterministic given the seed."""

    model_config = _STRICT
    enabled: bool = True
    prob: float = Field(0.8, ge=0, le=1)        # probability of the random affine per image
    rotate_deg: float = Field(3.0, ge=0)        # +- degrees about each axis
    scale: float = Field(0.03, ge=0, lt=1)      # +- relative scale per axis
    translate: float = Field(2.0, ge=0)         # +- voxels per axis (network grid)
    intensity_shift: float = Field(0.05, ge=0)  # +- added to the [0, 1] intensities
    intensity_scale: float = Field(0.05, ge=0)  # +- relative intensity scale
    motion: MotionConfig = Field(default_factory=MotionConfig)
    contrast: ContrastAugConfig = Field(default_factory=ContrastAugConfig)
    synth: SynthAugConfig = Field(default_factory=SynthAugConfig)


class GlobalStageConfig(BaseModel):
    """The global stage before the network (``medreg.inference.global_stage``): in training (before every training
    and validation pair) and, for the trained model, the default of ``--global`` in register and evaluate."""

    model_config = _STRICT
    mode: Literal["none", "rigid", "affine"] = "none"
    similarity: Literal["ncc", "mi"] = "ncc"   # mi (mutual information) when fixed and moving differ in contrast


class TrainSection(BaseModel):
    """The loop: how long, how big, how often."""

    model_config = _STRICT
    steps: int = Field(2000, ge=1)              # schedule horizon and default stop (--max-steps stops earlier)
    batch_size: int = Field(1, ge=1)            # per process
    lr: float = Field(1e-4, gt=0)
    amp: bool = True                            # mixed precision on CUDA (ignored on CPU)
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    val_every: int = Field(100, ge=1)
    ckpt_every: int | None = Field(None, ge=1)  # None: at every validation
    log_every: int = Field(10, ge=1)
    image_every: int = Field(1, ge=0)           # TensorBoard image panel every N validations (0: never)
    seed: int = Field(0, ge=0)
    workers: int = Field(0, ge=0)               # DataLoader worker processes
    augmentation: AugmentConfig = Field(default_factory=AugmentConfig)


class Config(BaseModel):
    """A complete, resolved training configuration (what ``RUN/config.yaml`` and checkpoints hold)."""

    model_config = _STRICT
    data: DataConfig
    preprocess: PreprocessConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    global_stage: GlobalStageConfig = Field(default_factory=GlobalStageConfig)

    @model_validator(mode="after")
    def _shape_multiple(self) -> "Config":
        from medreg.registration.build import required_multiple

        need = required_multiple(self.model)
        if self.preprocess.shape_multiple % need:
            raise ValueError(
                f"preprocess.shape_multiple={self.preprocess.shape_multiple} must be a multiple of {need}, the "
                f"divisibility the model needs (2 ** (model.levels - 1) * 2 ** (len(model.unet_channels) - 1) with "
                f"levels={self.model.levels}, unet_channels={self.model.unet_channels}); set "
                f"preprocess.shape_multiple to {need} (or a multiple) or use fewer levels/channels"
            )
        return self

    @model_validator(mode="after")
    def _contrasts(self) -> "Config":
        if self.data.contrasts:
            mods = list(self.preprocess.modalities)
            if len(mods) != 1:
                raise ValueError(f"data.contrasts={self.data.contrasts} makes a single-channel model, but "
                                 f"preprocess.modalities={mods} has {len(mods)} channels; set preprocess.modalities "
                                 f"to one of the contrasts (e.g. [{self.data.contrasts[0]}])")
            if len(set(self.data.contrasts)) != len(self.data.contrasts):
                raise ValueError(f"data.contrasts={self.data.contrasts} names a contrast twice")
        return self

    @property
    def channels(self) -> list[str]:
        """Image channels (modalities) the model takes, in order."""
        return list(self.preprocess.modalities)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def config_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                 |\.[0-9_]+(?:[eE][-+][0-9]+)?
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: expected valid YAML, found a parse error: {err}") from None


def _read_yaml(path: Path, source: str) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"{source}: expected a config file (YAML), found no such file")
    if path.is_dir():
        raise ConfigError(f"{source}: expected a config file (YAML), found a directory")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: expected a YAML text file, found binary data") from None
    data = parse_yaml(text, source)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of config sections, found {type(data).__name__}")
    return data


def _merge(base: dict, update: dict, origins: dict[tuple, str], source: str, prefix: tuple = ()) -> dict:
    """Deep-merge ``update`` into ``base`` (in place); record which source set each key."""
    for key, value in update.items():
        path = prefix + (key,)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, origins, source, path)
        else:
            base[key] = _copy(value)
            for sub in [k for k in origins if k[: len(path)] == path]:
                del origins[sub]
            _record(value, origins, source, path)
    return base


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _record(value: Any, origins: dict[tuple, str], source: str, path: tuple) -> None:
    origins[path] = source
    if isinstance(value, dict):
        for k, v in value.items():
            _record(v, origins, source, path + (k,))


def _load_tree(path: Path, origins: dict[tuple, str], stack: tuple[Path, ...] = ()) -> dict:
    path = Path(path)
    real = path.resolve()
    if real in stack:
        chain = " -> ".join(str(p) for p in (*stack, real))
        raise ConfigError(f"{path}: 'defaults' include cycle: {chain}")
    data = _read_yaml(path, str(path))
    includes = data.pop("defaults", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{path}: key 'defaults': expected a list of YAML file names, found {includes!r}")
    merged: dict = {}
    for inc in includes:
        inc_path = Path(inc) if Path(inc).is_absolute() else path.parent / inc
        inc_origins: dict[tuple, str] = {}
        _merge(merged, _load_tree(inc_path, inc_origins, (*stack, real)), {}, str(inc_path))
        origins.update(inc_origins)  # keys keep the file that set them (nested includes too)
    own_origins: dict[tuple, str] = {}
    _merge(merged, data, own_origins, str(path))
    origins.update(own_origins)
    return merged


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE (e.g. train.lr=1e-4)")
    key, _, raw = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"override {item!r}: expected a dotted key such as train.lr, found {key!r}")
    return parts, parse_yaml(raw, f"override {item!r}") if raw.strip() else None


def apply_overrides(data: dict, overrides: list[str], origins: dict[tuple, str] | None = None) -> dict:
    """Set ``key.sub=value`` items in a nested dict (in place)."""
    origins = {} if origins is None else origins
    for item in overrides:
        parts, value = _parse_override(item)
        node = data
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"override {item!r}: key '{where}' is a value, not a section")
            node = nxt
        _merge(node, {parts[-1]: value}, origins, f"override --set {item}", tuple(parts[:-1]))
    return data


def _origin(loc: tuple, origins: dict[tuple, str], default: str) -> str:
    for n in range(len(loc), 0, -1):
        if tuple(loc[:n]) in origins:
            return origins[tuple(loc[:n])]
    return default


def validate_config(data: Any, source: str = "<config>", origins: dict[tuple, str] | None = None) -> Config:
    """A plain mapping -> :class:`Config`; ConfigError names each bad key and the file that set it."""
    origins = origins or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of config sections, found {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        parts = []
        for item in err.errors():
            loc = tuple(str(p) for p in item["loc"] if not (isinstance(p, str) and p in ("mri_percentile", "ct_window")))
            key = ".".join(loc) or "<top level>"
            found = "" if item["type"] == "missing" else f" (found {item.get('input')!r})"
            msg = item["msg"]
            named = re.match(r"^Value error, ([a-z_]+(?:\.[a-z_]+)+)=", msg)
            if not loc and named:  # a check across sections names its key in the message
                key, loc, found = named.group(1), tuple(named.group(1).split(".")), ""
            msg = msg.removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                msg = "unknown key"
            parts.append(f"{_origin(loc, origins, source)}: key '{key}': {msg}{found}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(parts)) from None


def preset_path(dataset: str) -> Path:
    """The training preset of a dataset name (``medreg/configs/<dataset>.yaml`` for the shipped ones).

    ConfigError for an unknown name or a half-registered dataset (see :mod:`medreg.datasets.specs`).
    """
    return get_spec(dataset).train_preset_path()


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (with its ``defaults`` includes), apply ``overrides``, validate."""
    origins: dict[tuple, str] = {}
    data = _load_tree(Path(path), origins)
    apply_overrides(data, list(overrides), origins)
    return validate_config(data, str(path), origins)


def config_from_json(text: str, source: str) -> Config:
    """A config stored as JSON (e.g. in a checkpoint's metadata)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{source}: expected the config as JSON, found invalid JSON: {err}") from None
    return validate_config(data, source)


def changed_keys(a: Config, b: Config) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    out: list[str] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{prefix}.{k}" if prefix else k)
        elif x != y:
            out.append(prefix)

    walk(a.to_dict(), b.to_dict(), "")
    return out
