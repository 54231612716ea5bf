#!/usr/bin/env python3
"""The PyTorch side of deploying a model trained in PyTorch with Ember (README, "Deploying a model").

  python3 examples/deploy/torch_cnn.py train OUT_DIR [--data DIR] [--steps N]
      Trains make_model() (a small CNN classifier: Conv2d-BatchNorm2d-ReLU-MaxPool2d twice, then
      Flatten-Linear) with Adam on the MNIST-format training split for N steps (default 300, batches
      of 64, seed 0) and saves its state_dict as OUT_DIR/cnn.pt. tools/torch_export.py then exports
      it with `examples/deploy/torch_cnn.py:make_model ... --state-dict OUT_DIR/cnn.pt`.
  python3 examples/deploy/torch_cnn.py compare IMAGES.npy LABELS.npy EMBER_OUT.npy --state-dict OUT_DIR/cnn.pt
      Runs the trained model in PyTorch (eval mode) on the u8 images divided by 255, as
      `ember-run --scale 1/255` does, and compares with ember-run's output: prints the largest
      absolute difference and the predicted classes of both against the labels. Exits with 1 when
      a logit differs by more than 1e-5 times max(1, |PyTorch's logit|).

Needs PyTorch (>= 1.13) and NumPy; the data directory defaults to $EMBER_DATA, else Debian's
Fashion-MNIST (/usr/share/datasets/fashion-mnist).
"""
import argparse
import gzip
import os
import struct
import sys

import numpy as np
import torch
from torch import nn

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def make_model():
    """The classifier, made only of layers Ember has (so tools/torch_export.py can export it)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def read_idx(directory, name):
    """The array in <directory>/<name> or <name>.gz (IDX: big-endian header, then u8 data)."""
    path = os.path.join(directory, name)
    opener = open
    if not os.path.exists(path):
        path, opener = path + ".gz", gzip.open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit("torch_cnn.py: %s is not an IDX file of u8 values" % path)
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def train(args):
    torch.manual_seed(0)
    images = torch.from_numpy(read_idx(args.data, "train-images-idx3-ubyte").copy()).float().div(255).unsqueeze(1)
    labels = torch.from_numpy(read_idx(args.data, "train-labels-idx1-ubyte").astype(np.int64))
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.randperm(len(images))
    for step in range(args.steps):
        idx = order[(step * 64) % len(images):][:64]
        loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print("step %d: loss %.4f" % (step, loss.item()))
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "cnn.pt")
    torch.save(model.state_dict(), path)
    print("wrote %s" % path)


def compare(args):
    model = make_model()
    model.load_state_dict(torch.load(args.state_dict, map_location="cpu"))
    model.eval()
    images = np.load(args.images)
    if images.dtype != np.uint8 or images.ndim != 4:
        sys.exit("torch_cnn.py: %s holds %s %s; expected u8 images (N, 1, 28, 28)" %
                 (args.images, images.dtype, images.shape))
    with torch.no_grad():
        expected = model(torch.from_numpy(images).float().div(255)).numpy()
    ember = np.load(args.ember_out)
    if ember.shape != expected.shape:
        sys.exit("torch_cnn.py: %s holds %s; PyTorch gives %s" % (args.ember_out, ember.shape, expected.shape))
    labels = np.load(args.labels)
    diff = np.abs(ember - expected)
    # f32 sums of a few thousand terms in another order: a difference of one unit in the 6th
    # significant digit, so within 1e-5 of each logit's size (or 1e-5 absolute below 1)
    scaled = float((diff / np.maximum(1.0, np.abs(expected))).max())
    for i, (e, t, y) in enumerate(zip(ember.argmax(1), expected.argmax(1), labels)):
        print("image %d: Ember %-11s PyTorch %-11s label %s" % (i, CLASSES[e], CLASSES[t], CLASSES[y]))
    print("largest |Ember - PyTorch| over %d x %d logits: %.3g (%.3g relative to max(1, |PyTorch|))" %
          (ember.shape[0], ember.shape[1], float(diff.max()), scaled))
    return 0 if scaled <= 1e-5 else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the classifier and save its state_dict as OUT_DIR/cnn.pt")
    t.add_argument("out_dir", metavar="OUT_DIR")
    t.add_argument("--data", default=os.environ.get("EMBER_DATA", "/usr/share/datasets/fashion-mnist"))
    t.add_argument("--steps", type=int, default=300)
    c = sub.add_parser("compare", help="compare ember-run's output with PyTorch's")
    c.add_argument("images", metavar="IMAGES.npy")
    c.add_argument("labels", metavar="LABELS.npy")
    c.add_argument("ember_out", metavar="EMBER_OUT.npy")
    c.add_argument("--state-dict", required=True, metavar="CNN.pt", help="the state_dict that train wrote")
    args = p.parse_args()
    return train(args) if args.command == "train" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
