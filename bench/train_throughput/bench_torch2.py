"""PyTorch 2.x (from PyPI) side of the training benchmarks: the examples' autoencoders (lit, mlp,
conv, as examples/common/models.cpp and bench_torch.cpp build them, default init), Adam(lr 1e-3),
MSE, one shuffled epoch of the 60k Fashion-MNIST images in memory, then a no-grad pass over the
10k test images; in float32 or under CPU autocast (bfloat16), as PyTorch users run mixed precision
on the CPU. Prints one "RESULT key=value ..." line in ember_bench_train's format. --gemm N times
an (N, N) x (N, N) float32 torch.mm instead (GFLOP/s, best of 5 rounds, as ember_bench_train --gemm).

    python bench_torch2.py --model mlp --threads 2 [--precision 32-true|bf16-mixed] [--data DIR]
    python bench_torch2.py --gemm 1024 --threads 2
"""
import argparse
import contextlib
import gzip
import os
import resource
import struct
import time

import numpy as np
import torch
from torch import nn


def load_images(path, nchw):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        magic, n, r, c = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            raise SystemExit(f"[bench] not an IDX3 image file: {path}")
        x = np.frombuffer(f.read(n * r * c), dtype=np.uint8).astype(np.float32) / 255.0
    t = torch.from_numpy(x.reshape(n, r * c).copy())
    return t.view(n, 1, r, c) if nchw else t


def find(dir_, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(dir_, name)
        if os.path.exists(p):
            return p
    raise SystemExit(f"[bench] no {stem}(.gz) in {dir_}")


def build(m):
    if m == "lit":
        return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 3), nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 784))
    if m == "mlp":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU(),
                             nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 784), nn.Sigmoid())
    if m == "conv":
        return nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                             nn.ConvTranspose2d(32, 16, 3, 2, 1, 1), nn.ReLU(), nn.ConvTranspose2d(16, 1, 3, 2, 1, 1), nn.Sigmoid())
    raise SystemExit(f"[bench] unknown model '{m}' (expected lit, mlp or conv)")


def best_gflops(n):
    """GFLOP/s of an (n, n) x (n, n) float32 product: enough products to take about 0.2 s per round
    (counted over 0.05 s after one warm-up product), best of 5 rounds; as measure.h's best_gflops."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    reps, t0 = 1, time.perf_counter()
    while time.perf_counter() - t0 < 0.05:
        torch.mm(a, b)
        reps += 1
    reps *= 4
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        best = max(best, 2.0 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="lit")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    ap.add_argument("--data", default=os.environ.get("EMBER_DATA") or "/usr/share/datasets/fashion-mnist")
    ap.add_argument("--gemm", type=int, default=0, help="N > 0: time an N x N x N sgemm instead of training")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    fw = "torch" + torch.__version__.split("+")[0]
    if a.gemm > 0:
        blas = "mkl" if torch.backends.mkl.is_available() else "-"
        print(f"RESULT fw={fw} model=sgemm threads={a.threads} gflops={best_gflops(a.gemm):.1f} blas={blas}", flush=True)
        return
    net = build(a.model)  # first, so that an unknown model is reported before the data is read
    nchw = a.model == "conv"
    train = load_images(find(a.data, "train-images-idx3-ubyte"), nchw)
    test = load_images(find(a.data, "t10k-images-idx3-ubyte"), nchw)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    bs = 128 if a.model == "conv" else 256
    mixed = a.precision == "bf16-mixed"
    scope = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if mixed else contextlib.nullcontext

    t0 = time.perf_counter()
    loss_sum, samples = 0.0, 0
    order = torch.randperm(train.shape[0])
    for i in range(0, train.shape[0], bs):
        x = train.index_select(0, order[i:i + bs])
        opt.zero_grad()
        with scope():
            loss = nn.functional.mse_loss(net(x), x)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * x.shape[0]
        samples += x.shape[0]
    train_sps = samples / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    val_sum, val_n = 0.0, 0
    with torch.no_grad(), scope():
        for i in range(0, test.shape[0], bs):
            x = test[i:i + bs]
            val_sum += nn.functional.mse_loss(net(x).float(), x).item() * x.shape[0]
            val_n += x.shape[0]
    val_sps = val_n / (time.perf_counter() - t0)
    # ru_maxrss is in KiB on Linux
    peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"RESULT fw={fw} precision={a.precision} model={a.model} threads={a.threads} "
          f"train_sps={train_sps:.1f} val_sps={val_sps:.1f} loss={loss_sum / samples:.6f} val_loss={val_sum / val_n:.6f} "
          f"peak_rss_kib={peak_rss_kib}", flush=True)


if __name__ == "__main__":
    main()
