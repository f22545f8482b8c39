"""cnncost.compat: what differs between the torch releases cnncost supports, checked against the installed torch's
own behaviour (CI runs this on the newest and the oldest supported release)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils._python_dispatch import TorchDispatchMode

from cnncost import compat


def test_torch_version_reads_major_and_minor():
    assert compat.torch_version("2.4.1+cu121") == (2, 4)
    assert compat.torch_version("2.14.1") == (2, 14)
    assert compat.torch_version("3.0.0a0+git1234") == (3, 0)
    assert (2, 4) <= compat.torch_version() < (3, 0)  # pyproject.toml's range


def test_a_checkpointed_block_runs_forward_and_backward_on_meta():
    """torchvision's DenseNet(memory_efficient=True) in small: torch 2.4 needs the backports for this."""
    block = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).to("meta")
    x = torch.empty(2, 4, device="meta", requires_grad=True)
    out = checkpoint(block, x, use_reentrant=False)
    out.sum().backward()
    assert x.grad.shape == (2, 4) and block[0].weight.grad.shape == (4, 4)


class Ops(TorchDispatchMode):
    """The aten ops that ran."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func._overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("shape", [(2, 4, 8), (2, 3, 4, 8)], ids=["3-d", "4-d"])
def test_cpu_attention_is_fused_as_torch_runs_it(shape):
    q = torch.randn(*shape)
    with Ops() as ops:
        F.scaled_dot_product_attention(q, q, q)
    assert ("_scaled_dot_product_flash_attention_for_cpu" in ops.names) == compat.cpu_attention_is_fused(shape)


def test_every_attention_kernel_that_runs_on_meta_says_so():
    q = torch.empty(1, 2, 4, 8, device="meta")
    assert compat.runs_on_meta("_scaled_dot_product_flash_attention_for_cpu")  # every supported release
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, q, q)
    assert not compat.runs_on_meta("no_such_op")
    if compat.runs_on_meta("_scaled_dot_product_flash_attention"):
        torch.ops.aten._scaled_dot_product_flash_attention(q, q, q)
    else:
        with pytest.raises(NotImplementedError):
            torch.ops.aten._scaled_dot_product_flash_attention(q, q, q)


@pytest.mark.parametrize("want", ["tf32", "ieee", None])
def test_fp32_precision_is_set_inside_and_restored_after(want):
    """Global flags, settable without a GPU: the backends' fp32_precision where torch has it, else allow_tf32."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    new = hasattr(matmul, "fp32_precision") and hasattr(cudnn, "conv")
    read = (lambda: (matmul.fp32_precision, cudnn.conv.fp32_precision)) if new else \
        (lambda: (matmul.allow_tf32, cudnn.allow_tf32))
    before = read()
    with compat.fp32_precision(want):
        inside = read()
    assert read() == before
    if want is None:
        assert inside == before
    else:
        assert inside == ((want, want) if new else (want == "tf32",) * 2)
