"""Markdown table of a sdxl_cost.py JSON:
python benchmarks/report.py RESULTS.json [--readme README.md [--marker performance-table]]
(--readme replaces the table between the two ``<!-- MARKER -->`` lines)."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def _number(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(results: dict) -> str:
    unet = "Full-size SDXL UNet (2.57 B parameters" if results["unet"] == "sdxl" else "Tiny SDXL-shaped UNet ("
    lines = [f"{unet}, random weights), {results['size']}x{results['size']} px, {results['steps']} DDIM steps with "
             f"the paper's settings, CFG batched; {results.get('device', 'cpu')}, {results.get('dtype', 'fp32')}, "
             f"{results['machine'].split(', ')[-1]} RAM, {results['date']}; medians of {results['repeats']} interleaved repeats. Step "
             "costs are measured; a whole generation is the counted steps of each kind times their measured cost. "
             "Activation memory: the most bytes of tensors alive at once beyond the weights, one untimed run.", "",
             "| N | configuration | UNet calls | rows per call | s/step | step × vanilla | generation × vanilla "
             "| peak activation (GiB) | activation × vanilla | process RSS (GiB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    calls = results["unet_calls"]
    for n, r in sorted(results["by_images"].items(), key=lambda x: int(x[0])):
        for c in dict.fromkeys([*r["seconds_per_step"], *r["generation_ratio"]]):  # step kinds, then generations
            rows = r.get("unet_rows", {}).get(c)
            lines.append(f"| {n} | {c} | {calls.get(c, '–') if c in r['generation_ratio'] else '–'} | {'–' if rows is None else int(rows)} | "
                         f"{_number(r['seconds_per_step'].get(c), 2)} | {_number(r['step_ratio'].get(c), 3)} | "
                         f"{_number(r['generation_ratio'].get(c), 3)} | {_number(r.get('peak_activation_gib', {}).get(c), 3)} | "
                         f"{_number(r.get('activation_ratio', {}).get(c), 2)} | "
                         f"{_number(r['peak_rss_gib'].get(c), 2)} |")
    slopes = results.get("activation_slope_gib_per_image") or {}
    if slopes:
        lines += ["", "Activation memory grows per image (least squares over N): " +
                  ", ".join(f"{c} {s:.3f} GiB" for c, s in slopes.items()) + "."]
    return re.sub(r"\| nan(?= \|)", "| –", "\n".join(lines)) + "\n"


def replace_between(text: str, marker: str, body: str) -> str:
    mark = f"<!-- {marker} -->"
    before, found, rest = text.partition(mark)
    _, found_end, after = rest.partition(mark)
    if not (found and found_end):
        raise SystemExit(f"no pair of {mark} lines in the file")
    return f"{before}{mark}\n{body}{mark}{after}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path)
    p.add_argument("--readme", type=Path)
    p.add_argument("--marker", default="performance-table")
    a = p.parse_args(argv)
    text = table(json.loads(a.results.read_text()))
    if a.readme:
        a.readme.write_text(replace_between(a.readme.read_text(), a.marker, text))
    else:
        print(text)


if __name__ == "__main__":
    main()
