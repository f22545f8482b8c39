"""How to build a real model and its inputs: `ModelSource`, the model's call arguments (`Inputs`), input
tensors by shape and dtype, and moving a model between devices with tied weights kept tied.

A source is filled in once, when it is made (by `cnncost.trace.models.load` for a name, or `module_source` for an
nn.Module): what the user asked for (input shapes, example inputs) is part of it, never patched in later. A factory
may return (model, example inputs): `instantiate` returns them beside the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from cnncost.errors import CnnCostError

VIDEO_FRAMES = 16       # torchvision's video _ops: a (1, 3, 16, crop, crop) clip
OPTICAL_FLOW_SIZE = 512  # torchvision's optical-flow _ops: two (1, 3, 512, 512) images
DTYPES = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16",
          "fp64": "float64", "double": "float64", "int": "int64", "long": "int64"}
DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")


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

    def mapped(self, fn) -> Inputs:
        """The same inputs with fn applied to every tensor."""
        import torch
        from torch.utils._pytree import tree_map
        return Inputs(*tree_map(lambda t: fn(t) if isinstance(t, torch.Tensor) else t, (self.args, self.kwargs)))

    def channels_last(self) -> Inputs:
        """Every 4-d tensor in the channels-last (NHWC) memory format."""
        import torch
        return self.mapped(lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)

    def cast(self, dtype) -> Inputs:
        """Every floating tensor in `dtype` (integer inputs, token ids, kept)."""
        return self.mapped(lambda t: t.to(dtype) if t.is_floating_point() else t)


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


@dataclass(frozen=True)
class ModelSource:
    """How to build one real model and its inputs, and which analytic spec (if any) it should match.

    `shapes` (--input) and `example` (inputs a caller gave) are the inputs asked for; a factory's own example
    inputs, returned beside its model, come from `instantiate`. `fallback` is where a forward that fails on meta
    runs instead (an nn.Module given directly: where it lives)."""

    name: str
    factory: Callable[[], object]
    resolution: int | tuple[int, int] = 224
    channels: int = 3
    spec: str | None = None
    implementation: str = ""
    paper_variant: bool = False
    notes: tuple[str, ...] = ()
    uninitialised_ok: bool = False
    layout: str = "image"
    aux_heads: bool = False
    shapes: tuple[tuple[tuple[int, ...], str], ...] = ()
    example: Any = None
    fallback: str = "cpu"
    builder: Callable[[str], object] | None = None  # device -> model, for a source that is one live module
    assumptions: dict = field(default_factory=dict)  # counts the model's cost depends on (detections per image)

    @property
    def fallback_label(self) -> str:
        """The fallback device as notes name it: the CPU for a named model; a live module's own device."""
        return "the CPU" if self.builder is None else self.fallback

    def build(self, device: str = "meta"):
        """The model in eval mode with its parameters on `device` (see instantiate)."""
        return self.instantiate(device)[0]

    def instantiate(self, device: str = "meta") -> tuple[Any, Any]:
        """(the model in eval mode on `device`, the factory's example inputs or None), built there directly when
        the factory allows.

        torchvision models go to a real device as zeros (built on meta, then given zeroed memory): counts do
        not depend on values, initialising VGG's 138M weights costs seconds, and garbage memory can hold slow
        denormal floats."""
        import torch
        if self.builder is not None:
            return self.builder(device), None
        if device != "meta" and self.uninitialised_ok:
            model, example = self.instantiate("meta")
            model = move(model, device, empty=True).eval()
            with torch.no_grad():
                for tensor in (*model.parameters(), *model.buffers()):
                    tensor.zero_()
            return model, example
        try:
            with torch.device(device):
                built = self.factory()
        except Exception:  # noqa: BLE001 - some factories cannot build on meta: build on the CPU, then move
            try:
                built = self.factory()
            except CnnCostError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure of user code is one line
                raise CnnCostError(f"factory {self.name} raised {one_line(e)}") from None
        model, example = split_example(built)
        check_module(model, f"factory {self.name}")
        return move(model, device).eval(), example

    def inputs(self, batch: int | None = None, size: int | None = None, device: str = "meta",
               example: Any = None) -> Inputs:
        """The model's inputs, the user's asking first. --input shapes replace everything (a factory's example keeps
        its structure, dict keys and all, its tensors replaced in order); example inputs (the caller's, else the
        factory's) are a default that `batch` re-batches and `size` resizes where there is one image input;
        otherwise the model's own layout at `batch` (1) and `size` (its resolution). An override that cannot apply
        is refused in one line."""
        given = self.example if self.example is not None else example
        if self.shapes:
            tensors = [make_tensor(s, d, device) for s, d in self.shapes]
            inputs = (replaced(Inputs.of(given), tensors, self.name) if given is not None
                      else Inputs((tensors,) if self.layout == "images" else tuple(tensors)))
            return rebatched(inputs, batch) if batch is not None else inputs
        if given is not None:
            return adapted(Inputs.of(given), batch, size, self.channels if self.channels != 3 else None,
                           self.name).to(device)
        batch = 1 if batch is None else batch
        hw = (size, size) if size is not None else self.hw()
        if batch <= 0 or min(hw) <= 0 or self.channels <= 0:
            raise CnnCostError(f"batch, channels and size must be positive, got batch {batch}, "
                               f"channels {self.channels}, size {size}")
        return Inputs(LAYOUTS[self.layout](batch, self.channels, hw, device))

    def width(self, size: int | None = None):
        """The input size a command records: `size`, else --input's width (an image's last dim), else the model's
        own resolution."""
        if size:
            return size
        if self.shapes and len(self.shapes[0][0]) >= 3:
            return self.shapes[0][0][-1]
        return self.resolution

    def hw(self) -> tuple[int, int]:
        """The default input height and width."""
        r = self.resolution
        return (r, r) if isinstance(r, int) else tuple(r)

    def input(self, batch: int | None = None, size: int | None = None, device: str = "meta"):
        """The first input tensor (an NCHW batch for image models)."""
        return self.inputs(batch, size, device).tensors()[0]


def describe(inputs: Inputs) -> str:
    """Input tensors as '[0]: 2x3x32x32' (positional) or "['batch']['x']: 2x16" (keyword)."""
    import torch
    from torch.utils._pytree import keystr, tree_flatten_with_path
    leaves, _ = tree_flatten_with_path((inputs.args, inputs.kwargs))
    parts = [f"{keystr(path[1:])}: {'x'.join(map(str, t.shape))}" for path, t in leaves if isinstance(t, torch.Tensor)]
    return ", ".join(parts) or "no tensor"


def replaced(inputs: Inputs, tensors: list, name: str) -> Inputs:
    """Example inputs with their tensors replaced, in order, by --input's (the structure kept); one line when the
    counts differ."""
    import torch
    from torch.utils._pytree import tree_flatten, tree_unflatten
    leaves, spec = tree_flatten((inputs.args, inputs.kwargs))
    slots = [i for i, t in enumerate(leaves) if isinstance(t, torch.Tensor)]
    if len(slots) != len(tensors):
        raise CnnCostError(f"{name}: --input gives {len(tensors)} tensor(s), but its example inputs hold "
                           f"{len(slots)} ({describe(inputs)}); give one --input per tensor, in that order")
    for i, t in zip(slots, tensors):
        leaves[i] = t
    return Inputs(*tree_unflatten(leaves, spec))


def rebatched(inputs: Inputs, batch: int) -> Inputs:
    """The inputs at another batch: every tensor whose first dim is the first tensor's (the example's batch) gets
    `batch` rows, taken from its own in turn (values kept: token ids stay valid)."""
    import torch
    from torch.utils._pytree import tree_map
    if batch <= 0:
        raise CnnCostError(f"batch must be positive, got {batch}")
    first = next(iter(inputs.tensors()), None)
    if first is None or first.dim() == 0 or first.shape[0] == batch:
        return inputs
    old = first.shape[0]

    def rows(t):
        if not isinstance(t, torch.Tensor) or t.dim() == 0 or t.shape[0] != old:
            return t
        if t.is_meta:
            return t.new_empty((batch, *t.shape[1:]))
        return t.index_select(0, torch.arange(batch, device=t.device) % old)
    return Inputs(*tree_map(rows, (inputs.args, inputs.kwargs)))


def adapted(inputs: Inputs, batch: int | None, size: int | None, channels: int | None, name: str) -> Inputs:
    """Example inputs with the user's --batch (every batched tensor), and --size and --channels where there is
    exactly one image input (an N x C x H x W floating tensor); one line where they cannot apply."""
    from torch.utils._pytree import tree_map
    if batch is not None:
        inputs = rebatched(inputs, batch)
    if size is None and channels is None:
        return inputs
    images = [t for t in inputs.tensors() if t.dim() == 4 and t.is_floating_point()]
    if len(images) != 1:
        asked = " and ".join(f for f, v in (("--size", size), ("--channels", channels)) if v is not None)
        raise CnnCostError(f"{name}: {asked} applies to one image input (N x C x H x W), but its example inputs "
                           f"are {describe(inputs)}; give the inputs with --input SHAPE[:DTYPE] instead (one per "
                           f"tensor, in order), or --batch to re-batch the example")
    if (size is not None and size <= 0) or (channels is not None and channels <= 0):
        raise CnnCostError(f"size and channels must be positive, got size {size}, channels {channels}")
    image_ = images[0]
    n, c, h, w = image_.shape
    new = make_tensor((n, channels or c, size or h, size or w), image_.dtype, image_.device.type)
    return Inputs(*tree_map(lambda t: new if t is image_ else t, (inputs.args, inputs.kwargs)))


def split_example(built: Any) -> tuple[Any, Any]:
    """A factory's result as (model, example inputs or None): a factory may return (model, inputs)."""
    import torch
    if isinstance(built, (tuple, list)) and len(built) == 2 and isinstance(built[0], torch.nn.Module):
        return built[0], built[1]
    return built, None


def module_source(model, inputs: Inputs) -> ModelSource:
    """A source for an nn.Module given directly: counted on a meta copy of itself (tied weights stay tied), or
    where it lives when the forward fails on meta; its inputs are the ones given."""
    import copy
    where = next((p.device.type for p in model.parameters()), "cpu")

    def builder(device: str):
        return move(copy.deepcopy(model), "meta") if device == "meta" else model

    return ModelSource(type(model).__name__, lambda: model, example=inputs, fallback=where, builder=builder)


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


def one_line(e: BaseException) -> str:
    """An exception as 'Type: first line of message'."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
