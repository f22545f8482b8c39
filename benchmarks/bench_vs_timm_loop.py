"""`cnncost bench` against the field's method: timm's benchmark loop (perf_counter around synchronised steps).

The same model, input, dtype and layout are timed both ways, in alternating rounds so that drift (clocks,
other processes) hits both alike. The verdict compares the best round of each (other processes can only slow
a round down, so the fastest round is the least disturbed, as timeit takes the minimum); medians are shown
too. They must agree within 5% at
batch 32 and above (at small batches timm's per-step synchronisation leaves the GPU idle between steps,
which CUDA events without a per-step sync do not, so ours may legitimately be faster there).

On the CPU one thread is used by default: it is far less disturbed by other processes on a shared machine.

Run:  .venv/bin/python benchmarks/bench_vs_timm_loop.py                 # CPU: resnet18 at 64 px, batch 32
      .venv/bin/python benchmarks/bench_vs_timm_loop.py --device cuda   # GPU: resnet50, bf16, channels-last
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from cnncost.bench.counts import model_source
from cnncost.bench.runner import TORCH_DTYPES, Settings, sweep

DEFAULTS = {"cpu": dict(model="resnet18", size=64, batch="32", dtype="fp32", channels_last=False, warmup=2, iters=10,
                        threads=1),
            "cuda": dict(model="resnet50", size=224, batch="32,256", dtype="bf16", channels_last=True, warmup=10,
                         iters=50, threads=0)}


def sync(device: str) -> float:
    """timm's cuda_timestamp: synchronise (on a GPU), then read perf_counter."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return time.perf_counter()


def timm_loop(args, batch: int) -> float:
    """images/s measured the way timm's InferenceBenchmarkRunner / TrainBenchmarkRunner do it."""
    dtype = getattr(torch, TORCH_DTYPES[args.dtype])
    cast = args.mode == "infer" and args.dtype in ("fp16", "bf16")
    layout = torch.channels_last if args.channels_last else torch.preserve_format
    model = model_source(args.model).build(args.device).to(dtype=dtype if cast else None, memory_format=layout)
    model.train(args.mode == "train")
    x = torch.randn(batch, 3, args.size, args.size, device=args.device, dtype=dtype if cast else torch.float32)
    x = x.contiguous(memory_format=layout)
    target = torch.randint(0, 10, (batch,), device=args.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    amp = args.mode == "train" and args.dtype in ("fp16", "bf16")

    def step():
        if args.mode == "infer":
            model(x)
            return
        optimizer.zero_grad()
        with torch.autocast(torch.device(args.device).type, dtype=dtype, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), target)
        loss.backward()
        optimizer.step()

    with torch.inference_mode(args.mode == "infer"):
        for _ in range(args.warmup):
            step()
        start = sync(args.device)
        for _ in range(args.iters):
            step()
            sync(args.device)
        elapsed = sync(args.device) - start
    return batch * args.iters / elapsed


def ours(args, batch: int) -> float:
    """images/s from cnncost's runner with the same settings (one block of the same length)."""
    settings = Settings(args.device, args.dtype, args.mode, args.channels_last, warmup=args.warmup, iters=args.iters,
                        repeats=1, size=args.size)
    row = next(sweep([args.model], [batch], settings))
    if row["error"]:
        sys.exit(f"cnncost bench failed: {row['error']}")
    return row["img_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", default="infer", choices=("infer", "train"))
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of both methods")
    for key in DEFAULTS["cpu"]:
        parser.add_argument(f"--{key.replace('_', '-')}", default=None)
    args = parser.parse_args()
    for key, value in DEFAULTS["cuda" if args.device.startswith("cuda") else "cpu"].items():
        given = getattr(args, key)
        setattr(args, key, value if given is None else type(value)(given) if not isinstance(value, bool)
                else given.lower() in ("1", "true", "yes"))
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{args.model} {args.mode} on {args.device} ({torch.get_num_threads()} threads), {args.size} px, {args.dtype}, channels-last "
          f"{args.channels_last}, {args.warmup} warm-up + {args.iters} timed steps, {args.rounds} rounds")
    print(f"{'batch':>6} {'timm loop img/s':>16} {'cnncost img/s':>14} {'ratio':>7} {'median ratio':>13}  verdict")
    failed = False
    for batch in (int(b) for b in args.batch.split(",")):
        timm_rates, our_rates = [], []
        for _ in range(args.rounds):
            timm_rates.append(timm_loop(args, batch))
            our_rates.append(ours(args, batch))
        ratio = max(our_rates) / max(timm_rates)
        median_ratio = statistics.median(our_rates) / statistics.median(timm_rates)
        agree = abs(ratio - 1) <= 0.05
        failed |= batch >= 32 and not agree
        verdict = "agree within 5%" if agree else ("DISAGREE" if batch >= 32 else "differ (small batch)")
        print(f"{batch:>6} {max(timm_rates):>16.1f} {max(our_rates):>14.1f} {ratio:>7.3f} {median_ratio:>13.3f}  "
              f"{verdict}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
