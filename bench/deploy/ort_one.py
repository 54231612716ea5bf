"""The ONNX Runtime side of the deployment benchmark: the least a Python program does to run one
.onnx model over one .npy input and save the output (what ember-run MODEL --input --output does).

Usage: python ort_one.py MODEL.onnx IN.npy OUT.npy [THREADS]
THREADS > 0 sets intra_op_num_threads (and inter_op_num_threads = 1); 0 or absent keeps ORT's
defaults. Prints one line after the output is written: CLOCK_MONOTONIC stamps in ns (system-wide on
Linux, so bench/deploy/compare.py subtracts its own spawn time from them) at the script's first
line, after the imports, after the session is created, after the run and after np.save returned.
"""
import time

t_start = time.monotonic_ns()
import sys  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

t_import = time.monotonic_ns()
model, inp, out = sys.argv[1:4]
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 0
opts = ort.SessionOptions()
if threads > 0:
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
t_session = time.monotonic_ns()
y = session.run(None, {session.get_inputs()[0].name: np.load(inp)})[0]
t_run = time.monotonic_ns()
np.save(out, y)
t_saved = time.monotonic_ns()
print("ORT start_ns=%d import_ns=%d session_ns=%d run_ns=%d saved_ns=%d" % (t_start, t_import, t_session, t_run, t_saved))
