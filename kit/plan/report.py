"""``python -m kit plan PARAMS``: the memory plan, disk and GPU-hours as text, and the verdict as an exit code."""

from __future__ import annotations

import sys

from kit.config import Params
from kit.plan import disk_gib, make_plan, memory, recipe_batches
from kit.plan.hours import hours, measured_decode


def unit_hours(params: Params) -> tuple[dict[str, float], str]:
    """GPU-hours per unit (0x, 1x, 2x, 3x) on one GPU, and where the decode rate came from."""
    decode = measured_decode(params)
    by_unit: dict[str, float] = {}
    for row in hours(params, decode_tok_s=decode):
        unit = row["notebook"][0] + "x"
        by_unit[unit] = by_unit.get(unit, 0.0) + row["gpu_hours"]
    source = f"measured decode {decode:.0f} tok/s" if decode else "H100 roofline (no stored vLLM benchmark)"
    return by_unit, source


def main(params: Params, gpus: int | None, gpu_gb: float | None) -> int:
    import pandas as pd

    plan = make_plan(params, gpus, gpu_gb)
    where = (
        f"{plan.gpus} GPU(s) of {plan.gpu_gib:g} GiB, {memory.HEADROOM:.0%} kept free"
        if plan.device == "cuda"
        else f"host memory {plan.gpu_gib:.0f} GiB (the profile runs on the CPU)"
    )
    print(f"memory plan of {params.profile} on {where}")
    table = plan.table()
    if len(table):
        with pd.option_context("display.max_colwidth", 120, "display.width", 250, "display.max_rows", 200):
            print(table.drop(columns=["why"]).to_string(index=False))
        print("\nwhy (GiB per resident part and its terms):")
        for _, r in table.iterrows():
            print(f"  {r['notebook']} {r['stage']} [{r['device']}]: {r['why']}")
    if plan.device == "cuda":
        print(
            f"\ntraining recipes (micro-batch x accumulation now, and the plan's choice on {plan.gpu_gib:g} GiB):"
        )
        for key, r in recipe_batches(params, plan.gpu_gib).items():
            print(
                f"  {key}: {r['per_device_train_batch_size']} x {r['gradient_accumulation_steps']}; plan "
                f"{r['planned_batch']} x {r['planned_accumulation']}"
                + ("" if r["planned_batch"] else " (none fits)")
            )
        disk = disk_gib(params)
        print(
            f"\ndisk: run folder about {disk['run folder']:.0f} GiB, hub cache about {disk['hub cache']:.0f} GiB"
        )
        by_unit, source = unit_hours(params)
        print(
            f"GPU-hours on one GPU ({source}): "
            + ", ".join(f"{u} {h:.1f}" for u, h in sorted(by_unit.items()))
            + f"; total {sum(by_unit.values()):.1f}"
        )
    refusals = plan.refusals()
    if refusals:
        for line in refusals:
            print(f"refused: {line}", file=sys.stderr)
        return 2
    print(f"\nevery stage fits ({len(plan.stages)} stage placements)")
    return 0
