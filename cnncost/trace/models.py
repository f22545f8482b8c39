"""Model sources by name: our registry, every torchvision model, timm (`timm:NAME`), or a user's
`file.py:factory` / `package.module:factory` (cnncost.trace.userfile).

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
from dataclasses import replace
from functools import lru_cache
from typing import Callable

from cnncost.errors import CnnCostError
from cnncost.trace.sources import OPTICAL_FLOW_SIZE, ModelSource

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
# Detection builders that use FrozenBatchNorm2d (buffers, not parameters) in the backbone when weights are
# loaded, as torchvision's num_params was measured.
FROZEN_NORM_WHEN_TRAINED = ("fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn",
                            "fasterrcnn_mobilenet_v3_large_320_fpn", "fcos_resnet50_fpn", "keypointrcnn_resnet50_fpn",
                            "maskrcnn_resnet50_fpn", "retinanet_resnet50_fpn")
# Registered specs with no torchvision builder whose architecture torchvision's classes can still build.
CONSTRUCTIBLE = {"densenet264": ("DenseNet", {"growth_rate": 32, "block_config": (6, 12, 64, 48),
                                              "num_init_features": 64})}


def load(name: str, aux: bool | None = None, kwargs: dict | None = None, channels: int | None = None,
         shapes=(), example=None, detections: int | None = None) -> ModelSource:
    """A model source for a registry name or alias, any torchvision model name, `timm:NAME`, or
    `file.py:factory` / `pkg.mod:factory`. `aux` None builds auxiliary heads as torchvision's metadata counts them;
    `channels` (input channels) applies to user models only; `shapes` ((shape, dtype) per input tensor, from
    --input) and `example` (the inputs themselves) replace the model's own input; `detections`: how many
    detections per image a detection model's heads run on."""
    source = named_source(name, aux, kwargs, channels, detections)
    asked = {"shapes": tuple(shapes)} if shapes else {}
    return replace(source, **asked, example=example) if asked or example is not None else source


def named_source(name: str, aux: bool | None, kwargs: dict | None, channels: int | None,
                 detections: int | None = None) -> ModelSource:
    """The source a name stands for, with the model's own input."""
    user = ":" in name and not name.lower().startswith("timm:")
    if channels is not None and channels < 1:
        raise CnnCostError(f"--channels must be a positive number of input channels, got {channels}")
    if channels not in (None, 3) and not user:
        raise CnnCostError(f"--channels applies only to FILE.py:FACTORY or package.module:FACTORY models; {name} "
                           f"takes 3-channel images (give other inputs with --input SHAPE)")
    if kwargs and not user:
        raise CnnCostError("factory arguments (--arg) only apply to FILE.py:FACTORY or package.module:FACTORY models")
    if detections is not None and (user or name.lower().startswith("timm:")):
        raise CnnCostError(f"--detections applies to torchvision's detection models, not {name}")
    if user:
        from cnncost.trace.userfile import user_model
        return user_model(name, kwargs or {}, 3 if channels is None else channels)
    if name.lower().startswith("timm:"):
        return timm_model(name[5:])
    from cnncost import specs
    try:
        entry = specs.resolve(name)
    except CnnCostError:
        return torchvision_model(name, aux, detections)
    if detections is not None:
        raise CnnCostError(f"--detections applies to torchvision's detection models, not {entry.name}")
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
        source = replace(source, paper_variant=True,
                         notes=(*source.notes, f"{entry.name} is a paper variant; its real counterpart is {base.name}"))
    return replace(source, name=entry.name, spec=entry.name, resolution=entry.resolution)


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


def torchvision_model(name: str, aux: bool | None = None, detections: int | None = None) -> ModelSource:
    """Any torchvision model by name (classification, segmentation, detection, video, optical flow, quantized),
    weights=None, with the input its `_ops` metadata was measured at; a detection model's heads run on
    `detections` per image (default: its own maximum), see `detection_rule`."""
    key = name.strip().lower().replace("-", "_")
    task = torchvision_tasks().get(key)
    if task is None:
        raise CnnCostError(f"unknown model {name!r}{suggestion(key)}")
    if detections is not None and task != "detection":
        raise CnnCostError(f"--detections applies to torchvision's detection models; {key} is a {task.replace('_', ' ')} model")
    if detections is not None and detections < 1:
        raise CnnCostError(f"--detections must be positive, got {detections}")
    if aux is None:
        aux = key in AUX_IN_METADATA or "aux_loss" in builder_parameters(key)
    kwargs = torchvision_kwargs(key, aux)
    limits = detection_limits(key, detections) if task == "detection" else {}

    def build():
        import torchvision
        model = torchvision.models.get_model(key, **kwargs)
        model = frozen_norms(model) if key in FROZEN_NORM_WHEN_TRAINED else model
        return detection_rule(model, limits["detections_per_image"]) if limits else model

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
        proposals = (f"the region proposal network keeps {limits['proposals_per_image']:,} proposals per image and "
                     if "proposals_per_image" in limits else "")
        notes.append(f"detection: the model resizes its input itself; {proposals}every head runs on "
                     f"{limits['detections_per_image']:,} detections per image (the model's maximum, or "
                     f"--detections N), whatever the weights would keep; torchvision's _ops count what its trained "
                     f"weights keep on its images")
    return ModelSource(key, build, default_resolution(key, task), implementation=f"torchvision.models.{key}",
                       notes=tuple(notes), uninitialised_ok=True, layout=TASK_LAYOUT[task], aux_heads=has_aux(key),
                       assumptions=limits)


# A detection model's rule: nothing is left out for its score or overlap, so every stage keeps its maximum.
KEEP_ALL = {"score_thresh": 0.0, "nms_thresh": 1.01}  # IoU never exceeds 1: no box suppresses another


@lru_cache(maxsize=None)
def own_limits(key: str) -> tuple[int | None, int]:
    """(proposals the RPN keeps per image at test time, or None for a single-stage model; detections per image)
    as torchvision builds the model (read on a meta build)."""
    import torch
    import torchvision
    with torch.device("meta"):
        model = torchvision.models.get_model(key, **torchvision_kwargs(key, False))
    heads = getattr(model, "roi_heads", model)
    rpn = getattr(model, "rpn", None)
    return (rpn._post_nms_top_n["testing"] if rpn is not None else None), int(heads.detections_per_img)


def detection_limits(key: str, detections: int | None) -> dict:
    """The detection rule's counts: proposals per image (two-stage models) and detections per image."""
    proposals, own = own_limits(key)
    return {**({"proposals_per_image": proposals} if proposals else {}), "detections_per_image": detections or own}


def detection_rule(model, detections: int):
    """Every stage of a detection model keeps its maximum (no score threshold, no suppression), and its heads
    (box, mask, keypoint) run on `detections` per image: one rule on meta and on the CPU, whatever the weights."""
    rpn = getattr(model, "rpn", None)
    if rpn is not None:
        rpn.score_thresh, rpn.nms_thresh = KEEP_ALL["score_thresh"], KEEP_ALL["nms_thresh"]
    heads = getattr(model, "roi_heads", model)  # two-stage: the RoI heads; single-stage: the model itself
    heads.score_thresh, heads.nms_thresh = KEEP_ALL["score_thresh"], KEEP_ALL["nms_thresh"]
    heads.detections_per_img = detections
    return model


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

