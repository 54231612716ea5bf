"""PyTorch weights as a .safetensors file for the ember-ckpt import test, plus a checker for files
that ember-ckpt exports.

  /usr/bin/python3 tests/reference/gen_safetensors.py
      writes fixtures/safetensors_torch.safetensors (every dtype Ember has, 0-d and empty tensors,
      a __metadata__ block) and fixtures/safetensors_torch.txt (the same values as a text fixture,
      read by tests/checkpoint/test_tool.cpp).
  python3 tests/reference/gen_safetensors.py --check A.safetensors B.safetensors
      loads both files (with the `safetensors` package when it is installed, otherwise with the
      minimal reader below) and exits 0 when they hold the same tensors bit for bit.

The writer follows the safetensors layout (8-byte little-endian header length, compact JSON header
padded with spaces to a multiple of 8, tensors packed back to back, largest elements first); the
safetensors package (0.8) loads it, which generate() checks when the package is installed.
"""
import json
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

DTYPES = {
    torch.float32: ("F32", "f32"), torch.float64: ("F64", "f64"), torch.float16: ("F16", "f16"),
    torch.bfloat16: ("BF16", "bf16"), torch.int32: ("I32", "i32"), torch.int64: ("I64", "i64"),
    torch.uint8: ("U8", "u8"), torch.bool: ("BOOL", "bool"),
}
BY_NAME = {v[0]: k for k, v in DTYPES.items()}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: go through int16 bits
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save(tensors, path, metadata):
    order = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, t in order:
        b = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype][0], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load(path):
    try:
        from safetensors.torch import load_file
        return load_file(path), "safetensors"
    except ImportError:
        pass
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        dt = BY_NAME[info["dtype"]]
        raw = bytearray(data[8 + n + b:8 + n + e])
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if raw else torch.empty(0, dtype=dt)
        else:
            t = torch.frombuffer(raw, dtype=dt) if raw else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"])
    return out, "built-in reader"


def fmt(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if v != v:
        return "nan"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    return "%.17g" % v


def write_fixture(tensors, path):
    lines = ["# gen_safetensors.py: the tensors of safetensors_torch.safetensors"]
    for name, t in sorted(tensors.items()):
        dims = " ".join(str(d) for d in t.shape)
        lines.append(f"tensor {name} {DTYPES[t.dtype][1]} {t.dim()} {dims}".rstrip())
        flat = t.reshape(-1)
        if t.dtype in (torch.float16, torch.bfloat16):
            flat = flat.float()
        vals = [fmt(x) for x in flat.tolist()]
        if vals:
            lines.append(" ".join(vals))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    assert os.path.getsize(path) < 200_000


def generate():
    torch.manual_seed(0)
    t = {
        "encoder.0.weight": torch.randn(3, 4),
        "encoder.0.bias": torch.randn(4, dtype=torch.float64),
        "half": torch.tensor([1.0, -0.5, 65504.0, 6e-8, float("inf")], dtype=torch.float16),
        "brain": torch.tensor([1.0, -3.0, 1e30, 0.1], dtype=torch.bfloat16),
        "counts": torch.tensor([[-2147483648, -1], [0, 2147483647]], dtype=torch.int32),
        "steps": torch.tensor([-(2**63), 7, 2**63 - 1], dtype=torch.int64),
        "bytes": torch.tensor([0, 1, 127, 255], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(42.5),
        "empty": torch.zeros(0, 2),
        "transposed": torch.arange(6, dtype=torch.float32).reshape(2, 3).t().contiguous(),
    }
    path = os.path.join(OUT, "safetensors_torch.safetensors")
    save(t, path, {"format": "pt", "source": "gen_safetensors.py"})
    write_fixture(t, os.path.join(OUT, "safetensors_torch.txt"))
    back, how = load(path)
    assert set(back) == set(t)
    for k in t:
        assert back[k].dtype == t[k].dtype and torch.equal(back[k], t[k]), k
    print(f"wrote {path} ({os.path.getsize(path)} bytes), reloaded with {how}")


def check(a, b):
    ta, how = load(a)
    tb, _ = load(b)
    if set(ta) != set(tb):
        print("different tensor names:", sorted(set(ta) ^ set(tb)))
        return 1
    for k in ta:
        if ta[k].dtype != tb[k].dtype or ta[k].shape != tb[k].shape or not torch.equal(ta[k], tb[k]):
            print("tensor differs:", k)
            return 1
    print(f"{len(ta)} tensors identical (loaded with {how})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    generate()
