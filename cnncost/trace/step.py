"""One ImageNet-style training step on any device (meta included): forward, cross-entropy, backward, optimizer.

Shared by the training-cost tracer and the memory tracker, so both see exactly the same aten ops.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

import cnncost.compat  # noqa: F401  (backports for older torch releases)

OPTIMIZERS = ("sgd", "adamw")
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def make_optimizer(model: torch.nn.Module, name: str = "sgd") -> torch.optim.Optimizer:
    """SGD with momentum 0.9 (the ResNet recipe) or AdamW, in the per-parameter loop (foreach=False) so each
    parameter's update is its own ops; the state is created lazily by the first step."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        from cnncost.errors import CnnCostError
        raise CnnCostError(f"{type(model).__name__} has no trainable parameters: a training step has nothing to update")
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=False)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05, foreach=False)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every parameter the optimizer updates, group by group."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def targets_for(batch: int, device: str = "meta") -> torch.Tensor:
    """Class labels for a batch (values do not matter to the counts)."""
    return torch.zeros(batch, dtype=torch.long, device=device)


def steady_state(optimizer: torch.optim.Optimizer) -> dict | None:
    """On meta, the state that one step of our SGD (momentum buffer) or AdamW (step 1, both moments) leaves
    each parameter, made directly (as their first step makes it: like the parameter; AdamW's step a CPU scalar);
    None for another optimizer or real tensors, which take a real step."""
    params = optimizer_params(optimizer)
    if not all(p.is_meta for p in params):
        return None
    if type(optimizer) is torch.optim.SGD and optimizer.defaults["momentum"]:
        return {p: {"momentum_buffer": torch.zeros_like(p)} for p in params}
    if type(optimizer) is torch.optim.AdamW and not optimizer.defaults["amsgrad"]:
        scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        return {p: {"step": torch.tensor(1.0, dtype=scalar), "exp_avg": torch.zeros_like(p),
                    "exp_avg_sq": torch.zeros_like(p)} for p in params}
    return None


def prime(optimizer: torch.optim.Optimizer) -> None:
    """Give the optimizer its state (momentum buffers, Adam moments) with one step on zero gradients, so the step
    traced next is a steady-state one, not the first (which copies gradients into new buffers instead); on meta
    the state that step leaves is made directly (steady_state), without running it."""
    state = steady_state(optimizer)
    if state is not None:
        optimizer.state.update(state)
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def ready_optimizer(model: torch.nn.Module, optimizer: str) -> torch.optim.Optimizer:
    """The optimizer with its state (momentum, Adam moments) already made, so the step traced next is a
    steady-state one."""
    opt = make_optimizer(model, optimizer)
    prime(opt)
    return opt


def autocast(device: str, dtype: str):
    """Mixed precision for bf16 / fp16: torch.autocast on a real device, CUDA's autocast emulated on meta, else none.

    torch.autocast cannot act on meta tensors: autocast("cuda") switches itself off without a GPU, and
    autocast("cpu") only casts tensors whose device is the CPU. On meta we therefore apply CUDA autocast's op
    lists ourselves, above autograd exactly where autocast sits, so the casts are recorded and saved as they are
    on a GPU (see MetaAutocast)."""
    low = AUTOCAST[dtype]
    if low is None:
        return nullcontext()
    if device == "meta":
        return MetaAutocast(low)
    kind = "cpu" if device == "cpu" else "cuda"
    return torch.autocast(kind, dtype=low)


# CUDA autocast's op lists (aten/src/ATen/autocast_mode.cpp), by the torch function's name; ops in neither list
# run in whatever dtype they are given (batch norm, activations, pooling, add: bf16 in, bf16 out).
LOWER_PRECISION = frozenset(
    "conv1d conv2d conv3d conv_tbc conv_transpose1d conv_transpose2d conv_transpose3d convolution _convolution "
    "prelu addmm addmv addr matmul __matmul__ __rmatmul__ einsum mm mv linear addbmm baddbmm bmm chain_matmul "
    "linalg_multi_dot _thnn_fused_lstm_cell _thnn_fused_gru_cell lstm_cell gru_cell rnn_tanh_cell rnn_relu_cell "
    "scaled_dot_product_attention _native_multi_head_attention".split())
FP32 = frozenset(
    "acos asin cosh erfinv exp expm1 log log10 log2 log1p reciprocal rsqrt sinh tan pow softplus layer_norm "
    "native_layer_norm group_norm frobenius_norm nuclear_norm cosine_similarity poisson_nll_loss "
    "cosine_embedding_loss nll_loss nll_loss2d hinge_embedding_loss kl_div l1_loss smooth_l1_loss huber_loss "
    "mse_loss margin_ranking_loss multilabel_margin_loss soft_margin_loss triplet_margin_loss multi_margin_loss "
    "binary_cross_entropy_with_logits dist pdist cdist renorm logsumexp upsample_nearest1d upsample_nearest2d "
    "upsample_nearest3d upsample_linear1d upsample_bilinear2d upsample_trilinear3d upsample_bicubic2d "
    "cross_entropy_loss".split())  # cross_entropy_loss: its log_softmax and nll_loss, seen as one torch function
# Run in float32 by asking for a float32 result (dtype=torch.float32), without a cast copy of the input.
FP32_RESULT = frozenset("prod softmax log_softmax cumprod cumsum linalg_vector_norm linalg_matrix_norm sum".split())
PROMOTE = frozenset("addcdiv addcmul atan2 bilinear cross dot vdot grid_sampler index_put scatter_add tensordot "
                    "cat stack".split())


def checkpoint_defaults() -> dict:
    """The keyword defaults of torch.utils.checkpoint.checkpoint (unwrapped from its decorators)."""
    import inspect

    import torch.utils.checkpoint
    return inspect.unwrap(torch.utils.checkpoint.checkpoint).__kwdefaults__


class MetaAutocast(torch.overrides.TorchFunctionMode):
    """CUDA autocast on meta tensors: float32 arguments of LOWER_PRECISION ops are cast to the low dtype, low
    arguments of FP32 ops to float32, FP32_RESULT ops on low inputs give float32 results, mixed arguments of
    PROMOTE ops go to the widest; a float32 leaf parameter is cast once per region and the copy cached
    (autocast's weight cache), released on exit. Checkpointed regions (torch.utils.checkpoint with its default
    context_fn, as torchvision's DenseNet) recompute under the emulation too. Checked op by op against
    torch.autocast("cpu") on real CPU tensors (tests/test_memory.py), whose lists agree with CUDA's for CNNs."""

    def __init__(self, low: torch.dtype, cache: bool = True):
        super().__init__()
        self.low, self.cache_enabled = low, cache
        self.cache: dict[int, torch.Tensor] = {}

    def __enter__(self):
        self.checkpoint_defaults = checkpoint_defaults()
        self.default_context = self.checkpoint_defaults["context_fn"]
        self.checkpoint_defaults["context_fn"] = self.recompute_context
        return super().__enter__()

    def __exit__(self, *exc):
        self.checkpoint_defaults["context_fn"] = self.default_context
        self.cache.clear()
        return super().__exit__(*exc)

    def recompute_context(self):
        """torch.utils.checkpoint's context_fn: on a real device checkpoint re-enters torch.autocast for the
        forward it recomputes in backward; on meta the emulation must be re-entered (with its own cache, as
        each recomputation has), since torch function modes do not reach the backward."""
        return nullcontext(), MetaAutocast(self.low, cache=self.cache_enabled)

    def cast(self, value, to: torch.dtype):
        """value cast to `to` if it is a floating tensor (not float64) of another dtype; lists element-wise."""
        if isinstance(value, (list, tuple)):
            return type(value)(self.cast(v, to) for v in value)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.dtype in (to, torch.float64):
            return value
        cacheable = (self.cache_enabled and to == self.low and value.dtype == torch.float32 and value.requires_grad
                     and value.is_leaf)
        if not cacheable:
            return value.to(to)
        if id(value) not in self.cache:
            self.cache[id(value)] = value.to(to)
        return self.cache[id(value)]

    def target(self, name: str, args, kwargs) -> torch.dtype | None:
        """The dtype an op's floating arguments are cast to, or None to leave them."""
        if name in LOWER_PRECISION:
            return self.low
        if name in FP32:
            return torch.float32
        if name in PROMOTE:
            floats = self.dtypes((args, kwargs))
            return torch.float32 if len(floats) > 1 and torch.float32 in floats else None
        return None

    @staticmethod
    def dtypes(tree) -> set[torch.dtype]:
        """The dtypes of the floating tensors in args."""
        return {t.dtype for t in torch.utils._pytree.tree_leaves(tree)
                if isinstance(t, torch.Tensor) and t.is_floating_point()}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in FP32_RESULT and kwargs.get("dtype") is None and self.low in self.dtypes(args):
            return func(*args, **{**kwargs, "dtype": torch.float32})
        to = self.target(name, args, kwargs)
        if to is not None:
            args, kwargs = self.cast(args, to), {k: self.cast(v, to) for k, v in kwargs.items()}
        return func(*args, **kwargs)


# torchvision's references: segmentation loss = out + 0.5 aux (references/segmentation/train.py); with
# auxiliary classifiers, GoogLeNet's loss = logits + 0.3 (aux1 + aux2), Inception v3's logits + 0.4 aux.
HEAD_WEIGHTS = {"out": 1.0, "aux": 0.5}
AUX_WEIGHTS = {"GoogLeNetOutputs": 0.3, "InceptionOutputs": 0.4}


def training_loss(outputs, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a classifier's logits (N x C; the first of a tuple, or .logits), or of a segmentation
    model's dict of per-pixel logits (N x C x H x W, each class id of `targets` at every pixel); auxiliary heads
    weighted as torchvision's references."""
    if isinstance(outputs, dict):
        return sum(HEAD_WEIGHTS.get(k, 1.0) * training_loss(v, targets) for k, v in outputs.items())
    aux = AUX_WEIGHTS.get(type(outputs).__name__)
    if aux and all(isinstance(t, torch.Tensor) for t in outputs):
        return training_loss(outputs[0], targets) + aux * sum(training_loss(t, targets) for t in outputs[1:])
    logits = outputs[0] if isinstance(outputs, (tuple, list)) else getattr(outputs, "logits", outputs)
    if logits.dim() < 2:  # a scalar, or one value per sample: the output is its own loss
        return logits.float().sum()
    if targets.shape[0] != logits.shape[0]:  # --input / example inputs set the batch: a label per sample
        targets = targets.new_zeros(logits.shape[0])
    if logits.dim() > 2 and targets.dim() == 1:  # per pixel: the image's class id at each of its pixels
        targets = targets.view(-1, *[1] * (logits.dim() - 2)).expand(logits.shape[0], *logits.shape[2:])
    return torch.nn.functional.cross_entropy(logits.float(), targets)


def as_inputs(inputs, input_grad: bool | None = None):
    """A model's call arguments as models.Inputs (a tensor: the one argument; a tuple or list: the arguments;
    a dict: keyword arguments), floating tensors needing a gradient (input_grad) or not (None: left as they are)."""
    from torch.utils._pytree import tree_map

    from cnncost.trace.sources import Inputs
    inputs = Inputs(tuple(inputs)) if isinstance(inputs, list) else Inputs.of(inputs)
    if input_grad is None:
        return inputs
    return Inputs(*tree_map(lambda x: x.detach().requires_grad_(input_grad)
                            if isinstance(x, torch.Tensor) and x.is_floating_point() else x,
                            (inputs.args, inputs.kwargs)))


def training_step(model: torch.nn.Module, inputs, targets: torch.Tensor, optimizer: torch.optim.Optimizer,
                  dtype: str = "fp32", device: str = "meta", fused_attention: bool = False) -> None:
    """model.train(); loss = cross_entropy(model(*inputs), targets); loss.backward(); optimizer.step(); zero grads.
    inputs: a tuple of arguments or models.Inputs (keyword arguments too). fused_attention: on meta, attention runs
    as a fused kernel, as it does on a real device (see FusedAttention)."""
    model.train()
    call = as_inputs(inputs)
    fused = FusedAttention() if fused_attention and device == "meta" and FusedAttention.available() else nullcontext()
    with autocast(device, dtype), fused:
        loss = training_loss(model(*call.args, **call.kwargs), targets)  # segmentation's dicts too
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


class FusedAttention(torch.overrides.TorchFunctionMode):
    """F.scaled_dot_product_attention on meta as the fused kernel a real device runs (flash attention: what it
    keeps for backward is its output and one log-sum-exp per query, not the attention matrix the math decomposition
    keeps on meta); calls it cannot run (dropout, grouped-query attention) run as they are."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        F = torch.nn.functional
        if func is F.scaled_dot_product_attention:
            return self.attention(*args, **kwargs)
        if func is F.multi_head_attention_forward:  # it calls attention by its module-level name, out of our sight
            plain, F.scaled_dot_product_attention = F.scaled_dot_product_attention, self.attention
            try:
                return func(*args, **kwargs)
            finally:
                F.scaled_dot_product_attention = plain
        return func(*args, **kwargs)

    @staticmethod
    def available() -> bool:
        """Whether this torch runs the CPU's flash attention kernel on meta tensors (torch 2.5 on)."""
        from cnncost.compat import runs_on_meta
        return runs_on_meta("_scaled_dot_product_flash_attention_for_cpu")

    @staticmethod
    def attention(*args, **kwargs):
        """scaled_dot_product_attention as flash attention where it can run so, else as it is."""
        from cnncost.trace.ops.registry import schema_signature
        bound = schema_signature("scaled_dot_product_attention").bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        if a["dropout_p"] or a["enable_gqa"] or not a["query"].is_meta or a["query"].dim() != 4:
            return SDPA(*args, **kwargs)
        out, _ = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            a["query"], a["key"], a["value"], 0.0, bool(a["is_causal"]), attn_mask=a["attn_mask"], scale=a["scale"])
        return out


SDPA = torch.nn.functional.scaled_dot_product_attention  # the builtin, kept before any call patches its name
