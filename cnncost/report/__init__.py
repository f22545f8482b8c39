"""`cnncost report`: every markdown report and plot in reports/, regenerated deterministically.

Each page is made of parts (cnncost.report.schedule) run on up to two cores, costliest first; the progress bar
weighs each part by its expected CPU seconds (COSTS, measured by benchmarks/bench_report.py on 2 shared cores),
so the time it shows left is the time the remaining parts are expected to take.
"""
from __future__ import annotations

import sys
from pathlib import Path

from cnncost.errors import CnnCostError
from cnncost.output import write_atomic

# Expected CPU seconds per part (benchmarks/bench_report.py, one torch thread): the costliest start first, and
# they are the progress bar's weights. A part not listed weighs DEFAULT_COST.
COSTS = {"overview.md": 0.3, "lessons.md": 0.3, "verification.md:alexnet": 0.3, "verification.md:vgg16": 1.2,
         "verification.md:googlenet": 0.6, "verification.md:resnet34": 0.6, "verification.md:resnet50": 0.8,
         "verification.md:resnext50_32x4d": 0.8, "verification.md:densenet121": 1.3,
         "verification.md:densenet169": 1.8, "verification.md:densenet201": 2.1, "verification.md:densenet264": 2.9,
         "verification.md:efficientnet_b0": 0.8, "verification.md:efficientnet_b1": 1.1,
         "verification.md:efficientnet_b2": 1.2, "verification.md:efficientnet_b3": 1.4,
         "verification.md:efficientnet_b4": 2.0, "verification.md:efficientnet_b5": 2.9,
         "verification.md:efficientnet_b6": 4.2, "verification.md:efficientnet_b7": 6.8,
         "verification.md:googlenet_paper": 0.6, "verification.md:resnet50_v1": 0.8,
         "verification.md:vit_b_16": 1.7, "verification.md:lraspp_mobilenet_v3_large": 1.1,
         "verification.md:r3d_18": 2.1, "benchmarks.md": 2.5, "speed.md": 4.3, "training.md:alexnet": 0.1,
         "training.md:vgg16": 0.2,
         "training.md:googlenet": 0.7, "training.md:resnet34": 0.4, "training.md:resnet50": 0.7,
         "training.md:resnext50_32x4d": 0.7, "training.md:densenet121": 1.6, "training.md:densenet169": 2.7,
         "training.md:densenet201": 3.2, "training.md:densenet264": 4.6, "training.md:efficientnet_b0": 0.8,
         "training.md:efficientnet_b1": 1.1, "training.md:efficientnet_b2": 1.1, "training.md:efficientnet_b3": 1.2,
         "training.md:efficientnet_b4": 1.5, "training.md:efficientnet_b5": 1.8, "training.md:efficientnet_b6": 2.0,
         "training.md:efficientnet_b7": 2.6, "training.md:densenet_lesson": 4.4}
DEFAULT_COST = 0.3  # a model page: two figures
# Parts that grow a worker by over 200 MB (a real forward of a large model on the CPU): never two at once.
HEAVY = ("verification.md:alexnet", "verification.md:vgg16", "verification.md:efficientnet_b4",
         "verification.md:efficientnet_b5", "verification.md:efficientnet_b6", "verification.md:efficientnet_b7",
         "verification.md:vit_b_16", "verification.md:r3d_18")


def cost(key: str) -> float:
    """A part's expected CPU seconds."""
    return COSTS.get(key, DEFAULT_COST)


def part(key: str, run, *args):
    """A part of a page, with its expected cost and whether it is heavy."""
    from cnncost.report.schedule import Part
    return Part(key, run, args, cost(key), key in HEAVY)


def pages(out: Path, verify_models=None, results: Path = Path("results")) -> list:
    """Every report page and its parts, in the index's order."""
    from cnncost.report import benchmarks, lessons, model, overview, speed, training, verification
    from cnncost.report.schedule import Page
    from cnncost.specs import MODELS

    checked = verification.MODELS if verify_models is None else tuple(verify_models)
    lecture = overview.LECTURE
    figures = out / "figures"
    found = [
        Page("overview.md", "Overview", "the lecture's families side by side: params, GMACs, activations, depth, "
             "accuracy; accuracy against GMACs", [part("overview.md", overview.report, out)]),
        Page("lessons.md", "Lessons", "the 1x1 bottleneck, ResNet vs ResNeXt cardinality, DenseNet's "
             "concatenation, EfficientNet's compound scaling", [part("lessons.md", lessons.report, out)]),
        Page("verification.md", "Verification", "analytic vs our tracer vs fvcore vs ptflops vs torch, every "
             "difference explained", [part(f"verification.md:{m}", verification.model_part, m) for m in checked],
             verification.page),
        Page("benchmarks.md", "Benchmarks", "measured throughput from results/bench-*.csv, each labelled with its "
             "device",
             [part("benchmarks.md", benchmarks.report, out, results)]),
        Page("speed.md", "Speed", "time per layer measured on this CPU and predicted for GPUs, against MACs; how well "
             "predictions match measurements", [part("speed.md", speed.report, out, results)]),
        Page("training.md", "Training", "a training step traced per lecture model: MACs against inference, "
             "memory against batch, largest batch per GPU, 90-epoch cost; DenseNet's memory",
             [*(part(f"training.md:{m}", training.model_section, m, figures) for m in lecture),
              part("training.md:densenet_lesson", training.densenet_lesson)],
             lambda results: training.page(results[:-1], results[-1])),
    ]
    about = "per-stage table, costliest layers (identical ones grouped), op mix, roofline"
    return found + [Page(f"models/{name}.md", name, about, [part(f"models/{name}.md", model.report, name, out)])
                    for name in MODELS]


PRELOADED = ("torch", "torchvision", "matplotlib.pyplot", "fvcore.nn", "ptflops", "cnncost.trace.adapters",
             "cnncost.trace.train", "cnncost.trace.memory", "cnncost.verify")


def preload() -> None:
    """Import what the parts use, once, before the workers fork from this process (each would import it); then
    exempt what is loaded from the garbage collector, which would otherwise walk (and copy into every worker)
    half a million objects at each full collection."""
    import gc
    import importlib
    import warnings
    for name in PRELOADED:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fvcore's import warns about torch.jit, as when verify imports it
                importlib.import_module(name)
        except ImportError:  # an optional tool: the part that needs it says so
            pass
    gc.freeze()


def reports(out: Path, verify_models=None, results: Path = Path("results"), jobs: int | None = None
            ) -> list[tuple[str, str, str]]:
    """Write every report under out; return (file, title, one-line description) for the index."""
    import contextlib

    from cnncost import progress
    from cnncost.report import benchmarks, schedule

    todo = pages(out, verify_models, results)
    jobs = schedule.default_jobs() if jobs is None else jobs
    if jobs > 1:
        preload()
    total = sum(p.cost for page in todo for p in page.parts)
    written, finished_parts = set(), set()
    with contextlib.ExitStack() as stack:
        bar = progress.Silent()

        def busiest() -> None:
            """Name the page with the most work still to do, with its parts done where it has several."""
            left = [(sum(q.cost for q in p.parts if q.key not in finished_parts), i) for i, p in enumerate(todo)
                    if p.name not in written]
            if left:
                page = todo[max(left)[1]]
                done_parts = sum(q.key in finished_parts for q in page.parts)
                bar.working(page.name + (f" ({done_parts}/{len(page.parts)} parts)" if len(page.parts) > 1 else ""))

        def started() -> None:  # the bar's refresh thread starts once the workers are forked
            nonlocal bar
            bar = stack.enter_context(progress.bar("report", total=len(todo), cost=total))
            busiest()

        def done(finished, page, text) -> None:
            if page is not None:
                write_atomic(out / page.name, text)
                written.add(page.name)
            finished_parts.add(finished.key)
            bar.done(steps=int(page is not None), cost=finished.cost)
            busiest()

        schedule.run(todo, jobs, done, started)
    for line in benchmarks.problems(results):
        print(f"cnncost: warning: {line}", file=sys.stderr)
    return [(page.name, page.title, page.about) for page in todo]


def index(entries: list[tuple[str, str, str]]) -> str:
    """reports/README.md: one line per report."""
    lines = [f"- [{title}]({name}): {about}" for name, title, about in entries]
    return ("# cnncost reports\n\nGenerated by `cnncost report` (`make report`); regenerating gives identical "
            "files. Counts are MACs (1 multiply-accumulate; FLOPs = 2 x MACs) unless a column says flops.\n\n"
            + "\n".join(lines) + "\n")


def generate(out: str | Path = "reports", verify_models=None, results: Path = Path("results"),
             jobs: int | None = None) -> list[Path]:
    """Regenerate every report and figure under out (on `jobs` worker processes; default: up to two, one per
    CPU); return the files written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CnnCostError(f"cannot write reports to {out}: it is not a directory")
    try:
        for sub in ("figures", "models"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CnnCostError(f"cannot create {out}: {e.strerror}") from None
    entries = reports(out, verify_models, results, jobs)
    write_atomic(out / "README.md", index(entries))
    return [out / "README.md", *(out / name for name, _, _ in entries)]
