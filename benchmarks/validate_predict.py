"""How good predict's numbers are, in one run: this CPU against `cnncost bench`, GPUs against timm's RTX 3090
tables, each beside 1/MACs; and predict's own speed against trace's.

1. CPU. A device profile from `cnncost calibrate` (--profile FILE, or calibrated now at torch's default threads)
   predicts the latency of models calibration never saw (its cases come from ResNet-50, ResNeXt-50,
   EfficientNet-B0, MobileNetV3, ViT-B/16, Swin-T, ConvNeXt-T, DenseNet-121 and FPN / DeepLab heads; CPU_MODELS
   holds none of them), at batch 1 and 8 in fp32; `cnncost bench`'s runner measures them (its images/s: the median
   block of its CPU defaults, 2 warm-up steps and 3 blocks of 5, as calibrate fits each case's median block).
   Reported: median and 90th-percentile relative error of speed, Spearman's rank correlation and close pairs named
   right, beside 1/MACs with its best scale; and predict at its own best scale, which is what is left of its
   error when the machine's load made the profile's level wrong.
2. GPU. timm's RTX 3090 AMP inference tables (nchw, nhwc; --timm-dir), the only published throughput predict's
   constants were set on, predicted through `predict` itself at each row's batch and size: the accuracy of the fit
   (a GPU the constants never saw is the real test, judged on tables kept elsewhere). No compiled RTX 3090 table
   exists, so `--compiled` is shown as the predicted speed-up over eager, without a measured figure; --cpu-compiled
   N measures torch.compile on this CPU for the first N CPU models at batch 8 against `predict --compiled`.
3. predict's own time against trace's for the same models (best of 3).

Written to results/: predict-validation-cpu.csv (model, batch, predicted and measured latency: both ours) and
predict-fit-rtx3090.csv (model, size, batch, layout and our predicted img/s: nothing of timm's measurements, which
are published in timm's repository and are not copied here).

Run: .venv/bin/python benchmarks/validate_predict.py [--profile results/device-cpu-...json] [--threads N]
     [--timm-dir DIR] [--skip-cpu] [--skip-gpu] [--cpu-compiled N]
On a busy machine, measure at --threads 1 (with a 1-thread profile): two threads time-sliced with other work
wait on each other at every op and run several times slower than one.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CPU_MODELS = ["resnet18", "resnet34", "alexnet", "vgg11", "googlenet", "mobilenet_v2", "shufflenet_v2_x1_0",
              "squeezenet1_1", "mnasnet1_0", "regnet_y_400mf", "regnet_x_1_6gf", "inception_v3",
              "timm:resnet26d", "timm:dla34", "timm:rexnet_100", "timm:ghostnet_100", "timm:mixnet_s",
              "timm:levit_128s", "timm:deit_tiny_patch16_224", "timm:poolformer_s12", "timm:edgenext_x_small",
              "timm:mobilevit_xs", "timm:hrnet_w18_small", "timm:tinynet_a", "timm:lcnet_100",
              "timm:coat_lite_tiny", "timm:selecsls42b"]
BATCHES = (1, 8)
SPEED_MODELS = ["resnet50", "efficientnet_b0", "vit_b_16", "convnext_tiny", "timm:regnety_032"]


SUMMARY: dict[str, dict] = {}  # measured on -> predictor -> figures: results/predict-accuracy.json


def show(title: str, figures: dict, where: str = "") -> None:
    """A summary beside its 1/MACs baseline (kept for results/predict-accuracy.json under `where`)."""
    from cnncost.speed.accuracy import describe
    if where:
        SUMMARY[where] = {name: {k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in f.items()}
                          for name, f in figures.items()}
    print(f"  {title}")
    for label, s in figures.items():
        print(f"    {label:>19}: {describe(s)}")


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows to a CSV (the header from the first row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"  wrote {path.relative_to(ROOT)}")


def cpu_profile(path: str | None, threads: int | None) -> str:
    """The profile to predict with: the one given, or one calibrated now (fp32, at --threads or torch's)."""
    if path:
        return path
    from cnncost.cli import run
    out = Path("/tmp/cnncost-validate-profile.json")
    print("  no --profile: calibrating this CPU now (about 1.5 minutes) ...", flush=True)
    if run(["calibrate", "--dtype", "fp32", "-o", str(out), *(["--threads", str(threads)] if threads else [])]) != 0:
        sys.exit("calibrate failed")
    return str(out)


def cpu(profile_path: str | None, compiled_models: int, threads: int | None) -> None:
    """Part 1: predicted against measured latency on this CPU."""
    import numpy as np

    from cnncost.bench.runner import Settings, sweep
    from cnncost.speed.accuracy import with_baseline
    from cnncost.speed.estimate import predict, resolve
    from cnncost.trace import count

    profile = resolve(cpu_profile(profile_path, threads), threads)
    print(f"CPU: {profile.name}, {profile.threads} thread(s), profile {profile.key} ({len(CPU_MODELS)} models, "
          f"batch {', '.join(map(str, BATCHES))})")
    settings = Settings(device="cpu", warmup=2, iters=5, repeats=3, threads=threads)
    rows = []
    for row in sweep(CPU_MODELS, list(BATCHES), settings):
        if row["error"]:
            print(f"  {row['model']} batch {row['batch']}: {row['error'][:80]}")
            continue
        result = count(row["model"], batch=row["batch"])
        p = predict(result, profile, "fp32", row["batch"], threads=threads)
        measured_ms = 1e3 * row["batch"] / row["img_per_s"]  # bench's figure: the median block
        rows.append({"model": row["model"], "batch": row["batch"], "predicted_ms": round(p.latency_ms, 4),
                     "measured_ms": round(measured_ms, 4), "error": round(p.latency_ms / measured_ms - 1, 4),
                     "macs_per_image": int(result.table.macs.sum()) // row["batch"]})
        print(f"  {row['model']:<28} batch {row['batch']}: predicted {p.latency_ms:9.2f} ms, measured "
              f"{measured_ms:9.2f} ms ({rows[-1]['error']:+.0%})", flush=True)
    for batch in (*BATCHES, None):
        chosen = [r for r in rows if batch is None or r["batch"] == batch]
        speed = np.array([1 / r["measured_ms"] for r in chosen])
        figures = with_baseline([1 / r["predicted_ms"] for r in chosen], speed,
                                [r["macs_per_image"] * r["batch"] for r in chosen], rescaled=True)
        show(f"batch {batch}" if batch else "both batches", figures,
             f"this CPU ({profile.name}, {profile.threads} threads), {f'batch {batch}' if batch else 'both batches'}")
    write_csv(ROOT / "results" / "predict-validation-cpu.csv", rows)
    if compiled_models:
        cpu_compiled(profile, [r["model"] for r in rows if r["batch"] == 8][:compiled_models], threads)


def cpu_compiled(profile, models: list[str], threads: int | None) -> None:
    """torch.compile measured on this CPU at batch 8 against predict --compiled (and eager)."""
    from cnncost.bench.runner import Settings, sweep
    from cnncost.speed.accuracy import with_baseline
    from cnncost.speed.estimate import predict
    from cnncost.trace import count
    print(f"CPU, torch.compile (batch 8, {len(models)} models):")
    predicted, measured, macs = [], [], []
    for row in sweep(models, [8], Settings(device="cpu", warmup=2, iters=5, repeats=3, compile=True,
                                            threads=threads)):
        if row["error"]:
            print(f"  {row['model']}: {row['error'][:80]}")
            continue
        result = count(row["model"], batch=8)
        p = predict(result, profile, "fp32", 8, compiled=True, threads=threads)
        measured_ms = 8e3 / row["img_per_s"]  # bench's figure: the median block
        predicted.append(1 / p.latency_ms)
        measured.append(1 / measured_ms)
        macs.append(int(result.table.macs.sum()))
        print(f"  {row['model']:<28} predicted {p.latency_ms:9.2f} ms, measured {measured_ms:9.2f} ms "
              f"({p.latency_ms / measured_ms - 1:+.0%})", flush=True)
    if predicted:
        show("torch.compile, batch 8", with_baseline(predicted, measured, macs, rescaled=True),
             f"this CPU ({profile.name}, {profile.threads} threads), torch.compile, batch 8 (predict --compiled)")


def gpu(folder: str | None) -> None:
    """Part 2: the RTX 3090 tables through predict itself, eager (and compiled as a predicted speed-up)."""
    import numpy as np

    import timm_table
    from cnncost.speed.accuracy import with_baseline
    from cnncost.speed.estimate import resolve
    from cnncost.speed.predict import predict_table

    profile = resolve("rtx3090")
    out, speedups = [], []
    for layout in ("nchw", "nhwc"):
        table = timm_table.read(layout, folder)
        traced = timm_table.trace_all(table, progress=False)
        predicted, measured, macs = [], [], []
        for row in table.itertuples():
            rows = traced[row.model, row.size, row.batch]
            if isinstance(rows, str) or rows.attrs.get("unsupported"):
                continue
            eager = predict_table(rows, profile, "fp16", row.batch, row.model, channels_last=layout == "nhwc")
            predicted.append(eager.img_per_s)
            measured.append(row.img_per_s)
            macs.append(rows.macs.sum() / row.batch)
            out.append({"model": row.model, "size": row.size, "batch": row.batch, "layout": layout,
                        "predicted_img_per_s": round(eager.img_per_s, 2)})  # ours only: timm's figures stay out
            if layout == "nhwc":
                fused = predict_table(rows, profile, "fp16", row.batch, row.model, compiled=True)
                speedups.append(fused.img_per_s / eager.img_per_s)
        print(f"GPU: timm's RTX 3090 AMP inference, {layout} ({len(measured)} of {len(table)} rows traced), "
              f"eager, the table the constants were fitted on:")
        show("img/s", with_baseline(predicted, np.array(measured), macs),
             f"RTX 3090, AMP, {layout} (timm's table the constants were fitted on)")
    q = np.percentile(speedups, [10, 50, 90])
    print(f"  --compiled (no measured RTX 3090 compiled table): predicted speed-up over eager nhwc, 10/50/90th "
          f"percentile {q[0]:.2f}x / {q[1]:.2f}x / {q[2]:.2f}x over {len(speedups)} models")
    write_csv(ROOT / "results" / "predict-fit-rtx3090.csv", out)


def own_speed() -> None:
    """Part 3: predict's time against trace's for the same model (best of 3)."""
    from cnncost.speed.estimate import predict
    from cnncost.trace import count
    print("predict's own speed (best of 3; predict = trace + the prediction):")
    for name in SPEED_MODELS:
        count(name)  # warm-up: imports and the model's first build
        traced = min(timed(lambda: count(name)) for _ in range(3))
        predicted = min(timed(lambda: predict(name, "rtx4090", "fp16")) for _ in range(3))
        print(f"  {name:<24} trace {traced * 1e3:7.0f} ms, predict {predicted * 1e3:7.0f} ms, "
              f"ratio {predicted / traced:.2f}")


def timed(call) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="a CPU device profile from `cnncost calibrate` (default: calibrate now)")
    parser.add_argument("--timm-dir", help="folder of timm's RTX 3090 tables (default /work/timm-data)")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-gpu", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's); the profile "
                        "must have been measured with as many")
    parser.add_argument("--cpu-compiled", type=int, default=0, metavar="N",
                        help="also measure torch.compile on this CPU for N models at batch 8")
    args = parser.parse_args()
    start = time.perf_counter()
    if not args.skip_gpu:
        gpu(args.timm_dir)
    if not args.skip_cpu:
        cpu(args.profile, args.cpu_compiled, args.threads)
    own_speed()
    write_summary()
    print(f"({time.perf_counter() - start:.0f} s)")


def write_summary() -> None:
    """The accuracy figures (no measurement of anyone's) in results/predict-accuracy.json, a part not run this time
    kept from the last run."""
    import json
    path = ROOT / "results" / "predict-accuracy.json"
    kept = json.loads(path.read_text()) if path.is_file() else {}
    kept.update(SUMMARY)
    path.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
    print(f"  wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
