"""Fits y = w*x by gradient descent on a CSV read with plain Python (no pandas).

Writes model.json in the working directory and a loss plot (a PNG made by hand) into
$RUN_PROJECT_OUTPUT_DIR; logs the loss of every epoch through run_project_client.
"""

import argparse
import csv
import json
import os
import struct
import zlib

import run_project_client as rp


def png(path, width, height, points):
    """A tiny black-on-white PNG with one dot per point (x, y in 0..1)."""
    rows = [bytearray(b"\xff" * (width * 3)) for _ in range(height)]
    for x, y in points:
        col, row = int(x * (width - 1)), int((1 - y) * (height - 1))
        rows[row][col * 3 : col * 3 + 3] = b"\x00\x00\x00"
    raw = b"".join(b"\x00" + bytes(r) for r in rows)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        out.write(chunk(b"IDAT", zlib.compress(raw)))
        out.write(chunk(b"IEND", b""))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    with open(args.data, newline="") as handle:
        rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(handle)]
    with open(os.path.join(os.path.dirname(args.data), "notes.txt")) as notes:
        notes.read()
    w, losses = 0.0, []
    scale = max(x * x for x, _ in rows)
    for epoch in range(args.epochs):
        grad = sum(2 * (w * x - y) * x for x, y in rows) / len(rows) / scale
        w -= args.lr * grad * 10
        loss = sum((w * x - y) ** 2 for x, y in rows) / len(rows)
        losses.append(loss)
        rp.log_metric("loss", loss, step=epoch)
    rp.log_metric("acc", 1.0 / (1.0 + losses[-1]))
    rp.log_param("rows", len(rows))
    rp.set_tag("model", "linear")
    with open("model.json", "w") as out:
        json.dump({"w": w}, out)
    top = max(losses) or 1.0
    n = max(len(losses) - 1, 1)
    plot = os.path.join(os.environ.get("RUN_PROJECT_OUTPUT_DIR", "."), "loss.png")
    png(plot, 64, 32, [(i / n, loss / top) for i, loss in enumerate(losses)])
    print(f"w={w:.4f} loss={losses[-1]:.4f}")


if __name__ == "__main__":
    main()
