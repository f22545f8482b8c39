"""Real PyTorch models by name: our registry, every torchvision model, timm (`timm:NAME`), or a user's
`file.py:factory` / `package.module:factory`.

Never loads weights (always ``weights=None``, ``weights_backbone=None``, timm's ``pretrained=False``). Auxiliary
heads are built where torchvision's metadata counts them (Inception-v3, FCN / DeepLabV3), unless told otherwise.
The default input is the one torchvision's ``_ops`` metadata was measured at (pytorch/vision #6936): an image
batch at the crop size, a 16-frame clip for video models, a list of 3-d images for detection, two images for
optical flow. Models are built on the meta device when possible: no memory, no initialisation cost; moving a
model keeps tied parameters tied.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

from cnncost.errors import CnnCostError

# torchvision models with auxiliary heads (aux_logits) that run only in training; the others' (aux_loss) run always.
AUX_MODELS = ("googlenet", "inception_v3", "quantized_googlenet", "quantized_inception_v3")
# Where torchvision's num_params counts the auxiliary heads: its builders keep them when weights are loaded.
AUX_IN_METADATA = ("inception_v3", "quantized_inception_v3")
AUX_NOTES = {False: "auxiliary heads left out (--aux includes them)",
             True: "auxiliary heads included: their parameters count, but they run only in training (no MACs here)"}
AUX_LOSS_NOTES = {False: "auxiliary classifier left out (--aux includes it, as torchvision's metadata does)",
                  True: "auxiliary classifier included (as in torchvision's metadata; it runs in eval too)"}
# torchvision.models submodules by task, and the input each task's models take (see `LAYOUTS`).
TASKS = {"classification": "", "segmentation": "segmentation", "detection": "detection", "video": "video",
         "optical_flow": "optical_flow", "quantized": "quantization"}
TASK_LAYOUT = {"classification": "image", "segmentation": "image", "quantized": "image", "video": "video",
               "detection": "images", "optical_flow": "image_pair"}
VIDEO_FRAMES = 16       # torchvision's video _ops: a (1, 3, 16, crop, crop) clip
OPTICAL_FLOW_SIZE = 512  # torchvision's optical-flow _ops: two (1, 3, 512, 512) images
# Detection builders that use FrozenBatchNorm2d (buffers, not parameters) in the backbone when weights are
# loaded, as torchvision's num_params was measured.
FROZEN_NORM_WHEN_TRAINED = ("fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn",
                            "fasterrcnn_mobilenet_v3_large_320_fpn", "fcos_resnet50_fpn", "keypointrcnn_resnet50_fpn",
                            "maskrcnn_resnet50_fpn", "retinanet_resnet50_fpn")
DTYPES = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16",
          "fp64": "float64", "double": "float64", "int": "int64", "long": "int64"}
DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
# Registered specs with no torchvision builder whose architecture torchvision's classes can still build.
CONSTRUCTIBLE = {"densenet264": ("DenseNet", {"growth_rate": 32, "block_config": (6, 12, 64, 48),
                                              "num_init_features": 64})}


@dataclass
class Inputs:
    """A model's call arguments: positional args and keyword args (tensors, lists of tensors, anything else)."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    @classmethod
    def of(cls, x: Any) -> Inputs:
        """Inputs from what a user gives: a tensor or a list (one argument), a tuple (the arguments), a dict
        (keyword arguments)."""
        if isinstance(x, Inputs):
            return x
        if isinstance(x, tuple):
            return cls(x)
        if isinstance(x, dict):
            return cls((), dict(x))
        return cls((x,))

    def tensors(self) -> list:
        """Every tensor in the arguments, in order."""
        import torch
        from torch.utils._pytree import tree_leaves
        return [t for t in tree_leaves((self.args, self.kwargs)) if isinstance(t, torch.Tensor)]

    def shapes(self) -> list[tuple[int, ...]]:
        """The shape of every input tensor."""
        return [tuple(t.shape) for t in self.tensors()]

    def to(self, device: str) -> Inputs:
        """The same inputs on `device` (a meta tensor becomes zeros or random values of its shape and dtype)."""
        import torch
        from torch.utils._pytree import tree_map

        def move(t):
            if not isinstance(t, torch.Tensor) or t.device.type == device:
                return t
            return make_tensor(tuple(t.shape), t.dtype, device) if t.is_meta else t.to(device)
        return Inputs(*tree_map(move, (self.args, self.kwargs)))


def make_tensor(shape: tuple[int, ...], dtype: Any = None, device: str = "meta"):
    """An input tensor: empty on meta; random normal floats, or zeros for integers (valid token ids), elsewhere."""
    import torch
    dtype = torch_dtype(dtype) if isinstance(dtype, str) or dtype is None else dtype
    if device == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(shape, dtype=dtype, device=device)
    return torch.zeros(shape, dtype=dtype, device=device)


def torch_dtype(name: str | None):
    """A torch dtype from its name (float32, int64, bf16, ...), case-insensitive; float32 by default."""
    import torch
    key = (name or "float32").strip().lower()
    key = DTYPES.get(key, key)
    if key not in DTYPE_NAMES:
        raise CnnCostError(f"unknown input dtype {name!r}; choose from {', '.join(DTYPE_NAMES)} (or fp32, fp16, bf16)")
    return getattr(torch, key)


def parse_input(text: str) -> tuple[tuple[int, ...], str]:
    """--input SHAPE[:DTYPE], e.g. '1x3x224x224' or '1x10:int64', as (shape, dtype name)."""
    shape_text, _, dtype = text.strip().partition(":")
    parts = shape_text.lower().replace(",", "x").split("x")
    if not all(p.strip().isdigit() for p in parts):
        raise CnnCostError(f"--input must be SHAPE[:DTYPE] with SHAPE like 1x3x224x224, got {text!r}")
    shape = tuple(int(p) for p in parts)
    if not all(0 < n <= 1 << 31 for n in shape):
        raise CnnCostError(f"--input {text!r}: every dimension must be a positive integer")
    torch_dtype(dtype or None)
    return shape, (dtype.strip().lower() or "float32")


def image(batch: int, channels: int, hw: tuple[int, int], device: str) -> tuple:
    """One NCHW image batch."""
    return (make_tensor((batch, channels, *hw), None, device),)


def video(batch: int, channels: int, hw: tuple[int, int], device: str) -> tuple:
    """One N x C x T x H x W clip of VIDEO_FRAMES frames."""
    return (make_tensor((batch, channels, VIDEO_FRAMES, *hw), None, device),)


def images(batch: int, channels: int, hw: tuple[int, int], device: str) -> tuple:
    """A list of `batch` C x H x W images (torchvision's detection models)."""
    return ([make_tensor((channels, *hw), None, device) for _ in range(batch)],)


def image_pair(batch: int, channels: int, hw: tuple[int, int], device: str) -> tuple:
    """Two NCHW image batches (optical flow: the frames before and after)."""
    return image(batch, channels, hw, device) + image(batch, channels, hw, device)


LAYOUTS = {"image": image, "video": video, "images": images, "image_pair": image_pair}


@dataclass
class ModelSource:
    """How to build one real model and its inputs, and which analytic spec (if any) it should match."""

    name: str
    factory: Callable[[], object]
    resolution: int | tuple[int, int] = 224
    channels: int = 3
    spec: str | None = None
    implementation: str = ""
    paper_variant: bool = False
    notes: list[str] = field(default_factory=list)
    uninitialised_ok: bool = False
    layout: str = "image"
    aux_heads: bool = False
    shapes: list[tuple[tuple[int, ...], str]] | None = None
    example: Any = None

    def build(self, device: str = "meta"):
        """The model in eval mode with its parameters on `device` (built there directly when the factory allows).

        torchvision models go to a real device as zeros (built on meta, then given zeroed memory): counts do
        not depend on values, initialising VGG's 138M weights costs seconds, and garbage memory can hold slow
        denormal floats. A factory may return (model, example_inputs): the inputs are kept for `inputs()`."""
        import torch
        if device != "meta" and self.uninitialised_ok:
            model = move(self.build("meta"), device, empty=True).eval()
            with torch.no_grad():
                for tensor in (*model.parameters(), *model.buffers()):
                    tensor.zero_()
            return model
        try:
            with torch.device(device):
                model = self.factory()
        except Exception:  # noqa: BLE001 - some factories cannot build on meta: build on the CPU, then move
            try:
                model = self.factory()
            except CnnCostError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure of user code is one line
                raise CnnCostError(f"factory {self.name} raised {one_line(e)}") from None
        model = self.keep_example(model)
        check_module(model, f"factory {self.name}")
        return move(model, device).eval()

    def keep_example(self, built: Any) -> Any:
        """The model from a factory's result; example inputs returned beside it, as (model, inputs), are kept."""
        import torch
        if isinstance(built, (tuple, list)) and len(built) == 2 and isinstance(built[0], torch.nn.Module):
            if self.example is None:  # inputs the caller gave (count(inputs=...)) win over the factory's
                self.example = built[1]
            return built[0]
        return built

    def inputs(self, batch: int = 1, size: int | None = None, device: str = "meta") -> Inputs:
        """The model's inputs: the factory's example, the --input shapes (for detection models: one list of
        images), or the model's own layout at a batch and size (size defaults to the model's resolution)."""
        if self.example is not None:
            return Inputs.of(self.example).to(device)
        if self.shapes:
            tensors = [make_tensor(s, d, device) for s, d in self.shapes]
            return Inputs((tensors,) if self.layout == "images" else tuple(tensors))
        hw = (size, size) if size is not None else self.hw()
        if batch <= 0 or min(hw) <= 0 or self.channels <= 0:
            raise CnnCostError(f"batch, channels and size must be positive, got batch {batch}, "
                               f"channels {self.channels}, size {size}")
        return Inputs(LAYOUTS[self.layout](batch, self.channels, hw, device))

    def batched_inputs(self, batch: int, size: int | None = None, device: str = "meta") -> Inputs:
        """The inputs at a batch, for --fit's search: --input shapes with their first dim set to it; a
        factory's example inputs cannot be re-batched."""
        if self.example is not None:
            raise CnnCostError(f"{self.name}: --fit searches over the batch, but the factory returns fixed example "
                               f"inputs; --fit needs inputs it can re-batch (--input shapes)")
        if self.shapes:
            return Inputs(tuple(make_tensor((batch, *s[1:]), d, device) for s, d in self.shapes))
        return self.inputs(batch, size, device)

    def hw(self) -> tuple[int, int]:
        """The default input height and width."""
        r = self.resolution
        return (r, r) if isinstance(r, int) else tuple(r)

    def input(self, batch: int = 1, size: int | None = None, device: str = "meta"):
        """The first input tensor (an NCHW batch for image models)."""
        return self.inputs(batch, size, device).tensors()[0]


def move(model, device: str, empty: bool = False):
    """`model` on `device` (to_empty when `empty`), parameters and buffers that were one tensor still one tensor:
    Module.to() and to_empty() give each module its own copy of a tied weight."""
    groups = tied_groups(model)
    model = model.to_empty(device=device) if empty else model.to(device)
    for names in groups:
        shared = tensor_at(model, names[0])
        for name in names[1:]:
            owner, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(owner), leaf, shared)
    return model


def tied_groups(model) -> list[list[str]]:
    """Names of the parameters and buffers that are one shared tensor, one list per tensor shared more than once."""
    by_tensor: dict[int, list[str]] = {}
    for name, t in (*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)):
        by_tensor.setdefault(id(t), []).append(name)
    return [names for names in by_tensor.values() if len(names) > 1]


def tensor_at(model, name: str):
    """The parameter or buffer at a dotted name."""
    owner, _, leaf = name.rpartition(".")
    return getattr(model.get_submodule(owner), leaf)


def check_module(model: object, name: str) -> None:
    """A one-line error unless the factory gave an nn.Module."""
    import torch
    if not isinstance(model, torch.nn.Module):
        raise CnnCostError(f"{name} returned {type(model).__name__}, not a torch.nn.Module")


def load(name: str, aux: bool | None = None, kwargs: dict | None = None, channels: int | None = None) -> ModelSource:
    """A model source for a registry name or alias, any torchvision model name, `timm:NAME`, or
    `file.py:factory` / `pkg.mod:factory`. `aux` None builds auxiliary heads as torchvision's metadata counts them;
    `channels` (input channels) applies to user models only."""
    user = ":" in name and not name.lower().startswith("timm:")
    if channels not in (None, 3) and not user:
        raise CnnCostError(f"--channels applies only to FILE.py:FACTORY or package.module:FACTORY models; {name} "
                           f"takes 3-channel images (give other inputs with --input SHAPE)")
    if kwargs and not user:
        raise CnnCostError("factory arguments (--arg) only apply to FILE.py:FACTORY or package.module:FACTORY models")
    if user:
        from cnncost.trace.userfile import user_model
        return user_model(name, kwargs or {}, channels or 3)
    if name.lower().startswith("timm:"):
        return timm_model(name[5:])
    from cnncost import specs
    try:
        entry = specs.resolve(name)
    except CnnCostError:
        return torchvision_model(name, aux)
    return registry_model(entry, aux)


def check_aux(source, aux: bool | None) -> None:
    """--aux / --no-aux only for a model with auxiliary heads: one line otherwise."""
    if aux is not None and not source.aux_heads:
        raise CnnCostError(f"--{'' if aux else 'no-'}aux: {source.name} has no auxiliary heads (only GoogLeNet, "
                           f"Inception-v3, FCN and DeepLabV3 models have them)")


def registry_model(entry, aux: bool | None) -> ModelSource:
    """The real model behind a registered spec: its torchvision model, or the implementation a paper variant has."""
    if entry.torchvision:
        source = torchvision_model(entry.torchvision, aux)
    elif entry.name in CONSTRUCTIBLE:
        cls, kw = CONSTRUCTIBLE[entry.name]
        source = ModelSource(entry.name, class_factory(cls, kw), implementation=f"torchvision.models.{cls}(**{kw})",
                             uninitialised_ok=True)
    else:
        base = implementation_of(entry.name)
        if base is None:
            raise CnnCostError(f"{entry.name} is an analytic-only spec with no real model to trace")
        source = registry_model(base, aux)
        source.paper_variant = True
        source.notes.append(f"{entry.name} is a paper variant; its real counterpart is {base.name}")
    source.name, source.spec, source.resolution = entry.name, entry.name, entry.resolution
    return source


def implementation_of(name: str):
    """The registered model with a real implementation that a paper variant is named after (alexnet_paper -> alexnet)."""
    from cnncost import specs
    parts = name.split("_")
    for cut in range(len(parts) - 1, 0, -1):
        entry = specs.MODELS.get("_".join(parts[:cut]))
        if entry and (entry.torchvision or entry.name in CONSTRUCTIBLE):
            return entry
    return None


def class_factory(cls: str, kwargs: dict) -> Callable[[], object]:
    """A factory building torchvision.models.<cls>(**kwargs)."""
    def build():
        import torchvision
        return getattr(torchvision.models, cls)(**kwargs)
    return build


@lru_cache(maxsize=1)
def torchvision_tasks() -> dict[str, str]:
    """Every torchvision model name -> its task (classification, segmentation, detection, video, optical_flow,
    quantized)."""
    import importlib

    import torchvision
    tasks = {}
    for task, sub in TASKS.items():
        module = importlib.import_module(f"torchvision.models.{sub}") if sub else torchvision.models
        tasks.update({n: task for n in torchvision.models.list_models(module=module) if n not in tasks})
    return tasks


def has_aux(name: str) -> bool:
    """Whether a torchvision model has auxiliary heads (aux_logits or aux_loss)."""
    return name in AUX_MODELS or "aux_loss" in builder_parameters(name)


@lru_cache(maxsize=None)
def builder_parameters(name: str) -> tuple[str, ...]:
    """The keyword parameters of a torchvision model's builder."""
    import torchvision
    return tuple(inspect.signature(torchvision.models.get_model_builder(name)).parameters)


def torchvision_kwargs(name: str, aux: bool) -> dict:
    """Builder arguments: no weights (nor backbone weights), auxiliary heads as asked."""
    params = builder_parameters(name)
    kwargs = {"weights": None, **({"weights_backbone": None} if "weights_backbone" in params else {})}
    if "aux_loss" in params:
        kwargs["aux_loss"] = aux
    if name in AUX_MODELS:
        kwargs.update(aux_logits=aux, init_weights=False)
    if name.startswith("vit_") and default_resolution(name) != 224:
        kwargs["image_size"] = default_resolution(name)  # as its builder does for its weights (vit_h_14: 518)
    return kwargs


def torchvision_model(name: str, aux: bool | None = None) -> ModelSource:
    """Any torchvision model by name (classification, segmentation, detection, video, optical flow, quantized),
    weights=None, with the input its `_ops` metadata was measured at."""
    key = name.strip().lower().replace("-", "_")
    task = torchvision_tasks().get(key)
    if task is None:
        raise CnnCostError(f"unknown model {name!r}{suggestion(key)}")
    if aux is None:
        aux = key in AUX_IN_METADATA or "aux_loss" in builder_parameters(key)
    kwargs = torchvision_kwargs(key, aux)

    def build():
        import torchvision
        model = torchvision.models.get_model(key, **kwargs)
        return frozen_norms(model) if key in FROZEN_NORM_WHEN_TRAINED else model

    notes = []
    if key in AUX_MODELS:
        notes.append(AUX_NOTES[aux])
    elif "aux_loss" in kwargs:
        notes.append(AUX_LOSS_NOTES[aux])
    if task == "quantized":
        notes.append("built with quantize=False: the float model with quantization stubs, whose conv/linear MACs "
                     "and parameters are the int8 model's")
    if key in FROZEN_NORM_WHEN_TRAINED:
        notes.append("backbone batch norms frozen (FrozenBatchNorm2d: buffers, not parameters), as torchvision "
                     "builds this model with weights")
    if task == "detection":
        notes.append("detection: the model resizes its input itself; proposals and detections depend on the "
                     "weights and data (no weights here), so heads after the RPN may differ from torchvision's _ops")
    return ModelSource(key, build, default_resolution(key, task), implementation=f"torchvision.models.{key}",
                       notes=notes, uninitialised_ok=True, layout=TASK_LAYOUT[task], aux_heads=has_aux(key))


def frozen_norms(model):
    """The model with its backbone's BatchNorm2d layers replaced by torchvision's FrozenBatchNorm2d."""
    import torch
    from torchvision.ops.misc import FrozenBatchNorm2d
    backbone = model.backbone
    for path, module in list(backbone.named_modules()):
        if isinstance(module, torch.nn.BatchNorm2d):
            owner, _, leaf = path.rpartition(".")
            setattr(backbone.get_submodule(owner), leaf, FrozenBatchNorm2d(module.num_features, module.eps))
    return model


def suggestion(key: str) -> str:
    """'; did you mean ...?' from every name cnncost accepts, or a pointer to the lists."""
    from cnncost import specs
    names = list(dict.fromkeys([*specs.MODELS, *specs.ALIASES, *torchvision_tasks()]))
    close = difflib.get_close_matches(key, names, n=4, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else "; see `cnncost list` or torchvision.models"


def default_resolution(name: str, task: str | None = None) -> int | tuple[int, int]:
    """The input size torchvision's `_ops` metadata was measured at: the evaluation crop (video: per frame),
    the resize size for segmentation (520), 512 for optical flow, else 224 (detection resizes inside the model)."""
    import torchvision
    task = task or torchvision_tasks().get(name, "classification")
    if task == "optical_flow":
        return OPTICAL_FLOW_SIZE
    try:
        keywords = torchvision.models.get_model_weights(name).DEFAULT.transforms.keywords
    except (ValueError, AttributeError, KeyError, TypeError):
        return 224
    size = keywords.get("resize_size" if task == "segmentation" else "crop_size", 224)
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    size = size * 2 if len(size) == 1 else size
    return int(size[0]) if size[0] == size[1] else (int(size[0]), int(size[1]))


def timm_model(name: str) -> ModelSource:
    """A timm model by name (`timm:convnext_tiny`), pretrained=False, at its pretrained_cfg input size."""
    try:
        import timm
    except ImportError:
        raise CnnCostError("timm is not installed; pip install 'cnncost[timm]'") from None
    key = name.strip()
    if not key or not timm.is_model(key):
        close = difflib.get_close_matches(key, timm.list_models(), n=4, cutoff=0.6)
        hint = f"; did you mean {', '.join('timm:' + c for c in close)}?" if close else "; see timm.list_models()"
        raise CnnCostError(f"unknown timm model {key!r}{hint}")
    channels, *hw = timm_input_size(key)

    def build():
        return timm.create_model(key, pretrained=False)

    return ModelSource(f"timm:{key}", build, hw[0] if hw[0] == hw[1] else tuple(hw), channels,
                       implementation=f"timm.create_model({key!r}, pretrained=False)")


def timm_input_size(name: str) -> tuple[int, int, int]:
    """C, H, W from a timm model's pretrained_cfg (no download); 3 x 224 x 224 when it has none."""
    from timm.models import get_pretrained_cfg
    try:
        cfg = get_pretrained_cfg(name, allow_unregistered=True)
    except Exception:  # noqa: BLE001 - a model with no pretrained config
        cfg = None
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    return tuple(int(n) for n in size) if size and len(size) == 3 else (3, 224, 224)


def torchvision_meta(name: str) -> dict:
    """torchvision's published num_params and _ops (GMACs) for a model, read offline; {} when it has none."""
    import torchvision
    try:
        meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    except (ValueError, AttributeError, KeyError):
        return {}
    return {k: meta[k] for k in ("num_params", "_ops") if k in meta}


def one_line(e: BaseException) -> str:
    """An exception as 'Type: first line of message'."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
