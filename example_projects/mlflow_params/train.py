"""A tiny 'training' loop: fits y = 2x + 1 by gradient descent, stdlib only."""

import argparse
import json
import os

parser = argparse.ArgumentParser()
parser.add_argument("--alpha", type=float, required=True)
parser.add_argument("--l1-ratio", type=float, required=True)
parser.add_argument("--epochs", type=int, required=True)
parser.add_argument("--optimizer", choices=["sgd", "adam"], required=True)
parser.add_argument("--verbose", choices=["true", "false"], required=True)
args = parser.parse_args()

data = [(x / 10, 2 * x / 10 + 1) for x in range(20)]
w, b = 0.0, 0.0
for epoch in range(args.epochs):
    for x, y in data:
        err = (w * x + b) - y
        w -= args.alpha * 0.1 * err * x
        b -= args.alpha * 0.1 * err
    loss = sum(((w * x + b) - y) ** 2 for x, y in data) / len(data)
    print(f"epoch {epoch} loss {loss:.4f}")

out = os.environ.get("RUN_PROJECT_OUTPUT_DIR", ".")
with open(os.path.join(out, "model.json"), "w") as f:
    json.dump({"w": w, "b": b}, f)
print(f"trained w={w:.3f} b={b:.3f}")
