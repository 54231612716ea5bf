#!/usr/bin/python3
# Writes fixtures/conv_pool_{conv,convt,pool}.txt: forward values and the
# input/weight/bias gradients of conv2d, conv_transpose2d, max_pool2d and avg_pool2d (PyTorch).
# Inputs are f32; references are computed in float64 from those same f32 values, then rounded.
# Run: /usr/bin/python3 tests/reference/gen_conv_pool.py   (from the repository root)
import os

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def write_tensor(out, name, t):
    dt = {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64"}[t.dtype]
    out.append("tensor %s %s %d %s" % (name, dt, t.dim(), " ".join(str(d) for d in t.shape)))
    vals = t.reshape(-1).tolist()
    if dt == "i64":
        strs = [str(int(v)) for v in vals]
    else:
        strs = ["%.17g" % v if v == v else "nan" for v in vals]
    for i in range(0, len(strs), 8):
        out.append(" ".join(strs[i:i + 8]))


def f32(shape, gen):
    return torch.randn(*shape, generator=gen, dtype=torch.float32)


# (name, x shape, weight shape, bias?, stride, padding, dilation, output_padding, groups)
CONV_CASES = [
    ("basic", (2, 3, 7, 6), (4, 3, 3, 3), True, (1, 1), (0, 0), (1, 1), (0, 0), 1),
    ("stride_pad", (2, 3, 8, 9), (5, 3, 3, 2), True, (2, 3), (1, 2), (1, 1), (0, 0), 1),
    ("dilation", (1, 2, 9, 8), (3, 2, 3, 3), True, (1, 1), (2, 1), (2, 1), (0, 0), 1),
    ("groups", (2, 4, 6, 6), (6, 2, 3, 3), True, (1, 1), (1, 1), (1, 1), (0, 0), 2),
    ("depthwise", (1, 3, 5, 5), (3, 1, 3, 3), False, (2, 2), (1, 1), (1, 1), (0, 0), 3),
    ("pointwise", (2, 4, 5, 3), (3, 4, 1, 1), True, (1, 1), (0, 0), (1, 1), (0, 0), 1),
    ("pointwise_stride", (1, 4, 5, 6), (2, 4, 1, 1), True, (2, 2), (0, 0), (1, 1), (0, 0), 1),
    ("mixed", (3, 6, 7, 10), (4, 3, 2, 4), True, (1, 2), (1, 0), (1, 2), (0, 0), 2),
]

# conv_transpose2d: weight is (C_in, C_out/groups, kh, kw)
CONVT_CASES = [
    ("t_basic", (2, 4, 5, 5), (4, 3, 3, 3), True, (2, 2), (1, 1), (1, 1), (1, 1), 1),
    ("t_groups", (1, 4, 4, 5), (4, 2, 3, 2), True, (1, 2), (0, 1), (2, 1), (1, 0), 2),
    ("t_stride3", (2, 3, 3, 4), (3, 2, 2, 2), False, (3, 3), (0, 0), (1, 1), (0, 2), 1),
    ("t_plain", (1, 2, 4, 3), (2, 3, 3, 2), True, (1, 1), (0, 0), (1, 1), (0, 0), 1),
]

# (name, x shape, kernel, stride, padding, dilation, ceil_mode, count_include_pad)
MAXPOOL_CASES = [
    ("max_k2", (2, 3, 8, 8), (2, 2), (2, 2), (0, 0), (1, 1), False, True),
    ("max_k3s2p1", (1, 2, 9, 7), (3, 3), (2, 2), (1, 1), (1, 1), False, True),
    ("max_ceil", (1, 2, 7, 7), (3, 3), (2, 2), (0, 0), (1, 1), True, True),
    ("max_ceil_pad", (1, 1, 5, 5), (2, 2), (2, 2), (1, 1), (1, 1), True, True),
    ("max_dilation", (1, 2, 10, 9), (3, 2), (1, 2), (1, 1), (2, 2), False, True),
    ("max_nonsquare", (2, 2, 6, 7), (2, 3), (2, 1), (0, 1), (1, 1), False, True),
]
AVGPOOL_CASES = [
    ("avg_k2", (2, 3, 8, 8), (2, 2), (2, 2), (0, 0), (1, 1), False, True),
    ("avg_pad", (1, 2, 9, 7), (3, 3), (2, 2), (1, 1), (1, 1), False, True),
    ("avg_pad_nocount", (1, 2, 9, 7), (3, 3), (2, 2), (1, 1), (1, 1), False, False),
    ("avg_ceil", (1, 2, 7, 6), (3, 3), (2, 2), (1, 1), (1, 1), True, True),
    ("avg_ceil_nocount", (1, 2, 7, 6), (3, 3), (2, 2), (1, 1), (1, 1), True, False),
    ("avg_nonsquare", (2, 2, 6, 5), (3, 2), (1, 2), (1, 0), (1, 1), False, True),
]


def conv_fixture(transposed):
    gen = torch.Generator().manual_seed(1235 if transposed else 1234)
    out = ["# %s: x, w, b (when used), gy (upstream gradient), y = op(x, w, b)," %
           ("conv_transpose2d" if transposed else "conv2d"),
           "# dx, dw, db = gradients of sum(y * gy). opts = (sh, sw, ph, pw, dh, dw, oph, opw, groups, transposed)."]
    for name, xs, ws, has_b, s, p, d, op, g in (CONVT_CASES if transposed else CONV_CASES):
        x, w = f32(xs, gen), f32(ws, gen)
        bias_ch = ws[1] * g if transposed else ws[0]
        b = f32((bias_ch,), gen) if has_b else None
        xd, wd = x.double().requires_grad_(), w.double().requires_grad_()
        bd = b.double().requires_grad_() if has_b else None
        if transposed:
            y = F.conv_transpose2d(xd, wd, bd, stride=s, padding=p, output_padding=op, groups=g, dilation=d)
        else:
            y = F.conv2d(xd, wd, bd, stride=s, padding=p, dilation=d, groups=g)
        gy = f32(y.shape, gen)
        y.backward(gy.double())
        opts = torch.tensor([s[0], s[1], p[0], p[1], d[0], d[1], op[0], op[1], g, int(transposed)])
        write_tensor(out, name + ".opts", opts)
        write_tensor(out, name + ".x", x)
        write_tensor(out, name + ".w", w)
        if has_b:
            write_tensor(out, name + ".b", b)
        write_tensor(out, name + ".gy", gy)
        write_tensor(out, name + ".y", y.detach().float())
        write_tensor(out, name + ".dx", xd.grad.float())
        write_tensor(out, name + ".dw", wd.grad.float())
        if has_b:
            write_tensor(out, name + ".db", bd.grad.float())
    return out


def pool_fixture():
    gen = torch.Generator().manual_seed(4321)
    out = ["# max_pool2d / avg_pool2d: x, gy, y = op(x), dx = gradient of sum(y * gy), idx = max indices.",
           "# opts = (kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode, count_include_pad, is_max)."]
    for is_max, cases in ((True, MAXPOOL_CASES), (False, AVGPOOL_CASES)):
        for name, xs, k, s, p, d, ceil, cip in cases:
            x = f32(xs, gen)
            xd = x.double().requires_grad_()
            if is_max:
                y, idx = F.max_pool2d(xd, k, s, p, d, ceil_mode=ceil, return_indices=True)
            else:
                y = F.avg_pool2d(xd, k, s, p, ceil_mode=ceil, count_include_pad=cip)
            gy = f32(y.shape, gen)
            y.backward(gy.double())
            opts = torch.tensor([k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], int(ceil), int(cip), int(is_max)])
            write_tensor(out, name + ".opts", opts)
            write_tensor(out, name + ".x", x)
            write_tensor(out, name + ".gy", gy)
            write_tensor(out, name + ".y", y.detach().float())
            write_tensor(out, name + ".dx", xd.grad.float())
            if is_max:
                write_tensor(out, name + ".idx", idx)
    return out


def main():
    os.makedirs(os.path.join(HERE, "fixtures"), exist_ok=True)
    for fname, lines in (("conv_pool_conv.txt", conv_fixture(False)), ("conv_pool_convt.txt", conv_fixture(True)),
                         ("conv_pool_pool.txt", pool_fixture())):
        path = os.path.join(HERE, "fixtures", fname)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
