#!/usr/bin/python3
"""Trains the `lit` autoencoder of examples/common/models.h with PyTorch and, optionally, with
ember-mnist-ae, under the same settings, and prints the validation MSE of both.

Settings (as ember-mnist-ae fit --model lit): Linear(784,64)-ReLU-Linear(64,3) /
Linear(3,64)-ReLU-Linear(64,784), pixels/255, MSE (mean), Adam(lr=1e-3), batch 256, a new random
order of the 60000 training images each epoch (last batch kept), 3 epochs; val MSE = mean squared
error over all pixels of the 10000 test images (what Ember logs as val_loss at the last epoch).
Seed policy: seed S seeds the weight initialisation and the shuffling in both frameworks (their
random streams differ, so runs are compared as averages over several seeds).

Usage: /usr/bin/python3 scripts/compare_torch.py [--ember build/bin/ember-mnist-ae] [--data DIR]
       [--epochs 3] [--seeds 0 1 2] [--threads 2]
Needs Debian's python3-torch (run it with /usr/bin/python3) and numpy.
"""
import argparse
import csv
import gzip
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    rank = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def find(dir_, prefix):
    for name in (prefix, prefix + ".gz"):
        p = os.path.join(dir_, name)
        if os.path.exists(p):
            return p
    sys.exit(f"compare_torch: {dir_} lacks {prefix}[.gz]")


def load_split(dir_, prefix):
    images = read_idx(find(dir_, f"{prefix}-images-idx3-ubyte"))
    # as Ember's mnist_dataset: uint8 -> float32, divided by 255
    return torch.from_numpy(images.copy()).reshape(len(images), -1).float().div(255)


def torch_run(train, test, seed, epochs, batch_size=256, lr=1e-3):
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 3))
    decoder = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 784))
    model = nn.Sequential(encoder, decoder)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    shuffle = torch.Generator().manual_seed(seed)
    n = len(train)
    for _ in range(epochs):
        order = torch.randperm(n, generator=shuffle)
        for start in range(0, n, batch_size):
            x = train[order[start:start + batch_size]]
            loss = nn.functional.mse_loss(model(x), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(test), batch_size):
            x = test[start:start + batch_size]
            total += nn.functional.mse_loss(model(x), x).item() * len(x)
    return total / len(test)


def ember_run(binary, data, seed, epochs, threads):
    with tempfile.TemporaryDirectory() as root:
        cmd = [binary, "fit", "--model", "lit", "--max-epochs", str(epochs), "--seed", str(seed), "--data", data,
               "--default-root-dir", root, "--no-checkpointing", "--no-progress", "--threads", str(threads)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(root, "ember_logs", "version_0", "metrics.csv")) as f:
            vals = [float(r["val_loss"]) for r in csv.DictReader(f) if r.get("val_loss")]
    return vals[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ember", help="path of ember-mnist-ae to compare with (omit: PyTorch only)")
    ap.add_argument("--data", default=os.environ.get("EMBER_DATA") or "/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    train, test = load_split(args.data, "train"), load_split(args.data, "t10k")
    print(f"data: {args.data} ({len(train)} train, {len(test)} test images); lit, Adam lr 1e-3, batch 256, "
          f"{args.epochs} epochs, torch {torch.__version__}, {args.threads} threads")
    print(f"{'seed':>4}  {'torch val MSE':>13}  {'s':>5}" + (f"  {'ember val MSE':>13}  {'s':>5}" if args.ember else ""))
    t_vals, e_vals = [], []
    for seed in args.seeds:
        t0 = time.time()
        t_vals.append(torch_run(train, test, seed, args.epochs))
        t1 = time.time()
        line = f"{seed:>4}  {t_vals[-1]:>13.6f}  {t1 - t0:>5.1f}"
        if args.ember:
            e_vals.append(ember_run(args.ember, args.data, seed, args.epochs, args.threads))
            line += f"  {e_vals[-1]:>13.6f}  {time.time() - t1:>5.1f}"
        print(line, flush=True)
    t_mean = sum(t_vals) / len(t_vals)
    line = f"mean  {t_mean:>13.6f}  {'':>5}"
    if args.ember:
        e_mean = sum(e_vals) / len(e_vals)
        line += f"  {e_mean:>13.6f}"
    print(line)
    if args.ember:
        ratio = e_mean / t_mean
        ok = ratio <= 1.05
        print(f"ember / torch = {ratio:.4f} ({'within' if ok else 'NOT within'} the 5% bound)")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
