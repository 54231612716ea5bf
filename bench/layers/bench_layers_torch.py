"""PyTorch 2.x side of ember_bench_layers: one training step of a single layer -- forward of the
layer and a ReLU, loss = sum of the outputs, backward to the weight, the bias and the input (which
requires a gradient) -- timed after warm-up steps, for the same cases as bench_layers.cpp:
  linear1024  Linear 1024->1024, batch 256          linear2048  Linear 2048->2048, batch 256
  conv64      Conv2d 64->64 3x3 pad 1, 32x32, batch 64
  conv128     Conv2d 128->128 3x3 pad 1, 16x16, batch 32
  conv256     Conv2d 256->256 3x3 pad 1, 8x8, batch 16
Weights: the layers' default initialisation after torch.manual_seed(0); input N(0, 1); gradients
set to None before each step. Prints one RESULT line per case in ember_bench_layers' format.

    python bench_layers_torch.py --threads 2 [--cases conv64 ...] [--warmup 3] [--steps 7]
"""
import argparse
import sys
import time

import torch
from torch import nn

# name: (conv, batch, in, out, H = W of a conv input)
CASES = {
    "linear1024": (False, 256, 1024, 1024, 0),
    "linear2048": (False, 256, 2048, 2048, 0),
    "conv64": (True, 64, 64, 64, 32),
    "conv128": (True, 32, 128, 128, 16),
    "conv256": (True, 16, 256, 256, 8),
}


def macs(conv, batch, cin, cout, size):
    """Multiply-adds of the forward pass (3x3 kernels, padding 1: the output is as large as the input)."""
    return batch * cout * cin * 9 * size * size if conv else batch * cin * cout


def time_case(conv, batch, cin, cout, size, warmup, steps):
    """The step times in ms of `steps` steps after `warmup` untimed ones."""
    torch.manual_seed(0)
    layer = nn.Conv2d(cin, cout, 3, 1, 1) if conv else nn.Linear(cin, cout)
    x = torch.randn((batch, cin, size, size) if conv else (batch, cin), requires_grad=True)
    ms = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        layer.zero_grad(set_to_none=True)
        x.grad = None
        torch.relu(layer(x)).sum().backward()
        if i >= warmup:
            ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=7)
    a = ap.parse_args()
    if a.threads < 1 or a.steps < 1 or a.warmup < 0:
        sys.exit("bench_layers_torch: --threads and --steps must be positive, --warmup not negative")
    torch.set_num_threads(a.threads)
    fw = "torch" + torch.__version__.split("+")[0]
    for name in a.cases:
        shape = CASES[name]
        ms = sorted(time_case(*shape, a.warmup, a.steps))
        median = ms[len(ms) // 2]
        print(f"RESULT fw={fw} case={name} threads={a.threads} ms={median:.3f} min_ms={ms[0]:.3f} "
              f"gflops={3 * 2 * macs(*shape) / (median * 1e-3) / 1e9:.1f} steps={a.steps}", flush=True)


if __name__ == "__main__":
    main()
