"""Markdown table of a sdxl_cost.py JSON: python benchmarks/report.py RESULTS.json [--readme README.md]
(--readme replaces the table between the performance-table markers)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def table(results: dict) -> str:
    lines = [f"Full-size SDXL UNet (2.57 B parameters, random weights), {results['size']}x{results['size']} px, "
             f"{results['steps']} DDIM steps with the paper's settings, CFG batched; {results['machine']}, "
             f"{results['date']}; medians of {results['repeats']} interleaved repeats. Step costs are measured; "
             "a whole generation is the counted steps of each kind times their measured cost.", "",
             "| N | configuration | UNet calls | s/step | step × vanilla | generation × vanilla | peak RSS (GiB) | RSS × vanilla |",
             "|---|---|---|---|---|---|---|---|"]
    calls = results["unet_calls"]
    for n, r in sorted(results["by_images"].items(), key=lambda x: int(x[0])):
        for c in r["generation_ratio"]:
            step = r["seconds_per_step"].get(c)
            ratio = r["step_ratio"].get(c)
            lines.append(f"| {n} | {c} | {calls[c]} | {f'{step:.2f}' if step else '–'} | "
                         f"{f'{ratio:.3f}' if ratio else '–'} | {r['generation_ratio'][c]:.3f} | "
                         f"{r['peak_rss_gib'].get(c, float('nan')):.2f} | {r['peak_rss_ratio'].get(c, float('nan')):.3f} |")
    return re.sub(r"\| nan(?= \|)", "| –", "\n".join(lines)) + "\n"


MARK = "<!-- performance-table -->"


if __name__ == "__main__":
    text = table(json.loads(Path(sys.argv[1]).read_text()))
    if len(sys.argv) > 3 and sys.argv[2] == "--readme":
        readme = Path(sys.argv[3])
        before, _, rest = readme.read_text().partition(MARK)
        _, _, after = rest.partition(MARK)
        readme.write_text(f"{before}{MARK}\n{text}{MARK}{after}")
    else:
        print(text)
