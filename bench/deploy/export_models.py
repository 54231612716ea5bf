#!/usr/bin/python3
"""Writes the three example autoencoders (examples/common/models.h) with one set of fixed-seed
weights for both runtimes of the deployment benchmark, and one test image as their input.

For each model M in lit, mlp, conv, into OUT/:
  M.onnx              torch.onnx.export (opset 17, batch axis dynamic)
  M.arch.json, M.safetensors   tools/torch_export.py's files; `ember-ckpt import-torch` makes M.ckpt
  M.ckpt              only with --ember-ckpt
  M.input.npy         one Fashion-MNIST test image, f32 pixels / 255: (1, 784), or (1, 1, 28, 28) for conv
  M.torch.npy         PyTorch's output for that image (the reference both runtimes are checked against)
  M.pt                the state_dict (torch.save), for PyTorch runs of the same weights (bench/inference)

Usage: python bench/deploy/export_models.py OUT [--ember-ckpt build/bin/ember-ckpt] [--data DIR]
       [--index 0] [--seed 0]
Needs PyTorch (>= 1.13; torch.onnx.export does not need the `onnx` package) and numpy.
"""
import argparse
import gzip
import inspect
import os
import subprocess
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import torch_export  # noqa: E402

MODELS = ("lit", "mlp", "conv")
OPSET = 17
# PyTorch 2.9 and later export through torch.export (which needs the onnxscript package) unless
# dynamo=False; the TorchScript exporter needs nothing more, and for these models writes the
# nodes PyTorch 1.13 writes (Gemm for Linear, Conv, ConvTranspose, Relu, Sigmoid).
EXPORT_ARGS = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def build(name):
    """The model as examples/common/models.cpp builds it: encoder and decoder Sequentials, so the
    state_dict keys are encoder.<i>.weight ... as in Ember's checkpoints."""
    if name == "lit":
        enc = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 3))
        dec = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 784))
    elif name == "mlp":
        enc = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 32))
        dec = nn.Sequential(nn.ReLU(), nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 512), nn.ReLU(),
                            nn.Linear(512, 784), nn.Sigmoid())
    elif name == "conv":
        enc = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())
        dec = nn.Sequential(nn.ConvTranspose2d(32, 16, 3, 2, 1, 1), nn.ReLU(),
                            nn.ConvTranspose2d(16, 1, 3, 2, 1, 1), nn.Sigmoid())
    else:
        raise ValueError("[export_models] unknown model '%s' (expected lit, mlp or conv)" % name)
    model = nn.Sequential()
    model.add_module("encoder", enc)
    model.add_module("decoder", dec)
    return model.eval()


def read_idx_image(path, index):
    """Image `index` of an IDX (optionally gzipped) u8 image file, as (28, 28) u8."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    rank = int.from_bytes(data[0:4], "big") & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    images = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)
    if not 0 <= index < images.shape[0]:
        raise ValueError("[export_models] --index %d: '%s' holds %d images" % (index, path, images.shape[0]))
    return images[index]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output folder")
    ap.add_argument("--ember-ckpt", help="ember-ckpt binary: also run import-torch to make M.ckpt")
    ap.add_argument("--data", default=os.environ.get("EMBER_DATA") or "/usr/share/datasets/fashion-mnist")
    ap.add_argument("--index", type=int, default=0, help="which test image (default 0)")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed before each model (default 0)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    image = read_idx_image(os.path.join(args.data, "t10k-images-idx3-ubyte.gz"), args.index)
    pixels = (image.astype(np.float32) / np.float32(255)).reshape(1, 784)
    for name in args.models:
        torch.manual_seed(args.seed)
        model = build(name)
        x = pixels.reshape(1, 1, 28, 28) if name == "conv" else pixels
        x = np.ascontiguousarray(x)
        path = lambda ext: os.path.join(args.out, name + ext)  # noqa: E731
        np.save(path(".input.npy"), x)
        with torch.no_grad():
            y = model(torch.from_numpy(x)).numpy()
            np.save(path(".torch.npy"), y)
            torch.onnx.export(model, torch.from_numpy(x), path(".onnx"), opset_version=OPSET,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, **EXPORT_ARGS)
        torch.save(model.state_dict(), path(".pt"))
        # use_safetensors=False: the script's own writer, so the bytes depend on nothing installed
        torch_export.export(model, path(".arch.json"), path(".safetensors"), use_safetensors=False)
        if args.ember_ckpt:
            subprocess.run([args.ember_ckpt, "import-torch", path(".arch.json"), path(".safetensors"), path(".ckpt")],
                           check=True, stdout=subprocess.DEVNULL)
        print("export_models: %s: %s, input %s, output %s, torch %s" % (
            name, "onnx + ckpt" if args.ember_ckpt else "onnx + arch/safetensors", x.shape, y.shape, torch.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
