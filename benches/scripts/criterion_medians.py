#!/usr/bin/env python3
"""Prints criterion's median and mean per benchmark of a group.

This host has bursts of steal time that drag criterion's mean and slope up
by 10-30%; the median of the samples is the figure benches/README.md
reports. Usage: benches/scripts/criterion_medians.py maglev_build
"""
import glob
import json
import os
import sys

group = sys.argv[1] if len(sys.argv) > 1 else "maglev_build"
root = os.path.join(os.path.dirname(__file__), "..", "..", "target", "criterion", group)
for path in sorted(glob.glob(os.path.join(root, "**", "new", "estimates.json"), recursive=True)):
    name = os.path.relpath(os.path.dirname(os.path.dirname(path)), root)
    est = json.load(open(path))
    median, mean = est["median"]["point_estimate"], est["mean"]["point_estimate"]
    lo, hi = est["median"]["confidence_interval"]["lower_bound"], est["median"]["confidence_interval"]["upper_bound"]
    print(f"{name:16} median {median / 1e3:9.1f} µs [{lo / 1e3:.1f}–{hi / 1e3:.1f}]   mean {mean / 1e3:9.1f} µs")
