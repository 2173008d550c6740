"""Draws benches/throughput.png from the transfer table in benches/RESULTS.md."""
import pathlib
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = pathlib.Path(__file__).parent
text = (here / "RESULTS.md").read_text()
section = text.split("## Transfer throughput", 1)[1].split("##", 1)[0]
rows = [line for line in section.splitlines() if re.match(r"^\| *\d", line)]
header = [h.strip() for h in section.splitlines()[2].strip("|").split("|")]


def rate(cell):
    m = re.match(r"([\d.]+)([kM]?)", cell.strip())
    return float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6}[m.group(2)]


sizes = [r.strip("|").split("|")[0].strip() for r in rows]
series = {h: [rate(r.strip("|").split("|")[i]) for r in rows] for i, h in enumerate(header) if i > 0}
fig, ax = plt.subplots(figsize=(9, 4.5))
width = 0.8 / len(series)
for k, (name, values) in enumerate(series.items()):
    ax.bar([i + k * width for i in range(len(sizes))], values, width, label=name)
ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))], [f"{s} rows" for s in sizes])
ax.set_yscale("log")
ax.set_ylabel("rows/s (log scale)")
ax.set_title("syncgate sync throughput against the row-copy and session-extension baselines")
ax.legend(fontsize=8, ncol=2)
fig.tight_layout()
fig.savefig(here / "throughput.png", dpi=110)
print("wrote", here / "throughput.png")
