"""PyTorch models exported with tools/torch_export.py, for the `ember-ckpt import-torch` tests.

  /usr/bin/python3 tests/reference/gen_torch_import.py

For each model (mlp, seq1d, autoencoder, cnn) it writes, under fixtures/:
  torch_import_<model>.arch.json      the module tree (tools/torch_export.py)
  torch_import_<model>.safetensors    the state_dict, BatchNorm running stats included
  torch_import_<model>.txt            `x`, an input batch, and `out`, the model's eval-mode output
read by tests/checkpoint/test_torch_import.cpp. The weights are written with the exporter's own
safetensors writer, so the bytes depend on nothing but torch; when the `safetensors` package is
installed it must load them. The script also checks the exporter's errors (an unsupported layer or
option names the class, the module's path and the option) and its command line.
"""
import collections
import json
import os
import subprocess
import sys
import tempfile

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from fixture_io import Writer  # noqa: E402
import torch_export  # noqa: E402

OUT = os.path.join(HERE, "fixtures")


def make_mlp():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(8, 16), nn.LayerNorm(16), nn.GELU(approximate="tanh"), nn.Dropout(0.25),
        nn.Linear(16, 16, bias=False), nn.LeakyReLU(0.1), nn.Linear(16, 6), nn.Unflatten(1, (2, 3)),
        nn.Softmax(dim=2), nn.Flatten(), nn.Identity(), nn.Linear(6, 4), nn.Tanh())


def make_autoencoder():
    torch.manual_seed(2)
    encoder = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, (3, 3), stride=(2, 2), padding=1), nn.ReLU())
    decoder = nn.Sequential(
        nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(4, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid())
    model = nn.Sequential(collections.OrderedDict([("encoder", encoder), ("decoder", decoder)]))
    with torch.no_grad():  # larger weights than the default init, so the output spreads well past 1e-5
        for p in model.parameters():
            p.mul_(4.0)
    return model


def make_cnn():
    """A classifier whose BatchNorm layers saw three training batches (num_batches_tracked = 3)."""
    torch.manual_seed(3)
    model = nn.Sequential(collections.OrderedDict([
        ("features", nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding="same", bias=False), nn.BatchNorm2d(16, momentum=0.3), nn.ReLU(),
            nn.AvgPool2d(2))),
        ("flatten", nn.Flatten()),
        ("head", nn.Sequential(
            nn.Linear(64, 32), nn.BatchNorm1d(32, momentum=None), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))),
    ]))
    model.train()
    g = torch.Generator().manual_seed(30)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(6, 3, 8, 8, generator=g) * 1.5 + 0.5)
    model.eval()
    return model


def make_seq1d():
    """1-D convolutions ('same' padding, stride, dilation, groups) over (N, C, L) sequences."""
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv1d(2, 4, 3, padding="same"), nn.ReLU(),
        nn.Conv1d(4, 6, 2, stride=2, dilation=2, groups=2, bias=False), nn.Tanh(),
        nn.Flatten(), nn.Linear(6 * 3, 3))


MODELS = {
    "mlp": (make_mlp, (5, 8)),
    "seq1d": (make_seq1d, (3, 2, 8)),
    "autoencoder": (make_autoencoder, (2, 1, 8, 8)),
    "cnn": (make_cnn, (4, 3, 8, 8)),
}


def load_safetensors_package(path):
    try:
        from safetensors.torch import load_file
    except ImportError:
        return None
    return load_file(path)


def generate(name, factory, input_shape):
    model = factory().eval()
    arch = os.path.join(OUT, "torch_import_%s.arch.json" % name)
    weights = os.path.join(OUT, "torch_import_%s.safetensors" % name)
    torch_export.export(model, arch, weights, use_safetensors=False)
    g = torch.Generator().manual_seed(100 + len(name))
    x = torch.randn(*input_shape, generator=g)
    with torch.no_grad():
        out = model(x)
    w = Writer("gen_torch_import.py", OUT, "torch_import_%s.txt" % name,
               ["the %s model of torch_import_%s.arch.json / .safetensors in eval mode: out = model(x)" % (name, name)])
    w.tensor("x", x)
    w.tensor("out", out)
    w.save()
    sd = model.state_dict()
    back = load_safetensors_package(weights)
    if back is not None:
        assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd), name
    total = sum(os.path.getsize(p) for p in (arch, weights))
    assert total < 200_000, (name, total)
    print("wrote torch_import_%s.arch.json + .safetensors (%d bytes, %d tensors)" % (name, total, len(sd)))


class Net(nn.Module):
    """A model with its own forward, which a module tree cannot record."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)


class MyLinear(nn.Linear):
    """A subclass may change forward: layers are matched by exact class only."""


def expect_error(model, *fragments):
    try:
        torch_export.module_tree(model)
    except torch_export.ExportError as e:
        for f in fragments:
            assert f in str(e), (f, str(e))
        return
    raise AssertionError("exported without an error: %s" % (fragments,))


def check_errors():
    expect_error(nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.LSTM(2, 2))),
                 "[torch_export] LSTM at '1.1': torch.nn.modules.rnn.LSTM is not a layer Ember supports")
    expect_error(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")),
                 "Conv2d at '0': padding_mode='reflect' is not supported")
    expect_error(nn.Sequential(nn.Conv2d(1, 1, 2, padding="same")),
                 "Conv2d at '0': padding='same' with kernel_size=(2, 2)")
    expect_error(nn.Sequential(nn.MaxPool2d(2, return_indices=True)), "MaxPool2d at '0': return_indices=True")
    expect_error(nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), "AvgPool2d at '0': divisor_override=3")
    expect_error(nn.Embedding(4, 2, max_norm=1.0), "Embedding at the root: max_norm=1.0 is not supported")
    expect_error(nn.Softmax(), "Softmax at the root: dim=None")
    expect_error(Net(), "Net at the root: __main__.Net is not a layer Ember supports")
    expect_error(nn.ModuleList([MyLinear(2, 2)]), "MyLinear at '0'")
    # 'same' padding with an odd kernel is symmetric and becomes the explicit padding
    tree = torch_export.module_tree(nn.Conv2d(2, 2, (3, 5), padding="same", dilation=(1, 2)))
    assert tree["root"]["options"]["padding"] == [1, 4], tree
    print("exporter errors: ok")


def check_cli():
    """The command line (FILE.py:FACTORY) writes the same tree and weights as export()."""
    with tempfile.TemporaryDirectory() as tmp:
        arch, weights = os.path.join(tmp, "a.json"), os.path.join(tmp, "w.safetensors")
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "torch_export.py"),
                        os.path.join(HERE, "gen_torch_import.py") + ":make_cnn", arch, weights], check=True)
        with open(arch) as f, open(os.path.join(OUT, "torch_import_cnn.arch.json")) as g:
            assert json.load(f) == json.load(g)
        sd = make_cnn().state_dict()
        back = load_safetensors_package(weights) or torch_export_read(weights)
        assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
        bad = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "torch_export.py"), "torch.nn:LSTM",
                              "--kwargs", '{"input_size": 2, "hidden_size": 3}', arch, weights],
                             capture_output=True, text=True)
        assert bad.returncode == 2 and "LSTM at the root" in bad.stderr, bad
    print("command line: ok")


def torch_export_read(path):
    """A minimal safetensors reader for check_cli when the package is absent."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    names = {v: k for k, v in torch_export.SAFETENSORS_DTYPES.items()}
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = bytearray(data[8 + n + b:8 + n + e])
        dt = names[info["dtype"]]
        out[name] = (torch.frombuffer(raw, dtype=dt) if raw else torch.empty(0, dtype=dt)).reshape(info["shape"])
    return out


if __name__ == "__main__":
    for model_name, (make, shape) in MODELS.items():
        generate(model_name, make, shape)
    check_errors()
    check_cli()
