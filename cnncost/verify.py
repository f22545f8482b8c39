"""Verify a model: analytic spec vs our meta-device trace vs fvcore, ptflops and torch, per layer and per category.

Every tool's count is predicted from our traced rows by that tool's known conventions (the RULES below: what
it counts for each kind of layer, and why that differs from cnncost). A difference is explained when the
prediction equals what the tool reported; what is left is reported as 'unexplained'. A conv or linear layer
whose analytic MACs or parameters differ from the real model's trace is a mismatch (exit status 1), except
for paper variants (alexnet_paper, googlenet_paper, resnet50_v1), where the gap is the paper vs implementation.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

import pandas as pd

from cnncost.formulas import CATEGORIES, CORE
from cnncost.result import Result
from cnncost.trace.kinds import MODULE_KINDS

FLAGGED = "MISMATCH|unexplained|paper vs implementation"
TOOL_NAMES = {"fvcore": "fvcore", "ptflops": "ptflops", "ptflops-aten": "ptflops (aten)", "torch": "torch",
              "fvcore-activations": "fvcore (activations)", "thop": "thop", "deepspeed": "DeepSpeed",
              "deepspeed-flops": "DeepSpeed (FLOPs)"}


@dataclass(frozen=True)
class Rule:
    """How a tool counts one of our rows: factor x a quantity of the row; and, when that is not our MACs, why.

    `plain` is the factor for a layer without affine parameters (norms), where a tool counts those apart;
    `rank` limits the rule to inputs of that many spatial dims (the tool has a handle for that rank only;
    other ranks count 0)."""

    quantity: str = "macs"  # a key of QUANTITIES
    factor: int = 1
    cause: str = ""
    why: str = ""
    plain: int | None = None
    rank: int | None = None

    def count(self, row) -> int:
        """The tool's count for one traced row."""
        if self.rank is not None and len(shape_of(row.in_shape)) - 2 != self.rank:
            return 0
        factor = self.factor if self.plain is None or affine(row) else self.plain
        return factor * QUANTITIES[self.quantity](row)


def shape_of(shape_text: str) -> tuple[int, ...]:
    """A shape written 1x64x56x56 as a tuple (() for none)."""
    return tuple(int(s) for s in shape_text.split("x")) if shape_text else ()


def elements(shape_text: str) -> int:
    """Elements of a shape written 1x64x56x56 (0 for none)."""
    return math.prod(shape_of(shape_text)) if shape_text else 0


def affine(row) -> bool:
    """Whether a norm row has weights: its formula reads them besides its input, so it reads more bytes than it
    writes exactly when it has them (functional weights included, which are no parameters of the model)."""
    return row.bytes_read > row.bytes_written


def folded(row) -> bool:
    """A norm row folded to one MAC per element (inference batch norm), not computing batch statistics."""
    return row.macs == row.activations


def read_elements(row) -> int:
    """The elements a row's ops read, every op of a merged row included (bytes read over bytes per element; for
    layers without parameters: pools)."""
    per_element = row.bytes_written // row.activations if row.activations else 1
    return row.bytes_read // max(per_element, 1)


# What a rule counts, from one traced row.
QUANTITIES = {
    "macs": lambda r: r.macs,
    "macs+bias": lambda r: r.macs + r.bias_adds,
    "flops+bias": lambda r: 2 * r.macs + r.bias_adds,  # FLOPs = 2 x MACs, plus one add per bias add
    "out": lambda r: r.activations,
    "in": read_elements,  # input elements (of a pool: no parameters among the bytes it reads)
    "folded x2": lambda r: r.macs * (2 if affine(r) and folded(r) else 1),
    # ptflops's MultiheadAttention hook on the attention row: the two products, the query scaling (one op per
    # query element = the output's elements) and one op per softmax element (B H Lq Lk = MACs / (E + Ev))
    "ptflops mha": lambda r: r.macs + r.activations + r.macs // (shape_of(r.in_shape)[-1]
                                                                 + shape_of(r.out_shape)[-1]),
    "zero": lambda r: 0,
}


def not_counted(tool: str, what: str = "") -> dict[str, Rule]:
    """Rules for a tool that skips every non-core category."""
    label = {"norm": "normalization", "activation": "activations", "pool": "pooling and resampling",
             "elementwise": "elementwise ops", "other": "losses and other ops"}
    return {f"*{c}": Rule("zero", 0, f"{label[c]} not counted", what or f"{tool} has no count for {label[c]}")
            for c in label}


def skipped(cause: str, why: str) -> Rule:
    """A tool that counts nothing for this kind."""
    return Rule("zero", 0, cause, why)


SAME = Rule()
FVCORE_SKIPS = "fvcore has no handle for aten::{} and skips it (it lists it among unsupported ops)"
BIAS = Rule("macs+bias", 1, "bias adds", "counts the bias adds with the conv/linear (cnncost: bias_adds column)")
DOUBLE = ("ptflops counts nn.{module} in its module hook and again in its patch of F.{fn}, which nn.{module} "
          "calls")
FOLDED_X2 = ("counts inference batch norm with weights as 2 ops per element (scale, then shift), without as 1; "
             "cnncost books 1 MAC (it folds into one multiply-add); with batch statistics both count 4 per "
             "element, +1 with weights")
ATTENTION_NOT_PATCHED = "{} does not patch F.scaled_dot_product_attention (nor the kernels it runs)"
MEAN = ("a mean over every spatial dim is a global average pool to cnncost (the op F.adaptive_avg_pool2d(x, 1) "
        "runs as) but {}")
PTFLOPS_MHA = ("ptflops's nn.MultiheadAttention hook counts the projections with their bias adds, both products, one "
               "op per softmax element and one per query element (its scaling)")
PTFLOPS_BN = ("ptflops's bn hook (BatchNorm, InstanceNorm, GroupNorm, LayerNorm) counts {} per input element "
              "whatever the mode")
# The rules, read from each tool's source: fvcore/nn/flop_count.py (_DEFAULT_SUPPORTED_OPS) and jit_handles.py;
# fvcore/nn/activation_count.py; ptflops/pytorch_ops.py (MODULES_MAPPING, FUNCTIONAL_MAPPING, TENSOR_OPS_MAPPING)
# and aten_ops.py; torch/utils/flop_counter.py (its registry); thop/profile.py and vision/basic_hooks.py;
# deepspeed/profiling/flops_profiler/profiler.py. A key is a kind, a kind prefix ending in '*' (every rank:
# 'conv*' is conv1d/2d/3d), either with '@hooked' when the row is the call of a module class the tool hooks
# (MODULE_KINDS); a kind in a module class ('linear@MultiheadAttention'); '*@attention' for attention's scaling
# and softmax; or '*category'. The most specific key wins (rule_keys).
THOP_NORM = Rule("out", 4, "norm counted as 4 per element", "thop's count_normalization: 2 ops per element, "
                 "x2 with weights", plain=2)
RULES: dict[str, dict[str, Rule]] = {
    "fvcore": {
        **{f"linear@{rnn}": skipped("recurrent layer not counted", FVCORE_SKIPS.format("lstm/gru/rnn_tanh/rnn_relu"))
           for rnn in ("LSTM", "GRU", "RNN")},  # their products run inside one aten::lstm / gru / rnn_* op
        "batchnorm*": Rule("folded x2", 1, "batch norm counted x2", "fvcore's batchnorm_flop_jit " + FOLDED_X2),
        "lrn": skipped("local response norm not counted", FVCORE_SKIPS.format("pow/avg_pool3d/div (LRN's ops)")),
        "adaptive_avgpool2d": Rule("in", 1, "pooling counted", "fvcore counts adaptive average pooling as 1 op "
                                   "per input element"),
        "adaptive_avgpool2d:aten.mean": skipped("mean not counted", MEAN.format(FVCORE_SKIPS.format("mean"))),
        "upsample_nearest": Rule("out", 1, "upsampling counted", "fvcore counts upsample_nearest2d as 1 op per "
                                 "output element; it has no handle for 1-d or 3-d", rank=2),
        "upsample_bilinear": Rule("out", 4, "upsampling counted", "fvcore counts upsample_bilinear2d as 4 ops "
                                  "per output element", rank=2),
        "grid_sample": Rule("out", 4, "grid sampling counted as 4 per output", "fvcore counts aten::grid_sampler "
                            "as 4 ops per output element, whatever the mode (cnncost: output elements x taps)"),
        "relu": skipped("activations not counted", "fvcore lists relu among its free ops"),
        "attention": skipped("attention not counted", FVCORE_SKIPS.format("scaled_dot_product_attention")),
        "*activation": skipped("activations not counted", FVCORE_SKIPS.format("silu/sigmoid/softmax/...")),
        "*pool": skipped("pooling not counted", FVCORE_SKIPS.format("max_pool2d/avg_pool2d/upsample_*")),
        "*elementwise": skipped("elementwise ops not counted", FVCORE_SKIPS.format("add/mul/sub/div/...")),
        "*other": skipped("losses and other ops not counted", FVCORE_SKIPS.format("nll_loss/...")),
    },
    "fvcore-activations": {
        **{f"linear@{rnn}": skipped("recurrent layer not counted", "fvcore's activation count has no handle for "
                                    "aten::lstm/gru/rnn_*") for rnn in ("LSTM", "GRU", "RNN")},  #
        **dict.fromkeys(("conv*", "linear"), Rule("out", 1, "output elements", "fvcore's activation count is the "
                                                  "output elements of each conv and matrix multiply")),
        "attention": skipped("attention not counted", "fvcore's activation count has no handle for "
                             "scaled_dot_product_attention"),
        **not_counted("fvcore-activations", "fvcore's activation count covers convs and matrix multiplies "
                      "only"),
    },
    "ptflops": {
        **not_counted("ptflops"),
        "conv*@hooked": BIAS, "conv_transpose*@hooked": BIAS, "linear@hooked": BIAS,
        "conv*": skipped("conv not hooked", "ptflops counts a convolution only in its hook of the exact classes "
                         "nn.Conv1d/2d/3d and nn.ConvTranspose1d/2d/3d: not F.conv*, not a subclass (torchvision's "
                         "Conv3DSimple)"),
        "attention@hooked": Rule("ptflops mha", 1, "attention counted by its module hook", PTFLOPS_MHA),
        "linear@MultiheadAttention": Rule("macs+bias", 1, "bias adds", PTFLOPS_MHA),
        "in_proj_bias": Rule("macs+bias", 1, "bias adds", PTFLOPS_MHA),  # see formulas.multi_head_attention
        # nn.TransformerEncoderLayer / DecoderLayer keep F.relu / F.gelu as an attribute taken when built,
        # before ptflops patches torch.nn.functional: the call escapes its patch
        **{f"{act}@{layer}": skipped("stored activation not patched", "nn.Transformer{}Layer calls the F.{} it "
                                     "stored when built, not ptflops's patched one".format(layer[11:-5], act))
           for act in ("relu", "gelu") for layer in ("TransformerEncoderLayer", "TransformerDecoderLayer")},
        "softmax@MultiheadAttention": skipped("in the attention hook's count", PTFLOPS_MHA),
        "mul@MultiheadAttention": skipped("scores not scaled", PTFLOPS_MHA + "; it scales the query instead of "
                                          "the scores"),
        "attention": skipped("attention not counted", ATTENTION_NOT_PATCHED.format("ptflops")),
        "*@attention": skipped("attention not counted", ATTENTION_NOT_PATCHED.format("ptflops")),
        "linear@patched": Rule("macs+bias", 1, "bias adds", "ptflops patches torch.matmul/mm/bmm/addmm/baddbmm "
                               "and Tensor.matmul/mm/bmm/addmm by name (addmm with the added matrix)"),
        "linear": skipped("functional linear not counted", "ptflops does not patch F.linear (nor the @ "
                          "operator)"),
        "batchnorm*@hooked": Rule("out", 2, "batch norm counted x2", PTFLOPS_BN.format("2 ops (1 without "
                                  "weights)"), plain=1),
        "group_norm@hooked": Rule("out", 2, "norm counted as 2 per element", PTFLOPS_BN.format("2 ops (1 "
                                  "without weights)"), plain=1),
        "instance_norm@hooked": Rule("out", 2, "norm counted as 2 per element", PTFLOPS_BN.format("2 ops (1 "
                                     "without weights)"), plain=1),
        "layer_norm@hooked": Rule("out", 1, "norm counted as 1 per element", PTFLOPS_BN.format(
            "1 op (it looks for module.affine, which nn.LayerNorm does not have)")),
        "relu@hooked": Rule("out", 2, "double counting", DOUBLE.format(module="ReLU", fn="relu")),
        "gelu@hooked": Rule("out", 2, "double counting", DOUBLE.format(module="GELU", fn="gelu")),
        "elu@hooked": Rule("out", 2, "double counting", DOUBLE.format(module="ELU", fn="elu")),
        "prelu@hooked": Rule("out", 2, "double counting", DOUBLE.format(module="PReLU", fn="prelu")),
        "leaky_relu@hooked": Rule("out", 1, "activations counted", "ptflops counts nn.LeakyReLU as 1 op per "
                                  "element (F.leaky_relu is not patched)"),
        "relu": Rule("out"), "gelu": Rule("out"), "relu6": Rule("out"), "silu": Rule("out"), "elu": Rule("out"),
        "prelu": Rule("out"),
        "softmax": Rule("out", 1, "softmax counted", "ptflops's F.softmax patch counts 1 op per element"),
        "maxpool*@hooked": Rule("in", 2, "double counting", DOUBLE.format(module="MaxPool", fn="max_pool")
                                + ", each as the input elements"),
        "avgpool*@hooked": Rule("in", 2, "double counting", DOUBLE.format(module="AvgPool", fn="avg_pool")
                                + ", each as the input elements"),
        "adaptive_avgpool*@hooked": Rule("in", 2, "double counting", DOUBLE.format(
            module="AdaptiveAvgPool", fn="adaptive_avg_pool") + ", each as the input elements"),
        "adaptive_maxpool*@hooked": Rule("in", 2, "double counting", DOUBLE.format(
            module="AdaptiveMaxPool", fn="adaptive_max_pool") + ", each as the input elements"),
        "upsample*@hooked": Rule("out", 2, "double counting", DOUBLE.format(module="Upsample", fn="interpolate")
                                 + ", each as the output elements"),
        "upsample*": Rule("out", 1, "upsampling counted per output", "ptflops's F.interpolate patch counts 1 op "
                          "per output element (cnncost: output elements x taps)"),
        "adaptive_avgpool2d:aten.mean": skipped("mean not counted", MEAN.format("ptflops does not patch "
                                                                                "Tensor.mean")),
        "adaptive_avgpool3d:aten.mean": skipped("mean not counted", MEAN.format("ptflops does not patch "
                                                                                "Tensor.mean")),
        "grid_sample": skipped("grid sampling not counted", "ptflops does not patch F.grid_sample"),
        "roi_align": skipped("roi align not counted", "ptflops does not hook torchvision's roi_align"),
        "*pool": Rule("in", 1, "pooling counted as input", "ptflops counts a functional pool as its input "
                      "elements (cnncost: output elements x window)"),
        "*activation": skipped("activations not counted", "ptflops has no hook or patch for "
                               "sigmoid/hardswish/hardsigmoid/tanh/log_softmax/..."),
        "*elementwise": skipped("elementwise ops not counted", "ptflops patches torch.add / Tensor.add and "
                                "torch.mul / Tensor.mul, not the + and * operators"),
    },
    "ptflops-aten": {"conv*": BIAS, "linear": BIAS,
                     "in_proj_bias": skipped("in-projection bias as an add", "a batch_first query of batch > 1 "
                                             "reaches nn.MultiheadAttention's in-projection transposed: aten.linear "
                                             "runs as mm + add there, and ptflops's aten backend counts mm, not add"),
                     "attention": Rule("macs", 1, "", "on the meta device, where verify runs it, attention runs "
                                       "as its math decomposition, whose bmm's ptflops counts"),
                     **not_counted("ptflops-aten", "ptflops's aten backend counts only convolutions and matrix "
                                   "multiplies (mm, matmul, addmm with its bias, bmm)")},
    "torch": not_counted("torch", "torch's counter counts only convolutions, matrix multiplies and attention"),
    "thop": {
        **not_counted("thop", "thop counts only the modules it hooks"),
        "conv*": skipped("conv not hooked", "thop counts only the modules it hooks (exact classes)"),
        "linear": skipped("linear not hooked", "thop counts only the modules it hooks (exact classes)"),
        "conv*@hooked": SAME, "linear@hooked": SAME, "attention": skipped("attention not counted", "thop counts "
                                                                          "modules only"),
        **dict.fromkeys(["batchnorm*@hooked", "layer_norm@hooked", "instance_norm@hooked"], THOP_NORM),
        "avgpool*@hooked": Rule("out", 1, "pooling counted per output", "thop counts average pooling as 1 op "
                                "per output element"),
        "adaptive_avgpool*@hooked": Rule("in", 1, "pooling counted per input", "thop counts adaptive average "
                                         "pooling as (input / output size) adds per output element"),
    },
    "deepspeed": {**not_counted("deepspeed", "the DeepSpeed profiler's MACs are those of convolutions, matrix "
                                "multiplies and attention only")},
    "deepspeed-flops": {
        "conv*": Rule("flops+bias", 1, "FLOPs with bias adds", "DeepSpeed's FLOPs are 2 x MACs plus one add per "
                      "bias add"),
        "in_proj_bias": Rule("flops+bias", 1, "FLOPs with bias adds", "DeepSpeed's FLOPs are 2 x MACs plus one add "
                             "per bias add (its F.linear patch sees nn.MultiheadAttention's in-projection)"),  #
        "linear": Rule("flops+bias", 1, "FLOPs with bias adds", "DeepSpeed's FLOPs are 2 x MACs plus one add per "
                       "bias add (addmm/baddbmm: per output element)"),
        "attention": Rule("macs", 2, "FLOPs", "DeepSpeed counts F.scaled_dot_product_attention as 2 x the MACs "
                          "of its two matrix products"),
        "*@attention": skipped("attention's scaling and softmax not counted", "DeepSpeed counts only the two "
                               "products of F.scaled_dot_product_attention"),
        "batchnorm*": Rule("folded x2", 1, "batch norm counted x2", "DeepSpeed " + FOLDED_X2),
        **{a: Rule("out", 1, "activations counted", "DeepSpeed counts F.relu/prelu/elu/leaky_relu/relu6/silu/gelu "
                   "as 1 op per input element") for a in ("relu", "prelu", "elu", "leaky_relu", "relu6", "silu",
                                                            "gelu")},
        "softmax": Rule("out", 1, "softmax counted", "DeepSpeed counts F.softmax as 1 op per input element"),
        "upsample*": Rule("out", 1, "upsampling counted per output", "DeepSpeed counts F.interpolate as 1 op "
                          "per output element (with size=, only the spatial ones)"),
        "grid_sample": skipped("grid sampling not counted", "DeepSpeed does not patch F.grid_sample"),
        "roi_align": skipped("roi align not counted", "DeepSpeed does not patch torchvision's roi_align"),
        "*pool": Rule("in", 1, "pooling counted as input", "DeepSpeed counts a pool as its input elements"),
        "add": SAME, "mul": SAME,
        "*activation": skipped("activations not counted", "DeepSpeed does not patch tanh/sigmoid/hardswish/..."),
        "*elementwise": skipped("elementwise ops not counted", "DeepSpeed patches add and mul only"),
        "lrn": skipped("local response norm not counted", "DeepSpeed does not patch local_response_norm"),
        "*other": skipped("losses and other ops not counted", "DeepSpeed does not patch cross_entropy/..."),
    },
}
# nn.Bilinear (F.bilinear, aten._trilinear): no tool has a count for it (torch's counter no formula, fvcore no
# handle, ptflops / thop / DeepSpeed no hook or patch).
for _tool, _rules in RULES.items():
    for _kind in ("bilinear", "trilinear"):
        _rules.setdefault(_kind, skipped("bilinear not counted", f"{TOOL_NAMES.get(_tool, _tool)} has no count for "
                                         "nn.Bilinear (F.bilinear, aten._trilinear)"))

# One MAC in the tool's own unit where the tool reports FLOPs but its rules above count MACs (torch's counter;
# DeepSpeed's FLOPs have rules of their own, 'deepspeed-flops').
PER_MAC = {"torch": 2}


def rule(tool: str, row) -> Rule:
    """The tool's rule for a traced row: the first of its keys (rule_keys) that the tool has; else cnncost's own."""
    rules = RULES[tool]
    op = getattr(row, "op", "")
    keys = rule_keys(row.kind, row.category, hooked(row.module, row.kind), in_attention(row), row.module, op,
                     patched(op))
    for key in keys:
        if key in rules:
            return rules[key]
    return SAME


# A tool meant for meta runs on the CPU where the model's forward fails on meta (a tensor made on the CPU
# inside forward): there F.scaled_dot_product_attention runs as the fused _scaled_dot_product_flash_attention_for_cpu
# kernel, for which torch's counter has no formula and which ptflops's aten backend does not count, where torch
# picks that kernel for the query's shape (fused_on_cpu).
CPU_ATTENTION = ("on the CPU, F.scaled_dot_product_attention runs as aten._scaled_dot_product_flash_attention_for_cpu, "
                 "which {} does not count")
CPU_ATTENTION_TOOLS = {"torch": "torch's counter", "ptflops-aten": "ptflops's aten backend"}


def on_device(tool: str, device: str, row) -> Rule | None:
    """The rule for a row that depends on where the tool ran (None: the tool's usual rule)."""
    if device == "cpu" and tool in CPU_ATTENTION_TOOLS and row.kind == "attention" and in_attention(row) \
            and fused_on_cpu(row.in_shape):
        return skipped("fused CPU attention not counted", CPU_ATTENTION.format(CPU_ATTENTION_TOOLS[tool]))
    return None


def fused_on_cpu(in_shape: str) -> bool:
    """Whether torch runs attention of this query shape ('2x4x8') on the CPU as its fused kernel (torch 2.4 only
    for 4-d queries; where it does not, the bmm's it runs instead are counted as on meta)."""
    from cnncost.compat import cpu_attention_is_fused
    dims = tuple(int(d) for d in str(in_shape).split("x") if d.isdigit())
    return cpu_attention_is_fused(dims)


FAST_PATH = ("the tool's forward never called this module: its parent ran a fused kernel instead (on torch 2.4, "
             "nn.TransformerEncoderLayer in eval under no_grad runs aten._transformer_encoder_layer_fwd even with "
             "hooks attached, pytorch/pytorch#128413), so neither module hooks nor patched functions saw it")


def uncalled(row, not_called: tuple[str, ...]) -> Rule | None:
    """The rule for a row of a module (or a descendant of one) that the tool's own forward never called (a row
    by the module call it belongs to: a composite's out_proj part is its attention call's)."""
    name = getattr(row, "call", row.name)
    if not_called and any(name == n or name.startswith(n + ".") for n in not_called):
        return skipped("module not called (fused fast path)", FAST_PATH)
    return None


def hooked(module: str, kind: str) -> bool:
    """Whether a row is the call of a module class that module-hooking tools count by class (MODULE_KINDS)."""
    hooked_kind = MODULE_KINDS.get(module)  # 'upsample' (nn.Upsample) stands for every upsample_<mode>
    return hooked_kind is not None and (kind == hooked_kind or kind.startswith(hooked_kind + "_"))


def patched(op: str) -> bool:
    """Whether a row's ops ran inside torch.matmul/mm/bmm/addmm/baddbmm or Tensor.matmul/mm/bmm/addmm (the tracer
    names the function in the op column: counter.ORIGINS), which function-patching tools see."""
    return any(token.startswith(("torch.", "Tensor.")) for token in op.split())


def in_attention(row) -> bool:
    """A row booked for an attention call (scaled_dot_product_attention, multi_head_attention_forward)."""
    op = getattr(row, "op", "")
    return "scaled_dot_product" in op or "multi_head_attention" in op


@lru_cache(maxsize=None)
def rule_keys(kind: str, category: str, is_hooked: bool, attention: bool = False, module: str = "",
              op: str = "", is_patched: bool = False) -> tuple[str, ...]:
    """Rule keys from the most specific: the kind in a module class ('linear@MultiheadAttention'), as a module the
    tool hooks ('conv*@hooked'), as the op(s) it ran as ('adaptive_avgpool2d:aten.mean'), inside a torch function
    that tools patch ('linear@patched'), attention's scaling and softmax ('*@attention'), the kind, its prefixes
    ('conv_transpose*', 'conv*'), then '*category'."""
    names = (kind, *(kind[:i] + "*" for i in range(len(kind) - 1, 0, -1)))
    parts = ("*@attention",) if attention and category not in CORE else ()
    return (f"{kind}@{module}", *(f"{n}@hooked" for n in names if is_hooked), f"{kind}:{op}",
            *((f"{kind}@patched",) if is_patched else ()), *parts, *names, f"*{category}")


@dataclass
class Verification:
    """One model checked: the analytic, traced and tools' results, their joins, and the explained differences."""

    model: str
    input_shape: tuple
    analytic: Result | None
    trace: Result
    tools: dict[str, Result]
    errors: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    paper_note: str = ""
    aux_params: int = 0
    layers: pd.DataFrame | None = None
    totals: list[dict] = field(default_factory=list)
    causes: list[dict] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no conv or linear layer of the spec disagrees with the real model."""
        return not self.mismatches


# The parts a composite layer's rows are named by (attention's, an RNN's): module.part.
COMPOSITE_PARTS = frozenset({"q_proj", "k_proj", "v_proj", "q_proj_bias", "k_proj_bias", "v_proj_bias", "scale",
                             "mask", "softmax", "average", "out_proj", "cell"})


def call_names(table: pd.DataFrame) -> pd.Series:
    """Each row's module call: a composite layer's part rows (self_attn.q_proj) under the module that called it
    (self_attn), as other tools name its whole count."""
    ops = table["op"] if "op" in table else pd.Series("", index=table.index)
    parted = table.name.str.rpartition(".")
    composite = ops.str.contains("multi_head_attention|scaled_dot_product|F\\.(?:lstm|gru|rnn)", regex=True)
    strip = composite & parted[2].isin(COMPOSITE_PARTS)
    return table.name.where(~strip, parted[0].replace("", "(model)"))


def grouped(result: Result, column: str = "macs") -> pd.Series:
    """A column summed per (module call, category), calls of a reused module together."""
    rows = result.table[~result.table.kind.isin(["(unused)", "(params)"])] if column == "macs" else result.table
    return rows.groupby([call_names(rows), rows.category], sort=False)[column].sum()


def predicted(tool: str, trace: Result, device: str = "", not_called: Iterable[str] = ()) -> pd.DataFrame:
    """Per traced row: what the tool should count, and the cause when that differs from our MACs (a tool that ran
    on `device`, and whose forward never called the modules `not_called`)."""
    rows = trace.table[~trace.table.kind.isin(["(unused)"])]
    rows = rows.assign(call=call_names(rows))
    skipped_modules = tuple(not_called)
    rules = [uncalled(r, skipped_modules) or on_device(tool, device, r) or rule(tool, r) for r in rows.itertuples()]
    return pd.DataFrame({"name": rows.call.values, "category": rows.category.values, "macs": rows.macs.values,
                         "expected": [rl.count(r) for rl, r in zip(rules, rows.itertuples())],
                         "cause": [rl.cause for rl in rules], "why": [rl.why for rl in rules]})


def join_layers(v: Verification) -> pd.DataFrame:
    """One row per (layer name, category): MACs from every source side by side, and the cause of each difference."""
    columns = {"analytic_macs": grouped(v.analytic)} if v.analytic is not None else {}
    columns["trace_macs"] = grouped(v.trace)
    columns.update({column(tool): grouped(r) for tool, r in v.tools.items()})
    table = pd.concat(columns, axis=1).reset_index()
    traced = v.trace.table
    kinds = traced.groupby([call_names(traced), traced.category], sort=False).kind.agg(
        lambda k: "+".join(dict.fromkeys(k)))
    table.insert(2, "kind", [kinds.get((n, c), "") for n, c in zip(table.name, table.category)])
    for tool in v.tools:
        table = table.merge(expected_by_layer(tool, v.trace, v.tools[tool]), on=["name", "category"],
                            how="left")
    table["cause"] = [layer_cause(v, r) for r in table.to_dict("records")]
    keep = ["name", "category", "kind", *[c for c in table if c.endswith("_macs")], "cause"]
    return table[keep].astype({c: "Int64" for c in keep if c.endswith("_macs")})


def expected_by_layer(tool: str, trace: Result, result: Result) -> pd.DataFrame:
    """A tool's predicted count and causes per (name, category), for the tool's own result."""
    p = predicted(tool, trace, result.device, result.not_called)
    p["cause"] = p.cause.where(p.expected != p.macs, "")
    return p.groupby(["name", "category"], sort=False).agg(
        **{column(tool, "expected"): ("expected", "sum"),
           column(tool, "cause"): ("cause", lambda c: ", ".join(sorted(set(c) - {""})))}).reset_index()


def layer_cause(v: Verification, row: dict) -> str:
    """Why the sources disagree on one layer, tool by tool ('' when they all agree)."""
    ours = zero(row["trace_macs"])
    causes = []
    if v.analytic is not None and zero(row.get("analytic_macs")) != ours:
        causes.append("analytic: " + ("paper vs implementation" if v.paper_note else "MISMATCH"))
    for tool in v.tools:
        theirs = zero(row[column(tool)])
        if theirs == ours:
            continue
        explained = theirs == zero(row[column(tool, "expected")]) and row[column(tool, "cause")]
        causes.append(f"{tool}: {row[column(tool, 'cause')] if explained else 'unexplained'}")
    return "; ".join(causes)


def column(tool: str, what: str = "macs") -> str:
    """A tool's column in the layer join: ptflops-aten -> ptflops_aten_macs."""
    return f"{tool.replace('-', '_')}_{what}"


def zero(value) -> int:
    """A count, missing as 0."""
    return 0 if value is None or pd.isna(value) else int(value)


def category_totals(result: Result) -> dict[str, int]:
    """MACs per category of a result (ignoring rows that are not ops)."""
    return {c: int(v) for c, v in grouped(result).groupby(level="category").sum().items()}


def totals_rows(v: Verification) -> list[dict]:
    """Per-category MACs side by side: analytic, our trace, each tool, torchvision's metadata."""
    sources = ([("analytic", v.analytic)] if v.analytic is not None else []) + [("cnncost trace", v.trace)]
    sources += [(TOOL_NAMES[t], r) for t, r in v.tools.items()]
    rows = []
    for label, result in sources:
        cats = category_totals(result)
        row = {"source": label, "reported": reported(result)}
        row.update({f"{c}_macs": cats.get(c, 0) for c in CATEGORIES})
        row.update(total_macs=sum(cats.values()), core_macs=sum(cats.get(c, 0) for c in CORE),
                   params=result.total("params") if result.source in ("analytic", "cnncost trace", "fvcore") else None)
        rows.append(row)
    if v.meta:
        rows.append({**dict.fromkeys(rows[0]), "source": "torchvision metadata",
                     "reported": f"{v.meta.get('_ops', '?')} GMACs (_ops)", "params": v.meta.get("num_params")})
    return rows


def reported(result: Result) -> str:
    """A result's total in its tool's own unit."""
    total = result.total()
    if result.convention.startswith("FLOPs"):
        return f"{2 * total:,} FLOPs"
    return f"{total:,} MACs"


def tool_causes(tool: str, v: Verification) -> list[dict]:
    """A tool's total as ours plus named differences, per category; any remainder is 'unexplained'."""
    p = predicted(tool, v.trace, v.tools[tool].device, v.tools[tool].not_called)
    p["difference"] = p.expected - p.macs
    named = p[p.difference != 0].groupby(["category", "cause", "why"], sort=False).difference.sum().reset_index()
    rows = [{"source": TOOL_NAMES[tool], **r} for r in named.to_dict("records")]
    theirs, ours = category_totals(v.tools[tool]), category_totals(v.trace)
    for c in CATEGORIES:
        rest = theirs.get(c, 0) - ours.get(c, 0) - int(named.loc[named.category == c, "difference"].sum())
        if rest:
            rows.append({"source": TOOL_NAMES[tool], "category": c, "cause": "unexplained", "difference": rest,
                         "why": f"{tool} counts {theirs.get(c, 0):,}; cnncost's rules for {tool} predict "
                                f"{theirs.get(c, 0) - rest:,}" + no_formula(v.trace)})
    if tool == "ptflops" and v.input_shape[0] > 1:
        rows.append(ptflops_batch_cause(v.tools[tool], v.input_shape[0]))
    if v.tools[tool].convention.startswith("FLOPs"):
        total = v.tools[tool].total()
        rows.append({"source": TOOL_NAMES[tool], "category": "all", "cause": "MAC vs FLOP", "difference": None,
                     "why": f"{tool} reports FLOPs = 2 x MACs: {2 * total:,} FLOPs = 2 x {total:,} MACs "
                            "(converted to the unit of every other row)"})
    return rows


def ptflops_batch_cause(result: Result, batch: int) -> dict:
    """ptflops's own total at batch > 1 divides its module hooks' counts by the batch, not its patches' counts."""
    hooked = int(result.table.loc[result.table.op.str.startswith("nn."), "macs"].sum())
    own = int(hooked / batch + (result.total() - hooked))
    return {"source": TOOL_NAMES["ptflops"], "category": "all", "cause": "per-image average", "difference": None,
            "why": f"ptflops itself reports {own:,} at batch {batch}: it divides its module hooks' counts by the "
                   "batch size (per image) but not those of its F.* / torch.* patches; shown here for the batch"}


def no_formula(trace: Result) -> str:
    """A hint when our trace has ops without a formula (their cost is in no category of ours)."""
    ops = ", ".join(f"{op} x{n}" for op, n in trace.unsupported.items())
    return f"; cnncost has no formula for {ops}" if ops else ""


def spec_causes(v: Verification) -> list[dict]:
    """Analytic vs trace per category: paper vs implementation for paper variants, else a spec mismatch."""
    ours, spec = category_totals(v.trace), category_totals(v.analytic)
    cause = "paper vs implementation" if v.paper_note else "spec differs from model"
    return [{"source": "analytic", "category": c, "cause": cause, "difference": spec.get(c, 0) - ours.get(c, 0),
             "why": v.paper_note or "the analytic spec and the real model's trace disagree"}
            for c in CATEGORIES if spec.get(c, 0) != ours.get(c, 0)]


def meta_causes(v: Verification) -> list[dict]:
    """torchvision's metadata: _ops is conv + linear MACs in G, rounded; num_params leaves out auxiliary heads."""
    rows, core = [], v.trace.core_macs
    if "_ops" in v.meta:
        published = round(v.meta["_ops"] * 1e9)
        agree = round(core / 1e9, 3) == round(v.meta["_ops"], 3)
        rows.append({"source": "torchvision metadata", "category": "all", "cause": "conv + linear only",
                     "difference": core - v.trace.total(),
                     "why": "torchvision's _ops counts conv and linear MACs only, no bias adds"})
        rows.append({"source": "torchvision metadata", "category": "all",
                     "cause": "rounded" if agree else "unexplained", "difference": published - core,
                     "why": f"_ops = {v.meta['_ops']} GMACs is cnncost's conv + linear {core:,} MACs rounded to "
                            "3 decimals" if agree else f"_ops = {v.meta['_ops']} GMACs does not round from "
                            f"cnncost's conv + linear {core:,} MACs"})
    if "num_params" in v.meta and v.meta["num_params"] != v.trace.total("params"):
        gap = v.meta["num_params"] - v.trace.total("params")
        aux = v.aux_params and abs(gap) == v.aux_params
        side = "includes" if gap > 0 else "leaves out"
        rows.append({"source": "torchvision metadata", "category": "params",
                     "cause": "auxiliary heads" if aux else "unexplained", "difference": gap,
                     "why": f"num_params {v.meta['num_params']:,} {side} the {v.aux_params:,} parameters of the "
                            "auxiliary heads (--aux toggles them here; they run only in training)" if aux
                            else "parameter counts differ"})
    return rows


def core_mismatches(v: Verification) -> list[str]:
    """Conv/linear layers whose analytic MACs or parameters differ from the trace (paper variants excepted)."""
    if v.analytic is None or v.paper_note:
        return []
    out = []
    for what in ("macs", "params"):
        spec, ours = grouped(v.analytic, what), grouped(v.trace, what)
        both = pd.concat({"spec": spec, "trace": ours}, axis=1).fillna(0)
        both = both[both.index.get_level_values("category").isin(CORE) & (both.spec != both.trace)]
        out += [f"{name} ({cat}): {what} analytic {int(r.spec):,} vs traced {int(r.trace):,}"
                for (name, cat), r in both.iterrows()]
    return out


def verify_model(name, size: int | None = None, batch: int | None = None, tools: tuple[str, ...] | None = None,
                 aux: bool | None = False, strict: bool = False, dtype: str = "fp32", kwargs: dict | None = None,
                 shapes: list | None = None, aux_given: bool = False) -> Verification:
    """Trace a model (a name, or a ModelSource with its options already in it), run the tools, join everything
    with the analytic spec and explain every difference. aux None: as torchvision's metadata counts the heads
    (aux_given: the user asked for --aux / --no-aux, refused on a model without heads); shapes: (shape, dtype
    name) of each input (--input)."""
    from cnncost.specs import MODELS, build
    from cnncost.trace.adapters import TOOLS, run_tools
    from cnncost.trace.counter import count_source
    from cnncost.trace.models import check_aux, load

    source = load(name, aux, kwargs, shapes=shapes or ()) if isinstance(name, str) else name
    if aux_given:
        check_aux(source, aux)
    traced = count_source(source, batch, size, strict=strict, dtype=dtype)
    analytic = Result.from_spec(build(source.spec, batch, size), dtype) if source.spec else None
    results, errors = run_tools(source, TOOLS if tools is None else tools, batch, size)
    v = Verification(source.name, traced.input_shape, analytic, traced, results, errors,
                     metadata(source, batch, size))
    v.aux_params = aux_parameters(source) if v.meta else 0
    if source.paper_variant:
        v.paper_note = MODELS[source.spec].paper.get("note") or f"{source.spec} follows its paper; the real " \
            f"model is {source.implementation}"
    v.layers = join_layers(v)
    v.totals = totals_rows(v)
    v.causes = (spec_causes(v) if analytic is not None else []) + [c for t in results for c in tool_causes(t, v)]
    v.causes += meta_causes(v)
    v.mismatches = core_mismatches(v)
    return v


def aux_parameters(source) -> int:
    """Parameters of a torchvision model's auxiliary heads (GoogLeNet, Inception-v3); 0 for other models."""
    from cnncost.trace.models import AUX_MODELS, torchvision_model
    tv = source.implementation.removeprefix("torchvision.models.")
    if tv not in AUX_MODELS:
        return 0
    with_aux, without = (torchvision_model(tv, aux).build("meta") for aux in (True, False))
    return sum(p.numel() for p in with_aux.parameters()) - sum(p.numel() for p in without.parameters())


def metadata(source, batch: int | None, size: int | None) -> dict:
    """torchvision's published num_params and _ops, when the model is torchvision's own at batch 1 and its size."""
    from cnncost.trace.models import torchvision_meta
    tv = source.implementation.removeprefix("torchvision.models.")
    if source.paper_variant or tv == source.implementation or batch not in (None, 1) or size not in (None, source.resolution):
        return {}
    return torchvision_meta(tv)


# -- views for the command line: JSON data and tables --------------------------------------------------------


def summary_row(v: Verification) -> dict:
    """One line per model: status and each source's total."""
    status = "ok" if v.ok else f"MISMATCH ({len(v.mismatches)})"
    row = {"model": v.model, "input_shape": "x".join(map(str, v.input_shape)),
           "status": "paper variant" if v.paper_note else status}
    row.update({f"{t['source'].replace(' ', '_').replace('(', '').replace(')', '')}_macs": t.get("total_macs")
                for t in v.totals if t["source"] != "torchvision metadata"})
    row["unexplained"] = sum(c["cause"] == "unexplained" for c in v.causes)
    return row


def shown_layers(v: Verification, which: str) -> pd.DataFrame:
    """The layer join to show: all rows, or only those with a mismatch or an unexplained difference."""
    if which == "all":
        return v.layers
    flagged = v.layers[v.layers.cause.str.contains(FLAGGED)].copy()
    flagged["cause"] = flagged.cause.map(lambda c: "; ".join(p for p in c.split("; ") if re.search(FLAGGED, p)))
    return flagged


def transposed(totals: list[dict], unit) -> list[dict]:
    """Totals turned for reading: one row per quantity, one column per source, exact numbers with separators."""
    keys = [k for k in totals[0] if k != "source"]
    return [{"quantity": k.removesuffix(f"_{unit.name}") + (f" ({unit.label})" if k.endswith(unit.name) else ""),
             **{t["source"]: f"{t[k]:,}" if isinstance(t[k], int) else t[k] or "" for t in totals}} for k in keys]


def records(frame_: pd.DataFrame) -> list[dict]:
    """DataFrame rows as plain dicts: exact ints, missing values as None."""
    return [{k: (None if v is pd.NA or (isinstance(v, float) and pd.isna(v)) else
                 int(v) if hasattr(v, "item") and isinstance(v.item(), int) else v) for k, v in r.items()}
            for r in frame_.astype(object).to_dict("records")]


def causes_rows(v: Verification) -> list[dict]:
    """The causes with the difference's unit in its name."""
    return [{"source": c["source"], "category": c["category"], "cause": c["cause"],
             "difference_macs": c["difference"], "why": c["why"]} for c in v.causes]


def report_data(results: list[Verification], unit) -> dict:
    """Everything verify found, for JSON: exact integers, units in field names."""
    from cnncost.output import in_unit
    models = [{"model": v.model, "input_shape": list(v.input_shape), "ok": v.ok,
               "paper_variant": bool(v.paper_note), "mismatches": v.mismatches,
               "totals": in_unit(v.totals, unit), "causes": in_unit(causes_rows(v), unit),
               "layers": in_unit(records(v.layers), unit),
               "unsupported": {"cnncost trace": v.trace.unsupported,
                               **{t: r.unsupported for t, r in v.tools.items() if r.unsupported}},
               "errors": v.errors, "notes": v.trace.notes} for v in results]
    return {"unit": unit.name, "ok": all(v.ok for v in results), "models": models}


def report_tables(results: list[Verification], unit, fmt: str, layers: str = "diff") -> dict[str, list[dict]]:
    """Tables to print: CSV gets the per-layer join of every model; table/md get totals, causes, flagged layers."""
    from cnncost.output import in_unit

    def blank(rows: list[dict]) -> list[dict]:
        return [{k: "" if v is None else v for k, v in r.items()} for r in rows]

    if fmt == "csv":
        return {"layers": in_unit([{"model": v.model, **r} for v in results for r in records(v.layers)], unit)}
    tables = {}
    if len(results) > 1:
        tables[f"Summary (totals in {unit.label}; torch halved to MACs)"] = blank(
            in_unit([summary_row(v) for v in results], unit))
    for v in results:
        shape = "x".join(map(str, v.input_shape))
        tables[f"{v.model} on {shape}: {unit.label} by category (rows) for each source (columns)"] = \
            transposed(in_unit(v.totals, unit), unit)
        tables[f"{v.model}: every difference from cnncost's trace, with its cause"] = blank(
            in_unit(causes_rows(v), unit) or [{"cause": "no differences"}])
        if layers != "none":
            rows = records(shown_layers(v, layers))
            tables[f"{v.model}: layers ({layers})"] = blank(in_unit(rows, unit)) or [
                {"layers": f"all {len(v.layers)} layers agree, or differ only by the causes above"}]
    return tables
