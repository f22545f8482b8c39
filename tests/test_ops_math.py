"""Activations, elementwise ops, reductions, matrix products, attention and data movement: formulas derived by
hand, matrix products and attention against torch's FlopCounterMode, the fused attention kernels called directly
on meta, the same rows on meta and on the CPU, and real transformer models."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from modules import Lambda
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from cnncost import compat
from cnncost.formulas import BINARY, POINTWISE_ACTIVATIONS, REDUCTIONS, UNARY, cost
from cnncost.result import COLUMNS
from cnncost.trace.counter import count_module, count_source
from cnncost.trace.kinds import category
from cnncost.trace.models import load
from cnncost.trace.ops import layer_of




def traced(f, *inputs, device: str = "meta", module: nn.Module | None = None):
    """Our trace of f(*inputs) (or of a module) with the inputs (shapes or tensors) on a device."""
    inputs = tuple(x.to(device) if isinstance(x, torch.Tensor) else torch.randn(*x, device=device) for x in inputs)
    return count_module(module or Lambda(f), inputs, "ops")


def torch_macs(f, *shapes) -> int:
    """torch's FlopCounterMode count of f on meta tensors, as MACs (its FLOPs / 2)."""
    inputs = [torch.empty(*s, device="meta") for s in shapes]
    with FlopCounterMode(display=False) as mode:
        f(*inputs)
    return mode.get_total_flops() // 2


# -- formulas, derived by hand ----------------------------------------------------------------------------------


def test_softmax_is_three_ops_per_element():
    c = cost("softmax", (2, 3, 4))
    assert c.macs == 3 * 24 and c.category == "activation"  # exp + sum + divide on 24 elements: 72
    assert cost("log_softmax", (2, 3, 4)).macs == 72


@pytest.mark.parametrize("kind", POINTWISE_ACTIVATIONS)
def test_pointwise_activations_are_one_op_per_element(kind):
    c = cost(kind, (2, 3, 4, 4))
    assert (c.macs, c.out_shape, c.category) == (2 * 3 * 4 * 4, (2, 3, 4, 4), "activation")  # 96


def test_prelu_has_its_slopes_as_parameters():
    c = cost("prelu", (2, 3, 4, 4), num_parameters=3)
    assert (c.macs, c.params) == (96, 3)
    assert c.bytes_read() == (96 + 3) * 4


def test_elementwise_ops():
    assert cost("sub", (2, 3, 4), other=(3, 4)).macs == 24  # broadcast to 2x3x4: 24 subtractions
    assert cost("div", (3, 1), other=(1, 4)).out_shape == (3, 4)
    assert cost("pow", (5, 6), other=(1,)).macs == 30  # x ** 2: one op per element
    assert cost("rsqrt", (5, 6)).macs == 30
    where = cost("where", (1, 4), other=(3, 1), condition=(3, 4))
    assert (where.macs, where.input_elements) == (12, 4 + 3 + 12)  # one select per output element
    assert cost("addcmul", (2, 5), others=[(2, 5), (5,)]).macs == 2 * 10  # x + v * a * b: 2 ops per element


def test_reductions():
    assert cost("sum", (2, 3, 4, 5), dims=[1]).out_shape == (2, 4, 5)
    assert cost("mean", (2, 3, 4, 5), dims=[-1], keepdim=True).out_shape == (2, 3, 4, 1)
    assert cost("amax", (2, 3, 4, 5)).out_shape == (1,)  # every dim
    assert cost("sum", (2, 3, 4, 5), dims=[1]).macs == 120  # one add per input element
    assert cost("var", (2, 3, 4, 5), dims=[2, 3]).macs == 4 * 120  # mean, subtract, square, accumulate: 480
    assert cost("std", (2, 3, 4, 5), dims=[2, 3]).macs == 4 * 120 + 6  # + one sqrt per output (2x3)
    assert cost("vector_norm", (2, 3, 4, 5), dims=[1]).macs == 2 * 120 + 40  # |x|^2 and add, + a root per 2x4x5


def test_sort_and_topk():
    assert cost("sort", (2, 8)).macs == 16 * 3  # 8 = 2^3: 3 comparisons per element
    topk = cost("topk", (2, 8), k=3)
    assert (topk.macs, topk.out_shape) == (16 * 2, (2, 3))  # a heap of 3: ceil(log2 3) = 2 per element


def test_attention_is_two_matrix_products():
    c = cost("attention", (2, 4, 8, 16), key=(2, 4, 10, 16), value=(2, 4, 10, 32))
    assert c.macs == 2 * 4 * 8 * 10 * 16 + 2 * 4 * 8 * 10 * 32  # Q K^T 10,240 + scores V 20,480 = 30,720
    assert (c.category, c.out_shape) == ("linear", (2, 4, 8, 32))


def test_scaled_dot_product_attention_parts():
    c = cost("scaled_dot_product_attention", (2, 4, 8, 16), key=(2, 4, 10, 16), value=(2, 4, 10, 16),
             mask=(8, 10))
    parts = {name: p for name, p in c.parts}
    scores = 2 * 4 * 8 * 10  # 640 scores
    assert parts[""].macs == 2 * scores * 16  # 20,480 (linear)
    assert (parts["scale"].macs, parts["mask"].macs, parts["softmax"].macs) == (scores, scores, 3 * scores)
    assert c.macs == 20_480 + 640 + 640 + 1_920


def test_multi_head_attention_formula():
    c = cost("multi_head_attention", (5, 2, 8), key=(5, 2, 8), value=(5, 2, 8), heads=2)
    parts = {name: p for name, p in c.parts}
    assert parts["q_proj"].macs == 5 * 2 * 8 * 8  # 10 tokens x 8 -> 8: 640, likewise k, v and out
    assert parts[""].macs == 2 * 2 * 5 * 5 * (4 + 4)  # N H L S (E/H + E/H) = 800
    assert c.params == 4 * (8 * 8 + 8)  # in_proj 3E^2 + 3E, out_proj E^2 + E: 288
    assert c.bias_adds == 4 * 10 * 8


def test_data_movement_moves_bytes_and_computes_nothing():
    c = cost("data_movement", (1, 2, 3, 3), out_shape=(1, 2, 5, 5))  # a pad by 1 on each side
    assert (c.macs, c.bytes_read(), c.bytes_written()) == (0, 18 * 4, 50 * 4)
    assert c.category == "other"


@pytest.mark.parametrize("kinds, hyper, expected", [
    ((*POINTWISE_ACTIVATIONS, "prelu", "softmax", "log_softmax"), {}, "activation"),
    (UNARY, {}, "elementwise"), (BINARY, {}, "elementwise"), (REDUCTIONS, {}, "elementwise"),
    (("var", "std", "vector_norm", "where", "addcmul", "addcdiv", "lerp"), {}, "elementwise"),
    (("sort", "data_movement"), {}, "other"),
])
def test_formula_categories_agree_with_the_kind_table(kinds, hyper, expected):
    for kind in kinds:
        assert cost(kind, (2, 3), **hyper).category == category(kind) == expected, kind


class Costed(TorchDispatchMode):
    """Each aten op with a handler: (op, the formula's output shape, the op's real output shape)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        layer = layer_of(func, args, kwargs, out)
        if layer is not None:
            real = next(t for t in tree_leaves(out) if isinstance(t, torch.Tensor))
            self.seen.append((str(func), cost(layer[0], layer[1], **layer[2]).out_shape, tuple(real.shape) or (1,)))
        return out


@pytest.mark.filterwarnings("ignore:.*degrees of freedom")  # var of a single element, for its shape
@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data())
def test_reductions_read_their_dims_like_torch(shape, data):
    """The formula's output shape is the op's, for every overload's way of passing dims and keepdim."""
    ndim = len(shape)
    dim = data.draw(st.integers(-ndim, ndim - 1))
    dims = data.draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    keep = data.draw(st.booleans())
    x = torch.randn(*shape)
    with Costed() as mode:
        x.sum(), x.sum(dims, keepdim=keep), x.mean(dims, keep), x.amax(dims, keep), x.amin(dim), x.prod(dim, keep)
        x.max(), x.max(dim, keep), x.min(dim=dim), x.argmax(dim, keep), x.any(dim), x.var(dims, keepdim=keep)
        x.var(dim, unbiased=False, keepdim=keep), x.std(), torch.var_mean(x, dims, keepdim=keep), x.norm()
        x.norm(dim=dim, keepdim=keep), torch.linalg.vector_norm(x, 3, dims, keep), x.topk(1, dim), x.sort(dim)
        x.logsumexp(dims, keep), x.cumsum(dim)
    assert mode.seen and all(ours == real for _, ours, real in mode.seen), mode.seen


def test_formulas_give_every_op_its_real_output_shape():
    x, y, i = torch.randn(2, 3, 4, 4), torch.randn(3, 1, 4), torch.tensor([0, 2, 1])
    with Costed() as mode:
        x - y, x / 2, 2 ** x, torch.pow(x, y), torch.where(x > 0, x, y), torch.maximum(x, y), x.clamp(max=1)
        torch.addcdiv(x, x, y), torch.lerp(x, y, 0.5), F.leaky_relu(x), F.elu(x), F.selu(x), F.celu(x)
        F.softplus(x), F.hardshrink(x), F.logsigmoid(x), F.softmax(x, 1), F.log_softmax(x, 0), F.prelu(x, x[0, :, 0, 0])
        F.pad(x, (1, 2, 3, 4)), F.pad(x, (1, 1, 2, 2), mode="reflect"), F.pad(x[0], (2, 2), mode="replicate")
        torch.roll(x, 1, 3), x[:, i], x[:, :, i, :2], x.index_select(2, i), torch.gather(x, 3, x.argsort(3))
        x.flip(1, 2), x.tile((2,)), x.expand(2, 2, 3, 4, 4).clone(), F.one_hot(i, 4), torch.tril(x[0, 0], 1)
        torch.stack([x, x], 1), x.masked_fill(x > 0, 1.0), x.repeat(2, 1, 1, 3), torch.triu(x), x.nonzero()
        F.embedding(i, x.view(-1, 4)), F.pixel_shuffle(x.view(1, 8, 2, 6), 2), torch.cat([x, x], 3)
        torch.mm(x[0, 0], x[0, 0]), torch.bmm(x[0], x[0]), torch.addmm(x[0, 0, 0], x[0, 0], x[0, 0])
    assert len(mode.seen) > 30
    assert all(ours == real for _, ours, real in mode.seen), [s for s in mode.seen if s[1] != s[2]]


# -- matrix products and attention against torch's counter ---------------------------------------------------

dims = st.integers(1, 9)


@settings(max_examples=25, deadline=None)
@given(b=dims, m=dims, k=dims, n=dims)
def test_matrix_products_match_torch(b, m, k, n):
    forms = [
        (torch.mm, (m, k), (k, n)),
        (torch.bmm, (b, m, k), (b, k, n)),
        (lambda a, c: torch.addmm(torch.ones(n, device="meta"), a, c), (m, k), (k, n)),
        (lambda a, c: torch.baddbmm(torch.ones(m, n, device="meta"), a, c), (b, m, k), (b, k, n)),
        (torch.matmul, (b, 2, m, k), (k, n)),  # runs as mm on a (b 2 m) x k view
        (torch.matmul, (b, 1, m, k), (3, k, n)),  # broadcast batch: bmm
        (lambda a, c: torch.einsum("bmk,bnk->bmn", a, c), (b, m, k), (b, n, k)),
    ]
    for f, *shapes in forms:
        assert traced(f, *shapes).core_macs == torch_macs(f, *shapes), (f, shapes)


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 3), h=st.integers(1, 4), lq=dims, lk=dims, e=dims, ev=dims)
def test_attention_matches_torch(b, h, lq, lk, e, ev):
    shapes = (b, h, lq, e), (b, h, lk, e), (b, h, lk, ev)
    ours = traced(F.scaled_dot_product_attention, *shapes)
    assert ours.core_macs == torch_macs(F.scaled_dot_product_attention, *shapes)
    assert ours.core_macs == b * h * lq * lk * (e + ev)


@pytest.mark.skipif(not compat.sdpa_takes_enable_gqa(), reason="F.scaled_dot_product_attention has no enable_gqa "
                    "before torch 2.5")
def test_grouped_query_attention_counts_every_query_head():
    q, kv = (1, 8, 6, 4), (1, 2, 5, 4)  # 8 query heads share 2 key/value heads
    f = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    assert traced(f, q, kv, kv).core_macs == torch_macs(f, q, kv, kv) == 8 * 6 * 5 * (4 + 4)


def test_matrix_vector_forms_torch_does_not_count():
    r = traced(lambda a, v, c, d: (torch.mv(a, v), a @ v, torch.dot(v, v), torch.addmv(a[:, 0], a, v),
                                   torch.addbmm(a[:, :2], c, d)), (3, 5), (5,), (4, 3, 6), (4, 6, 2))
    rows = r.table.set_index("kind")
    assert r.core_macs == 3 * 5 + 3 * 5 + 5 + 3 * 5 + 4 * 3 * 6 * 2  # 3 mv-like, dot 5, addbmm B M K N 144: 194
    assert rows.loc["linear", "bias_adds"].sum() == 3 + 3 * 2  # addmv's beta*c (3), addbmm's (3x2)


Q = (2, 4, 8, 16)  # batch, heads, length, head width
FUSED = {  # a fused kernel called directly on meta: (q, k, v, its other positional arguments)
    "_scaled_dot_product_flash_attention_for_cpu": (),
    "_scaled_dot_product_flash_attention": (),
    "_scaled_dot_product_efficient_attention": (None, False),
    "_scaled_dot_product_cudnn_attention": (None, False),
    "_scaled_dot_product_fused_attention_overrideable": (),
}


def on_meta(op: str):
    """A test that calls an aten op on meta tensors, skipped where this torch has no meta kernel for it."""
    why = "no meta kernel for" if hasattr(torch.ops.aten, op) else "no op"
    return pytest.mark.skipif(not compat.runs_on_meta(op), reason=f"torch {torch.__version__} has {why} aten.{op}")


@pytest.mark.parametrize("op", [pytest.param(op, marks=on_meta(op)) for op in FUSED])
def test_fused_attention_kernels_called_directly(op):
    kernel = getattr(torch.ops.aten, op)
    r = traced(lambda q, k, v: kernel(q, k, v, *FUSED[op]), Q, Q, Q)
    rows = r.table.set_index("kind")
    assert not r.unsupported
    assert rows.loc["attention", "macs"] == 2 * 4 * 8 * 8 * (16 + 16)  # Q K^T and scores V: 32,768
    assert rows.loc["softmax", "macs"] == 3 * 2 * 4 * 8 * 8  # 3 ops per score: 1,536
    if op != "_scaled_dot_product_flash_attention_for_cpu" and "overrideable" not in op:  # torch counts these
        assert r.core_macs == torch_macs(lambda q, k, v: kernel(q, k, v, *FUSED[op]), Q, Q, Q)


@on_meta("_flash_attention_forward")
def test_flash_attention_forward_in_its_own_layout():
    qkv = (2, 8, 4, 16)  # batch, length, heads, head width
    f = lambda q, k, v: torch.ops.aten._flash_attention_forward(q, k, v, None, None, 8, 8, 0.0, False, False)
    assert traced(f, qkv, qkv, qkv).core_macs == 2 * 4 * 8 * 8 * 32  # B H L S (E + Ev)
    # before torch 2.14 its counter reads (B, L, H, E) as (B, H, L, E): 8 "heads" of 4 x 4 scores
    assert torch_macs(f, qkv, qkv, qkv) == (2 * 4 * 8 * 8 * 32 if compat.counter_reads_flash_layout() else
                                            2 * 8 * 4 * 4 * 32)


# -- the same rows on meta and on the CPU --------------------------------------------------------------------


class Attention(nn.Module):
    """Attention in its usual forms: masks, causal, cross-attention, nn.MultiheadAttention with weights."""

    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 4)
        self.cross = nn.MultiheadAttention(16, 2, kdim=8, vdim=12, batch_first=True)

    def forward(self, x, mask):
        q = x.view(2, 4, 6, 4)
        tokens = x.view(6, 2, 16)
        return (F.scaled_dot_product_attention(q, q, q, attn_mask=mask),
                F.scaled_dot_product_attention(q, q, q, attn_mask=mask > 0),
                F.scaled_dot_product_attention(q, q, q, is_causal=True),
                self.mha(tokens, tokens, tokens, key_padding_mask=torch.zeros(2, 6, dtype=torch.bool,
                                                                               device=x.device)),
                self.mha(tokens, tokens, tokens, need_weights=False),
                self.cross(x.view(2, 6, 16), x[:96].view(2, 6, 8), x[:144].view(2, 6, 12), average_attn_weights=False))


CORPUS = {
    "attention": (Attention, (torch.randn(192), torch.randn(6, 6))),
    "data movement": (lambda: Lambda(lambda x, i: (
        F.embedding(i, x.view(-1, 4)), F.pad(x, (1, 2, 0, 1), mode="circular"), x.topk(2).values, x.sort(1).values,
        x.cumsum(1), torch.zeros_like(x).index_put_((i,), x[:3]),
        x.scatter_add(0, i.view(3, 1, 1, 1).expand(3, 3, 4, 4), x[:3]),
        torch.tril(x[0, 0]), F.one_hot(i, 5), torch.stack([x, x], 2), x[i, :, i])),
        (torch.randn(4, 3, 4, 4), torch.tensor([0, 2, 1]))),
}


@pytest.mark.parametrize("name", CORPUS)
def test_same_rows_on_meta_and_cpu(name):
    build, inputs = CORPUS[name]
    results = []
    for device in ("meta", "cpu"):
        with torch.device(device):
            module = build().eval()
        results.append(traced(None, *inputs, device=device, module=module))
    meta, cpu = results
    assert not meta.unsupported and not cpu.unsupported, (meta.unsupported, cpu.unsupported)
    assert meta.table[COLUMNS].to_dict("records") == cpu.table[COLUMNS].to_dict("records")


def test_multi_head_attention_rows():
    """nn.MultiheadAttention(16, 4) on 6 tokens x batch 2, without weights: projections, attention, softmax."""
    with torch.device("meta"):
        module = nn.MultiheadAttention(16, 4).eval()
    x = torch.empty(6, 2, 16, device="meta")
    r = count_module(module, (x, x, x, None, False), "mha")
    rows = r.table.set_index("kind")
    assert rows.loc["linear", "macs"].sum() == 4 * (12 * 16 * 16)  # q, k, v and out projections of 12 tokens: 12,288
    assert rows.loc["attention", "macs"] == 2 * 4 * 6 * 6 * (4 + 4)  # N H L S (E/H + E/H) = 2,304
    assert rows.loc["softmax", "macs"] == 3 * 2 * 4 * 6 * 6
    assert r.total("params") == sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("config", [{}, {"kdim": 8, "vdim": 12, "num_heads": 2}, {"bias": False},
                                    {"add_bias_kv": True}, {"add_zero_attn": True}])
def test_multi_head_attention_matches_torch(config, need_weights):
    with torch.device("meta"):
        module = nn.MultiheadAttention(**{"embed_dim": 16, "num_heads": 4, **config}).eval()
    q, k, v = (5, 2, 16), (7, 2, config.get("kdim", 16)), (7, 2, config.get("vdim", 16))
    r = traced(None, q, k, v, module=Lambda(lambda q, k, v: module(q, k, v, need_weights=need_weights)))
    assert r.core_macs == torch_macs(lambda q, k, v: module(q, k, v, need_weights=need_weights), q, k, v)


def test_multi_head_attention_fast_path_called_directly_costs_like_the_module():
    """torch._native_multi_head_attention (CPU only) books the same rows as nn.MultiheadAttention's slow path."""
    module = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(2, 6, 16)
    direct = Lambda(lambda x: torch._native_multi_head_attention(
        x, x, x, 16, 4, module.in_proj_weight, module.in_proj_bias, module.out_proj.weight, module.out_proj.bias,
        None, False))
    direct.module = module
    with torch.no_grad():
        fast, slow = count_module(direct, x, "fast"), count_module(module, (x, x, x, None, False), "slow")
    assert not fast.unsupported
    assert fast.table[COLUMNS[2:]].to_dict("records") == slow.table[COLUMNS[2:]].to_dict("records")


# -- real models ------------------------------------------------------------------------------------------------


def torchvision_ops(name: str) -> float:
    import torchvision
    return torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"]  # GMACs, 3 decimals


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_vit_b_16_core_macs_equal_torchvision_on_every_device(device):
    r = count_source(load("vit_b_16"), device=device)
    assert round(r.core_macs / 1e9, 3) == torchvision_ops("vit_b_16") == 17.564
    assert not r.unsupported and set(r.table.kind) >= {"attention", "softmax", "linear"}


def test_swin_t_moves_data_and_matches_torchvision():
    r = count_source(load("swin_t"))
    assert round(r.core_macs / 1e9, 3) == torchvision_ops("swin_t")
    assert not r.unsupported  # pad, roll, index, masked_fill are data movement
    moved = r.table[r.table.kind == "data_movement"]
    assert len(moved) and moved.macs.sum() == 0 and moved.bytes_written.sum() > 0


def test_timm_models_pass_strict_and_match_torch():
    pytest.importorskip("timm")
    r = count_source(load("timm:tf_efficientnet_b0"), strict=True)  # its "same" padding is constant_pad_nd
    assert not r.unsupported
    vit = load("timm:vit_tiny_patch16_224").build("meta")  # calls F.sdpa itself (timm 1.0.3 builds it on the CPU)
    x = torch.empty(1, 3, 224, 224, device="meta")
    with FlopCounterMode(display=False) as mode, torch.no_grad():
        vit(x)
    assert count_module(vit, x, "vit_tiny", strict=True).core_macs == mode.get_total_flops() // 2
    assert math.isfinite(r.core_macs)


def test_nms_is_costed_at_its_upper_bound_on_the_cpu():
    """torchvision.nms has no meta kernel; on 5 boxes: sort 5 x ceil(log2 5) = 15 + 5*4/2 = 10 pairs x 11 ops = 125."""
    import torchvision

    class Suppress(torch.nn.Module):
        def forward(self, boxes, scores):
            return torchvision.ops.nms(boxes, scores, 0.5)

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 9, 9], [50, 50, 60, 60]],
                         dtype=torch.float)
    result = count_module(Suppress(), (boxes, torch.rand(5)))
    assert not result.unsupported
    assert result.table.loc[result.table.kind == "nms", "macs"].sum() == 15 + 10 * 11


def test_ops_on_empty_tensors_cost_nothing_and_are_not_unsupported():
    """A detector that keeps no box runs its arithmetic on 0-element tensors: 0 work, not "no formula"."""
    def keep_none(x):
        kept = x[x > 1e9]  # no element passes: an empty tensor
        return torch.stack([kept * 2 - 1, kept.ge(0) & kept.le(1)])

    result = count_module(Lambda(keep_none), (torch.rand(2, 3),))
    assert not result.unsupported
    mul_sub = result.table[result.table.kind.isin(["mul", "sub"])]
    assert len(mul_sub) == 2 and mul_sub.macs.sum() == 0
