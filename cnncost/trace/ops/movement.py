"""Aten handlers for ops that move data without arithmetic: concatenation, pads, indexing, scatter, views.

They are rows with bytes and no MACs (``data_movement``), except views, which are free unless a view flattens
N x ... to N x rest (a `flatten` row, as the analytic specs have).
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from cnncost.trace.ops.common import moved, numel, shape, tensors
from cnncost.trace.ops.registry import SIGNATURES, VIEWS, Layer, handles, handles_function


# -- concatenation and data movement: bytes, no arithmetic ------------------------------------------------------


@handles("cat")
def cat(args: tuple, out) -> Layer:
    """cat(tensors, dim=0)."""
    parts, dim = args[0], args[1]
    first = shape(parts[0])
    return Layer("concat", first, {"others": [shape(t) for t in parts[1:]], "dim": dim % len(first)})



def gathered(args: tuple, out) -> Layer:
    """An op that reads only what it selects (index, gather, embedding): output elements plus the indices."""
    source, outputs = args[0], tensors(out)
    written = outputs[0] if outputs else source
    return Layer("data_movement", shape(source), {"out_shape": tuple(written.shape),
                                            "read": written.numel() + numel(args[1:])})


handles("constant_pad_nd", "roll", "flip", "repeat", "tile", "expand_copy", "tril", "triu", "stack", "masked_fill",
        "masked_scatter", "masked_select", "scatter", "scatter_add", "scatter_reduce",
        "index_put", "_index_put_impl", "_unsafe_index_put", "index_add", "index_copy", "index_fill", "nonzero",
        "repeat_interleave", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "im2col", "col2im",
        "slice_scatter", "select_scatter", "diagonal_scatter", "diag_embed", "rot90", "_pad_circular",
        *(f"{mode}_pad{rank}d" for mode in ("reflection", "replication") for rank in (1, 2, 3)),
        "_pack_padded_sequence", "_pad_packed_sequence")(moved)  # packed sequences of an RNN
handles("index", "_unsafe_index", "index_select", "gather", "take", "embedding", "take_along_dim")(gathered)


@handles("_embedding_bag", "_embedding_bag_forward_only")
def embedding_bag(args: tuple, out) -> Layer:
    """_embedding_bag(weight, indices, offsets, scale_grad_by_freq, mode (0 sum, 1 mean, 2 max), sparse,
    per_sample_weights, include_last_offset, padding_idx) -> (output (bags x dim), ...)."""
    bags, dim = out[0].shape
    return Layer("embedding_bag", shape(args[1]), {"embedding_dim": dim, "bags": bags,
                                              "mode": ("sum", "mean", "max")[args[4]], "weighted": args[6] is not None})


def one_hot_signature(tensor, num_classes=-1):
    """F.one_hot's arguments (the builtin has no Python signature)."""


SIGNATURES[F.one_hot] = inspect.signature(one_hot_signature)


@handles_function(F.one_hot)
def one_hot(a: dict, out) -> Layer:
    """F.one_hot(indices, num_classes): reads the indices, writes the output; on the CPU it also checks their range
    (aminmax), on meta not: one layer on every device."""
    return Layer("data_movement", shape(a["tensor"]), {"out_shape": tuple(out.shape)})


# -- views ----------------------------------------------------------------------------------------------------


def view(args: tuple, out: torch.Tensor) -> Layer | None:
    """A view from N x ... to N x rest is a flatten; any other view is free and not a row."""
    x = args[0]
    if x.dim() > 2 and out.dim() == 2 and out.shape[0] == x.shape[0]:
        return Layer("flatten", shape(x), {})
    return None


VIEWS.add(("view", "_unsafe_view", "reshape"), view)
