#!/usr/bin/python3
# Writes fixtures/autocast_ops.txt: mixed-precision (autocast) forward values of linear, matmul,
# conv2d and conv_transpose2d, and the f32 gradients of their f32 inputs and parameters, for
# bf16 and f16; plus bf16 elementwise ops computed in float and rounded.
#
# bf16: torch.autocast("cpu", dtype=torch.bfloat16), as torch 1.13 runs it (CPU autocast has no
# f16, and no conv_transpose2d). f16, and bf16 conv_transpose2d: what CUDA autocast computes --
# inputs rounded to the half dtype, products summed in float64 (a stand-in for float32
# accumulation, within the tests' tolerance), the result rounded once; the backward likewise from
# the rounded output gradient, each gradient rounded to the half dtype before it is cast back to
# f32 (the backward of autocast's cast).
# Every case's loss is sum(y.float() * gy) for a fixed f32 gy.
# Run: /usr/bin/python3 tests/reference/gen_autocast.py   (from anywhere)
import os

import torch
import torch.nn.functional as F

from fixture_io import HERE, Writer

torch.manual_seed(0)
GEN = torch.Generator().manual_seed(1234)


def randn(*shape):
    return torch.randn(*shape, generator=GEN, dtype=torch.float32)


# name -> (op taking the operands, shapes of the operands); operands are (input, weight[, bias]).
CASES = {
    "linear": (lambda x, w, b: F.linear(x, w, b), [(6, 9), (5, 9), (5,)]),
    "linear_nobias": (lambda x, w: F.linear(x, w), [(2, 3, 17), (4, 17)]),
    "matmul": (lambda a, b: torch.matmul(a, b), [(2, 3, 7), (7, 4)]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1), [(2, 3, 6, 5), (4, 3, 3, 3), (4,)]),
    "conv2d_stride": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=(1, 0)), [(1, 2, 7, 8), (3, 2, 3, 2), (3,)]),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
                         [(2, 4, 3, 4), (4, 3, 3, 3), (3,)]),
}


def bf16_case(fn, inputs, gy):
    leaves = [t.clone().requires_grad_() for t in inputs]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fn(*leaves)
    if y.dtype != torch.bfloat16:  # an op torch 1.13's CPU autocast leaves in f32
        return rounded_case(fn, inputs, gy, torch.bfloat16)
    (y.float() * gy).sum().backward()
    return y, [t.grad for t in leaves]


def rounded_case(fn, inputs, gy, dtype):
    # Operands rounded to dtype, as float64 leaves; the output and each gradient rounded once.
    leaves = [t.to(dtype).double().requires_grad_() for t in inputs]
    y64 = fn(*leaves)
    g = gy.to(dtype).double()
    grads = torch.autograd.grad(y64, leaves, g)
    return y64.to(dtype), [gr.to(dtype).float() for gr in grads]


def f16_case(fn, inputs, gy):
    return rounded_case(fn, inputs, gy, torch.float16)


def main():
    w = Writer("gen_autocast.py", os.path.join(HERE, "fixtures"), "autocast_ops.txt",
               ["<op>/<case>/{in0,in1,in2} f32 operands, gy the f32 gradient of y.float(),",
                "<op>/<dtype>/y the half output, <op>/<dtype>/grad<i> the f32 gradient of operand i"])
    for name, (fn, shapes) in CASES.items():
        inputs = [randn(*s) for s in shapes]
        with torch.no_grad():
            y_shape = fn(*inputs).shape
        gy = randn(*y_shape)
        for i, t in enumerate(inputs):
            w.tensor("%s/in%d" % (name, i), t)
        w.tensor("%s/gy" % name, gy)
        for dtype, case in (("bf16", bf16_case), ("f16", f16_case)):
            y, grads = case(fn, inputs, gy)
            w.tensor("%s/%s/y" % (name, dtype), y)
            for i, g in enumerate(grads):
                assert g.dtype == torch.float32, (name, dtype, g.dtype)
                w.tensor("%s/%s/grad%d" % (name, dtype, i), g)
    # bf16 elementwise ops: computed in float, rounded to bf16 (torch's CPU kernels).
    x = randn(4, 6).bfloat16()
    bias = randn(6).bfloat16()
    w.tensor("elementwise/x", x)
    w.tensor("elementwise/bias", bias)
    w.tensor("elementwise/relu_add", torch.relu(x + bias))
    w.tensor("elementwise/sigmoid", torch.sigmoid(x))
    w.tensor("elementwise/tanh", torch.tanh(x))
    w.tensor("elementwise/mul", x * bias)
    w.save()


if __name__ == "__main__":
    main()
