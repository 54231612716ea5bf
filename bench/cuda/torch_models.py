#!/usr/bin/env python3
"""PyTorch eager twin of ember-bench-cuda: the same three autoencoders (lit, mlp, conv),
synthetic pixels in [0, 1) resident on the GPU, MSE loss, Adam (lr 1e-3), one optimizer step per
batch. Prints one line per model: RESULT torch <model> <samples/s> <ms/step>.
FP32 throughout unless --tf32 (then cuDNN and matmuls may use TF32, PyTorch's conv default)."""
import argparse
import sys
import time


def build(name, nn):
    if name == "lit":
        return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 3),
                             nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 784)), 256, (784,)
    if name == "mlp":
        dims = [784, 512, 128, 32, 128, 512, 784]
        layers = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            layers.append(nn.ReLU() if i + 2 < len(dims) else nn.Sigmoid())
        return nn.Sequential(*layers), 256, (784,)
    if name == "conv":
        return nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                             nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                             nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid()), \
            128, (1, 28, 28)
    raise SystemExit(f"unknown model {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--models", default="lit,mlp,conv")
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--device", default="cuda", help="cpu only checks the script itself")
    a = ap.parse_args()
    import torch
    from torch import nn
    if a.device == "cuda" and not torch.cuda.is_available():
        print("SKIP torch: this torch build has no CUDA device", flush=True)
        return 0
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.manual_seed(0)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    for name in a.models.split(","):
        net, batch, shape = build(name, nn)
        net = net.to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        data = [torch.rand((batch,) + shape, device=dev) for _ in range(8)]

        def step(i):
            x = data[i % len(data)]
            opt.zero_grad()
            loss = nn.functional.mse_loss(net(x), x)
            loss.backward()
            opt.step()
            return loss

        for i in range(a.warmup):
            step(i)
        sync()
        t0 = time.perf_counter()
        for i in range(a.steps):
            loss = step(i)
        loss.item()
        sync()
        dt = time.perf_counter() - t0
        print(f"RESULT torch {name} {a.steps * batch / dt:.1f} {1e3 * dt / a.steps:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
