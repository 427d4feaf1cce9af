#!/usr/bin/env python3
"""Collects the study of tools/study.sh into the Markdown table of docs/results.md: for each run its
steps, training wall time, test bits/dim (+- standard error) and the decoder / KL parts.
Usage: tools/study_table.py [runs/study]"""
import csv
import os
import re
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "runs/study"
order = ["eps-simple", "eps-vlb", "x0-simple", "x0-vlb", "mean-simple", "mean-vlb",
         "eps-simple-cosine", "eps-simple-exponential"]
print("| run | pred | loss | schedule | steps | train time | test bits/dim | L_0 (decoder) | KL sum |")
print("|---|---|---|---|---|---|---|---|---|")
for name in order:
    d = os.path.join(out, name)
    if not os.path.isdir(d):
        continue
    rows = [r for r in csv.DictReader(open(os.path.join(d, "loss.csv"))) if r.get("elapsed_s")]
    steps, secs = rows[-1]["step"], float(rows[-1]["elapsed_s"])
    parts = name.split("-")
    sched = parts[2] if len(parts) > 2 else "linear"
    bpd = dec = kl = "-"
    ev = os.path.join(d, "eval.txt")
    if os.path.exists(ev):
        t = open(ev).read()
        m = re.search(r"bits/dim = ([\d.]+) \+- ([\d.]+)", t)
        bpd = "%s +- %s" % (m.group(1), m.group(2)) if m else "-"
        m = re.search(r"decoder L_0\s+([\d.]+)", t)
        dec = m.group(1) if m else "-"
        m = re.search(r"sum of KL \S+\s+([\d.]+)", t)
        kl = m.group(1) if m else "-"
    print("| %s | %s | %s | %s | %s | %.1f min | %s | %s | %s |" % (name, parts[0], parts[1], sched, steps, secs / 60,
                                                                   bpd, dec, kl))
