"""Record the machine-readable output of a broad set of commands, or check that they still give the same bytes.

A restructuring must not change what users see. Before it: ``python benchmarks/same_outputs.py record DIR``;
after it: ``python benchmarks/same_outputs.py check DIR``, which prints every command whose stdout, stderr or exit
status differs and exits 1 if any does. Commands run as separate processes (two at a time), as a user runs them.
``--only SUBSTRING`` restricts both to matching commands.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USER = "benchmarks/snapshot_models.py"
CSV = "results/bench-cpu-amd-epyc.csv"

COMMANDS = [
    "bottleneck --in 480 --out 48 -f json",
    "bottleneck --in 480 --out 48 --reduce 16 --unit flops -f csv",
    "list -f json",
    "list --all -f csv",
    "show resnet50 -f json",
    "show resnet50 --by stage -f csv",
    "show efficientnet_b3 --unit flops -f json",
    "show densenet121 --by kind -f json",
    "show mobilenet_v3_large -f json",
    "show inception_v1 --by category -f md",
    "compare resnet50 resnext50 -f json",
    "compare resnet50 resnext50 --stages -f csv",
    "compare resnet50 convnext_tiny --unit flops -f json",
    "scale -f json",
    "scale --published -f csv",
    "trace resnet50 -f json",
    "trace resnet50 --unit flops -f csv",
    "trace resnet50 --by module --depth 2 -f json",
    "trace densenet121 --by category -f json",
    "trace inception_v3 --by kind -f csv",
    "trace timm:convnext_tiny -f json",
    "trace timm:vit_tiny_patch16_224 --by kind -f json",
    "trace r3d_18 -f json",
    "trace fasterrcnn_mobilenet_v3_large_320_fpn -f json",
    "trace deeplabv3_mobilenet_v3_large -f csv",
    "trace vit_b_16 --by module -f json",
    "trace efficientnet_b0 --device cpu -f json",
    "trace swin_t --dtype bf16 -f csv",
    f"trace {USER}:unet -f json",
    f"trace {USER}:vit --arg dim=48 -f json",
    f"trace {USER}:unet --channels 3 --batch 2 --size 64 -f csv",
    f"trace {USER}:dict_net -f json",
    "trace resnet18 --input 2x3x96x96 -f json",
    "verify resnet50 -f json",
    "verify alexnet --tools torch -f json",
    "verify googlenet --tools fvcore,ptflops -f json",
    f"verify {USER}:unet --tools torch,fvcore -f json",
    "train resnet50 -f json",
    "train efficientnet_b0 --dtype bf16 --optimizer adamw -f json",
    "train resnet18 --fit h100-sxm -f json",
    "train densenet121 --batch 2 -f csv",
    "train timm:vit_tiny_patch16_224 --batch 2 -f json",
    f"train {USER}:vit --batch 2 -f json",
    f"train {USER}:unet --batch 2 --fit 8GB -f json",
    "train mobilenet_v3_large --batch 2 --input-grad --unit flops -f json",
    "train-cost resnet50 --epochs 90 -f json",
    f"train-cost resnet50 --epochs 90 --csv {CSV} -f json",
    f"train-cost resnet50 --epochs 90 --csv {CSV} --dtype fp32 -f json",
    "train-cost efficientnet_b0 --gpu a100 --mfu 0.4 -f csv",
    "devices -f json",
    # bad input: one line, status 2
    "trace nosuchmodel",
    "trace resnet50 --by stage",
    "train fasterrcnn_resnet50_fpn",
    "show resnet50 --size 0",
]


def run(command: str) -> dict:
    """One command's stdout, stderr and exit status."""
    env = {**os.environ, "COLUMNS": "200", "CNNCOST_DEBUG": ""}
    done = subprocess.run([sys.executable, "-m", "cnncost", *command.split()], cwd=ROOT, capture_output=True,
                          text=True, env=env)
    return {"command": command, "rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("record", "check"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--only", default="", help="run only commands containing this text")
    args = parser.parse_args()
    commands = [c for c in COMMANDS if args.only in c]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, commands))
    store = args.folder / "outputs.json"
    if args.action == "record":
        args.folder.mkdir(parents=True, exist_ok=True)
        old = json.loads(store.read_text()) if store.exists() and args.only else {}
        old.update({r["command"]: r for r in results})
        store.write_text(json.dumps(old, indent=1))
        print(f"recorded {len(results)} commands in {store}")
        return 0
    before = json.loads(store.read_text())
    changed = 0
    for r in results:
        was = before.get(r["command"])
        if was is None:
            print(f"NEW   {r['command']}")
            continue
        diffs = [k for k in ("rc", "stdout", "stderr") if was[k] != r[k]]
        if not diffs:
            continue
        changed += 1
        print(f"DIFF  {r['command']}: {', '.join(diffs)}")
        for key in diffs[1:] if diffs[0] == "rc" else diffs:
            lines = difflib.unified_diff(str(was[key]).splitlines(), str(r[key]).splitlines(), "before", "after",
                                         n=1, lineterm="")
            print("\n".join(list(lines)[:30]))
    print(f"{len(results) - changed} of {len(results)} commands give the same output")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
