"""Reads a model file made by another project's run and writes predictions."""

import json
import sys

import run_project_client as rp

with open(sys.argv[1]) as handle:
    w = json.load(handle)["w"]
with open("predictions.csv", "w") as out:
    out.write("x,y\n")
    for x in range(1, 4):
        out.write(f"{x},{w * x:.4f}\n")
rp.log_metric("w", w)
