#!/usr/bin/python3
"""Writes the Python reference fixtures for Ember's str.format port (train/callbacks_pyformat.h) and for
ModelCheckpoint's filename templates (tests/callbacks/test_pyformat.cpp).

Run with Debian's Python 3.11 + PyTorch 1.13:  /usr/bin/python3 tests/reference/gen_pyformat.py

fixtures/pyformat_values.txt, one case per line, tab-separated:
    KIND  VALUE  SPEC  RESULT
  KIND is i (Python int) or f (Python float); VALUE is decimal for ints, float.hex() for floats
  (nan, -nan, inf, -inf spelled out); RESULT is format(value, spec), or "!" + the ValueError text.
fixtures/pyformat_templates.txt, one case per line, tab-separated:
    TEMPLATE  AUTO  METRICS  RESULT
  AUTO is 1 or 0 (auto_insert_metric_name); METRICS is "name=KIND:VALUE" joined by ";" (float
  metrics are float32 tensors as Lightning logs them, ints are int64 tensors); RESULT is the name
  Lightning's ModelCheckpoint builds (without directory and extension), or "!" + the error text.
  The name is built as described in ../../shared/reference/lightning-checkpointing.md section 1.3.
"""
import math
import os
import re
import struct

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def value_token(kind, v):
    if kind == "i":
        return str(v)
    if math.isnan(v):
        return "-nan" if math.copysign(1.0, v) < 0 else "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v.hex()


INTS = [0, 1, 5, 7, -7, 42, 255, 1234, -1234567, 9999999999, 1 << 62]
FLOATS = [
    0.0, -0.0, 0.5, 8.0, f32(0.1234), f32(0.98765), 0.98765, f32(0.000123), 1e-05, 0.0001, 1e16,
    1.5e16, 9999999999999998.0, 123456789.0, 2.5, 0.125, float("nan"), -float("nan"), float("inf"),
    -float("inf"), -1.5, f32(1e-7), math.pi, 1e300, 5e-324, 1e22, f32(0.3), 100.0, 1234.5,
    9.995, 0.0005, -0.0001, f32(0.32), 2.675, 1.12,
]
SPECS = [
    "", "d", "02d", "03d", ".2f", ".4f", ".0f", ".1f", ".5f", ".3e", ".2e", "e", "E", "f", "F", "g",
    "G", ".3g", ".1g", ".0g", ".10g", ".16g", ".17g", "#g", "#.3g", ".3", ".2", ".1", "#.3", "10",
    "<10", ">10", "^10", "=10", "*^12.3f", "+", "+.2f", " .2f", "-", " ", "010.2f", "08", "0=8",
    "010", "0<8", "x<8", "_>9.1e", ",", ",.2f", "_", "_.3f", "012,.2f", "08,", "010,d", ".2%", "%",
    "#.0f", "#.0e", "#", "#e", "z.2f", "z", "x", "X", "#x", "#X", "b", "#b", "o", "#o", "_x", "_b",
    ",x", "n", ".2n", ",n", "02.0f", "abc", ".", ".2d", ",_", "_,", "5.3s", "q", ">+10.3e",
    "+010.2f", "^+9", "020,.4e", "-^7", "=+8d", "#08x", "+#x", "z+.1f", "a", "10.",
]


def cases_values():
    lines = []
    for kind, values in (("i", INTS), ("f", FLOATS)):
        for v in values:
            for spec in SPECS:
                try:
                    out = format(v, spec)
                except ValueError as e:
                    out = "!" + str(e)
                assert "\t" not in out and "\n" not in out
                lines.append("\t".join([kind, value_token(kind, v), spec, out]))
    return lines


def lightning_name(template, metrics, auto_insert):
    """ModelCheckpoint's filename formatting, steps 2-5 of reference section 1.3."""
    metrics = dict(metrics)
    groups = re.findall(r"(\{.*?)[:\}]", template)
    for group in sorted(groups, key=len, reverse=True):
        name = group[1:]
        if auto_insert:
            template = template.replace(group, name + "=" + "{" + name)
        template = template.replace(group, "{0[" + name + "]")
        if name not in metrics:
            metrics[name] = torch.tensor(0)
    return template.format(metrics)


TEMPLATES = [
    # (template, auto_insert, {name: (kind, value)})
    ("{epoch}-{step}", 1, {"epoch": ("i", 2), "step": ("i", 12)}),
    ("sample-mnist-{epoch:02d}-{val_loss:.2f}", 1, {"epoch": ("i", 2), "step": ("i", 3), "val_loss": ("f", 0.32)}),
    ("{val_loss}", 1, {"val_loss": ("f", 0.1234)}),
    ("{val_loss}", 1, {"val_loss": ("f", 0.5)}),
    ("{val_loss}", 1, {"val_loss": ("f", 8.0)}),
    ("{val_loss}", 1, {"val_loss": ("f", float("nan"))}),
    ("{val_loss}", 1, {"val_loss": ("f", float("inf"))}),
    ("{v:.3e}", 1, {"v": ("f", 0.000123)}),
    ("{step:.2f}", 1, {"step": ("i", 7)}),
    ("{val_acc:.4f}", 1, {"val_acc": ("f", 0.98765)}),
    ("{val_loss:d}", 1, {"val_loss": ("f", 0.25)}),
    ("{epoch}", 1, {"epoch": ("i", 0)}),
    ("{epoch:03d}", 1, {"epoch": ("i", 5)}),
    ("{epoch}-{val_loss:.2f}", 1, {"epoch": ("i", 2), "val_loss": ("f", 0.123456)}),
    ("{epoch:d}", 1, {"epoch": ("i", 2), "val_loss": ("f", 0.12)}),
    ("epoch={epoch}-validation_loss={val_loss:.2f}", 0, {"epoch": ("i", 2), "val_loss": ("f", 0.123456)}),
    ("{missing:d}", 1, {}),
    ("{x:.2f}", 1, {}),
    ("{step}", 1, {"step": ("i", 0)}),
    ("{epoch}-{val_loss:.2f}-{other_metric:.2f}", 1,
     {"epoch": ("i", 2), "val_loss": ("f", 0.02), "other_metric": ("f", 0.03)}),
    ("checkpoint_{epoch:02d}-{acc:02.0f}", 1, {"epoch": ("i", 1), "acc": ("f", 1.12)}),
    ("sample-mnist-epoch{epoch:02d}-val_loss{val/loss:.2f}", 0, {"epoch": ("i", 2), "val/loss": ("f", 0.32)}),
    ("epoch={epoch}-step={step}-val_acc={val/acc:.2f}", 0, {"epoch": ("i", 3), "step": ("i", 40), "val/acc": ("f", 0.875)}),
    ("{epoch}_{val/loss:.5f}", 1, {"epoch": ("i", 4), "val/loss": ("f", 0.03)}),
    ("ep{epoch}", 1, {"epoch": ("i", 5)}),
    ("{epoch}-{epoch_test}", 1, {"epoch": ("i", 1), "epoch_test": ("f", 0.75)}),
    ("{epoch_test}-{epoch}", 1, {"epoch": ("i", 1), "epoch_test": ("f", 0.75)}),
    ("last", 1, {"epoch": ("i", 1), "step": ("i", 4)}),
    ("last-{epoch}", 1, {"epoch": ("i", 2), "step": ("i", 6)}),
    ("{epoch}-last", 1, {"epoch": ("i", 2)}),
    ("{val.loss:.3f}", 1, {"val.loss": ("f", 0.5)}),
    ("{epoch}{epoch}", 1, {"epoch": ("i", 3)}),
    ("{epoch:>4}|{val_loss:<8.3f}|", 1, {"epoch": ("i", 3), "val_loss": ("f", 1.5)}),
    ("{{literal}}-{epoch}", 0, {"epoch": ("i", 3)}),
    ("{val_loss:.2%}", 1, {"val_loss": ("f", 0.1234)}),
    ("{train_loss:.3g}-{lr:.1e}", 1, {"train_loss": ("f", 12.3456), "lr": ("f", 0.001)}),
    ("{epoch:02d}-{val_loss:.4f}", 1, {"epoch": ("i", 9), "val_loss": ("f", -0.0)}),
    ("{epoch}-{val_loss}", 1, {"epoch": ("i", 1), "val_loss": ("f", 1e-5)}),
    ("{val_loss:,.1f}", 1, {"val_loss": ("f", 123456.75)}),
    ("{5}", 1, {"5": ("f", 1.0)}),
    ("{epoch:q}", 1, {"epoch": ("i", 1)}),
    ("{epoch:.2}", 1, {"epoch": ("i", 1)}),
]


def to_tensor(kind, v):
    return torch.tensor(v) if kind == "i" else torch.tensor(v, dtype=torch.float32)


def cases_templates():
    lines = []
    for template, auto, metrics in TEMPLATES:
        tensors = {k: to_tensor(kind, v) for k, (kind, v) in metrics.items()}
        try:
            out = lightning_name(template, tensors, bool(auto))
        except (ValueError, KeyError) as e:
            out = "!" + (str(e) if isinstance(e, ValueError) else "KeyError: " + str(e))
        spec = ";".join(
            f"{k}={kind}:{value_token(kind, to_tensor(kind, v).item())}" for k, (kind, v) in metrics.items())
        lines.append("\t".join([template, str(auto), spec, out]))
    return lines


def write(name, header, lines):
    path = os.path.join(OUT_DIR, name)
    text = "".join("# " + h + "\n" for h in header) + "\n".join(lines) + "\n"
    assert len(text) < 200_000, f"{name} is {len(text)} bytes"
    with open(path, "w") as f:
        f.write(text)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    write("pyformat_values.txt",
          ["format(value, spec) by Python 3.11; written by tests/reference/gen_pyformat.py",
           "KIND<TAB>VALUE<TAB>SPEC<TAB>RESULT (RESULT '!msg' = ValueError)"],
          cases_values())
    write("pyformat_templates.txt",
          ["Lightning ModelCheckpoint filename formatting; written by tests/reference/gen_pyformat.py",
           "TEMPLATE<TAB>AUTO<TAB>METRICS<TAB>RESULT (RESULT '!msg' = error)"],
          cases_templates())


if __name__ == "__main__":
    main()
