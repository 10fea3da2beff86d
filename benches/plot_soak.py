#!/usr/bin/python3
"""Draws soak.csv as an SVG line chart (no plotting library needed):
RSS in MiB, and blocked-sources entries in thousands, against time.

    plot_soak.py soak.csv soak.svg TITLE
"""
import csv
import sys

src, dst, title = sys.argv[1], sys.argv[2], sys.argv[3]
rows = list(csv.DictReader(open(src)))
t = [float(r["seconds"]) for r in rows]
series = [
    ("RSS (MiB)", [float(r["rss_kib"]) / 1024 for r in rows], "#c0392b"),
    ("blocked-sources entries (thousands)", [float(r["blocked_entries"]) / 1000 for r in rows], "#2c3e50"),
]
W, H, L, R, T, B = 720, 360, 60, 20, 40, 50
tmax = max(t) if t and max(t) > 0 else 1
ymax = max(max(v) for _, v, _ in series) * 1.15 or 1
x = lambda v: L + (W - L - R) * v / tmax
y = lambda v: H - B - (H - T - B) * v / ymax
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="20" text-anchor="middle" font-size="13">{title}</text>',
       f'<line x1="{L}" y1="{H-B}" x2="{W-R}" y2="{H-B}" stroke="black"/>',
       f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="black"/>',
       f'<text x="{W/2}" y="{H-15}" text-anchor="middle">seconds</text>']
for i in range(6):
    v = ymax * i / 5
    out.append(f'<text x="{L-6}" y="{y(v)+4}" text-anchor="end">{v:.0f}</text>')
    out.append(f'<line x1="{L}" y1="{y(v)}" x2="{W-R}" y2="{y(v)}" stroke="#ddd"/>')
    tv = tmax * i / 5
    out.append(f'<text x="{x(tv)}" y="{H-B+16}" text-anchor="middle">{tv:.0f}</text>')
for n, (name, vals, color) in enumerate(series):
    pts = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(t, vals))
    out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
    out.append(f'<text x="{L+10}" y="{T+14+16*n}" fill="{color}">{name}</text>')
out.append("</svg>")
open(dst, "w").write("\n".join(out) + "\n")
