"""The verification report: analytic vs our tracer vs fvcore vs ptflops vs torch, every difference explained."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from cnncost.report.markdown import table
from cnncost.report.overview import LECTURE
from cnncost.units import UNITS

# Beyond the lecture's 2-d CNNs, each tool's rules read from its source: attention, layer
# norm and GELU (ViT), bilinear upsampling and hardswish (LR-ASPP segmentation), 3-d convolution, batch norm and
# pooling (R3D video). Cheap enough to verify with every tool.
BEYOND = ("vit_b_16", "lraspp_mobilenet_v3_large", "r3d_18")
MODELS = (*LECTURE, "googlenet_paper", "resnet50_v1", *BEYOND)


@lru_cache(maxsize=None)
def verified(name: str):
    """verify_model() of a model at its own size and batch 1, once per process."""
    from cnncost.verify import verify_model
    return verify_model(name)


def section(name: str, v) -> str:
    """One model's Verification: sources side by side, then every difference with its cause."""
    from cnncost.verify import report_tables
    tables = report_tables([v], UNITS["macs"], "md")
    note = f"Paper variant: {v.paper_note}\n\n" if v.paper_note else ""
    return f"## {name}\n\n{note}" + "".join(f"**{title}**\n\n{table(rows, human=False)}\n"
                                            for title, rows in tables.items())


def model_section(name: str) -> str:
    """One model: sources side by side, then every difference with its cause."""
    return section(name, verified(name))


def model_part(name: str) -> tuple[dict, str]:
    """One model's summary row and section: a part of the page, which keeps no Verification once it is done
    (a worker verifies a dozen models)."""
    from cnncost.verify import summary_row, verify_model
    v = verify_model(name)
    return summary_row(v), section(name, v)


def summary(models=MODELS) -> str:
    """One line per model: status and every source's total in MACs (torch halved)."""
    from cnncost.verify import summary_row
    return table([summary_row(verified(m)) for m in models], human=False)


def page(parts: list[tuple[dict, str]]) -> str:
    """reports/verification.md from each model's (summary row, section), in the page's order."""
    return ("# Verification\n\n"
            "Each model counted five ways: the analytic spec (from the paper's table, no torch), cnncost's own "
            "tracer (aten ops under a dispatch mode on the meta device), fvcore, ptflops (its pytorch and aten "
            "backends) and `torch.utils.flop_counter` (which reports FLOPs = 2 x MACs; halved here). All "
            "numbers are MACs at batch 1 and the model's own input size. A status of ok means every conv and "
            "linear layer of the spec equals the real model's trace; every other difference is listed with "
            "its cause (`cnncost verify MODEL` prints the same). The last models (" + ", ".join(BEYOND) + ") have "
            "no analytic spec: they check each tool's rules for the kinds beyond the lecture (attention, layer "
            "norm, upsampling, 3-d convolution and pooling).\n\n"
            "## Summary\n\n" + table([row for row, _ in parts], human=False) + "\n"
            + "".join(section for _, section in parts))


def report(out: Path, models=None) -> str:
    """reports/verification.md."""
    return page([model_part(m) for m in (MODELS if models is None else tuple(models))])
