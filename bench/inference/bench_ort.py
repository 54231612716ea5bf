"""The peers of ember_bench_infer: ONNX Runtime (CPU provider) on the .onnx and PyTorch 2.x no-grad
eager on the state_dict that bench/deploy/export_models.py wrote for one example autoencoder, over
the 10k Fashion-MNIST test images held in memory as f32 pixels / 255. Measures what
ember_bench_infer measures and prints its RESULT lines:
  batch=B: samples/s of passes over the 10k images in batches of B (the last one smaller), each
           batch's output copied into one output array; median of --passes timed passes after one
           untimed pass
  batch=1: latency of one image's run, median and 90th percentile in microseconds over
           --latency-images single images (after 20 untimed ones)
--check EMBER.npy (ember_bench_infer --write-output) compares the outputs of the first B images
with Ember's instead and prints the largest absolute difference; exit status 1 above --tol.

    python bench_ort.py --fw ort|torch --model lit|mlp|conv --dir EXPORTS --threads N [--data DIR]
                        [--batch 256] [--passes 5] [--latency-images 1000] [--check EMBER.npy]

The ORT process imports numpy and onnxruntime only (PyTorch is not loaded next to it).
ORT runs with intra_op_num_threads = N and inter_op_num_threads = 1; PyTorch with
torch.set_num_threads(N). The caller sets OMP_NUM_THREADS = N for both.
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np

MODELS = ("lit", "mlp", "conv")


def load_images(data_dir, model):
    """The test split's images as f32 pixels / 255: (N, 784), or (N, 1, 28, 28) for conv."""
    for name in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            break
    else:
        sys.exit(f"bench_ort: no t10k-images-idx3-ubyte(.gz) in {data_dir} (point --data or EMBER_DATA at it)")
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    if int.from_bytes(data[0:4], "big") != 2051:
        sys.exit(f"bench_ort: not an IDX3 image file: {path}")
    n, rows, cols = (int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16, count=n * rows * cols)
    # u8 -> f32, then / 255 in f32: the values Ember's MnistDataset gives
    x = pixels.astype(np.float32) / np.float32(255)
    return x.reshape(n, 1, rows, cols) if model == "conv" else x.reshape(n, rows * cols)


def need(path):
    if not os.path.exists(path):
        sys.exit(f"bench_ort: {path} not found (bench/deploy/export_models.py writes it)")
    return path


def ort_runner(args):
    """(version, run(x) -> output array) for ONNX Runtime."""
    import onnxruntime as ort

    onnx_path = need(os.path.join(args.dir, args.model + ".onnx"))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    if args.check:
        try:
            import onnx

            graph = onnx.load(onnx_path)
            print(f"bench_ort: {onnx_path}: opset {graph.opset_import[0].version}, nodes "
                  + ",".join(n.op_type for n in graph.graph.node))
        except ImportError:
            pass
    return "ort" + ort.__version__, lambda x: session.run(None, {name: x})[0]


def torch_runner(args):
    """(version, run(x) -> output array) for PyTorch eager under no_grad, the same weights."""
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy"))
    import export_models

    torch.set_num_threads(args.threads)
    model = export_models.build(args.model)
    model.load_state_dict(torch.load(need(os.path.join(args.dir, args.model + ".pt")), weights_only=True))
    model.eval()

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return "torch" + torch.__version__.split("+")[0], run


def quantile(v, q):
    """The value at quantile q (0..1) of v, by nearest rank (as ember_bench_infer takes it)."""
    v = sorted(v)
    return v[min(int(q * (len(v) - 1) + 0.5), len(v) - 1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fw", required=True, choices=["ort", "torch"])
    ap.add_argument("--model", required=True, choices=MODELS)
    ap.add_argument("--dir", required=True, help="export_models.py's output folder (M.onnx, M.pt)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=os.environ.get("EMBER_DATA") or "/usr/share/datasets/fashion-mnist")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--latency-images", type=int, default=1000)
    ap.add_argument("--check", help="Ember's outputs of the first batch (.npy): compare instead of timing")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest absolute difference --check accepts")
    args = ap.parse_args()
    if args.threads < 1 or args.batch < 1 or args.passes < 1 or args.latency_images < 0:
        sys.exit("bench_ort: --threads, --batch and --passes must be positive, --latency-images not negative")

    version, run = (ort_runner if args.fw == "ort" else torch_runner)(args)
    x = load_images(args.data, args.model)
    n = x.shape[0]
    tag = f"fw={version} model={args.model} threads={args.threads}"

    if args.check:
        ember = np.load(need(args.check))
        y = run(x[:min(args.batch, n)])
        if y.shape != ember.shape:
            sys.exit(f"bench_ort: {args.check} holds shape {ember.shape}, {args.fw} gives {y.shape}")
        diff = float(np.abs(y.astype(np.float64) - ember.astype(np.float64)).max())
        print(f"RESULT {tag} check_images={y.shape[0]} max_abs_diff={diff:.3g}", flush=True)
        if not diff <= args.tol:
            print(f"bench_ort: {args.model}: {args.fw} and Ember differ by {diff:.3g} (more than {args.tol:g})",
                  file=sys.stderr)
            return 1
        return 0

    out = np.empty((n,) + run(x[:1]).shape[1:], dtype=np.float32)

    def one_pass():
        for start in range(0, n, args.batch):
            out[start:start + args.batch] = run(x[start:start + args.batch])

    one_pass()  # untimed
    sps = []
    for _ in range(args.passes):
        t0 = time.perf_counter()
        one_pass()
        sps.append(n / (time.perf_counter() - t0))
    print(f"RESULT {tag} batch={args.batch} sps={quantile(sps, 0.5):.1f}", flush=True)

    if args.latency_images > 0:
        for i in range(20):
            run(x[i % n:i % n + 1])
        us = []
        for i in range(args.latency_images):
            xi = x[i % n:i % n + 1]
            t0 = time.perf_counter()
            run(xi)
            us.append((time.perf_counter() - t0) * 1e6)
        print(f"RESULT {tag} batch=1 latency_us={quantile(us, 0.5):.2f} p90_us={quantile(us, 0.9):.2f} "
              f"images={args.latency_images}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
