"""The lecture's 1x1 bottleneck: a direct k x k conv against a 1x1 reduction followed by the k x k conv."""
from __future__ import annotations

from cnncost.formulas import Cost, check_shape, conv2d
from cnncost.units import Unit, UNITS


def arithmetic(c: Cost, unit: Unit) -> str:
    """The conv formula with this layer's numbers substituted: (H x W x C_out) x (k x k x C_in/g) = N."""
    n, c_out, h, w = c.out_shape
    kh, kw = (int(k) for k in c.kernel.split("x"))
    c_in = c.in_shape[1] // c.groups
    factors = ([str(unit.per_mac)] if unit.per_mac != 1 else []) + ([str(n)] if n != 1 else [])
    prefix = "".join(f"{f} x " for f in factors)
    return f"{prefix}({h} x {w} x {c_out}) x ({kh} x {kw} x {c_in}) = {unit.of(c.macs):,}"


def step(label: str, c: Cost, unit: Unit) -> dict:
    """One conv of a path as a flat record with exact integers."""
    return {"layer": label, "in_shape": list(c.in_shape), "out_shape": list(c.out_shape), "kernel": c.kernel,
            "groups": c.groups, "arithmetic": arithmetic(c, unit), unit.name: unit.of(c.macs), "params": c.params,
            "bias_adds": c.bias_adds}


def compare_bottleneck(in_channels: int = 480, out_channels: int = 48, size: int = 14, kernel: int = 5,
                       reduce: int = 16, stride: int = 1, groups: int = 1, batch: int = 1, bias: bool = False,
                       unit: Unit = UNITS["macs"], padding: int | None = None) -> dict:
    """Direct k x k conv vs 1x1 reduction + k x k conv (padding default k // 2, 'same'), with totals and savings."""
    x = check_shape((batch, in_channels, size, size))
    conv = dict(kernel=kernel, stride=stride, padding=kernel // 2 if padding is None else padding, groups=groups, bias=bias)
    direct = conv2d(x, out_channels, **conv)
    squeeze = conv2d(x, reduce, kernel=1, bias=bias)
    spread = conv2d(squeeze.out_shape, out_channels, **conv)
    name = f"{kernel}x{kernel} conv"
    steps = [step(f"1x1 conv {in_channels}->{reduce}", squeeze, unit),
             step(f"{name} {reduce}->{out_channels}", spread, unit)]
    reduced_macs, reduced_params = squeeze.macs + spread.macs, squeeze.params + spread.params
    return {
        "unit": unit.name,
        "input_shape": list(x),
        "direct": step(f"{name} {in_channels}->{out_channels}", direct, unit),
        "reduced": {"steps": steps, unit.name: unit.of(reduced_macs), "params": reduced_params,
                    "bias_adds": squeeze.bias_adds + spread.bias_adds},
        f"{unit.name}_ratio": round(direct.macs / reduced_macs, 3),
        "params_ratio": round(direct.params / reduced_params, 3),
    }


def bottleneck_tables(result: dict) -> dict[str, list[dict]]:
    """The comparison as a per-step table and a savings table."""
    u = result["unit"]
    keep = ("layer", "kernel", "groups", "arithmetic", u, "params")
    rows = [{"path": "direct", **{k: result["direct"][k] for k in keep}}]
    rows += [{"path": "reduced", **{k: s[k] for k in keep}} for s in result["reduced"]["steps"]]
    rows.append({"path": "reduced", "layer": "total", "kernel": "", "groups": "",
                 "arithmetic": " + ".join(f"{s[u]:,}" for s in result["reduced"]["steps"])
                 + f" = {result['reduced'][u]:,}", u: result["reduced"][u], "params": result["reduced"]["params"]})
    saving = [{f"{u}_saving": f"{result[u + '_ratio']:.1f}x", "params_saving": f"{result['params_ratio']:.1f}x",
               f"direct_{u}": result["direct"][u], f"reduced_{u}": result["reduced"][u]}]
    return {f"Bottleneck on {'x'.join(map(str, result['input_shape']))} ({u})": rows, "Saving": saving}
