#!/usr/bin/python3
"""Writes the PyTorch reference fixtures for Ember's op tests (tests/runtime/test_ops_reference.cpp
and the dtype-conversion checks of tests/runtime/test_tensor.cpp).

Run with Debian's PyTorch 1.13:  /usr/bin/python3 tests/reference/gen_ops.py
Inputs are float32-representable; references are computed in float64 from them, so one fixture
serves both Ember's f32 (rtol 1e-5) and f64 (rtol ~1e-10) checks. Fixed seeds: output is stable.

Names are "<op>/<case>/<field>": fields x, target, weight, pos_weight (inputs), out (forward),
g (gradient fed to backward), dx, da, db, dw, dbias (input gradients). Scalars carry parameters
(dim, reduction 0=none 1=mean 2=sum, ignore_index, label_smoothing, beta, slope, approximate
0=none 1=tanh).
"""
import functools
import os

import torch
import torch.nn.functional as F

import fixture_io

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")
REDUCTIONS = [("none", 0), ("mean", 1), ("sum", 2)]
# Floating tensors are stored as f64 unless tensor() is given a dtype.
Writer = functools.partial(fixture_io.Writer, "gen_ops.py", OUT_DIR, float_dtype=torch.float64)


def f32(*shape, lo=-1.0, hi=1.0, gen=None):
    """Uniform float32-representable values, returned as float64."""
    x = torch.rand(tuple(shape), generator=gen, dtype=torch.float64) * (hi - lo) + lo
    return x.to(torch.float32).to(torch.float64)


def r32(t):
    """Rounds to float32-representable values (kept in float64), so fixture inputs are exact."""
    return t.to(torch.float32).to(torch.float64)


def leaf(t):
    return t.clone().requires_grad_(True)


def backward_grads(out, inputs, gen):
    """Gradients of sum(out * g) for a random g; returns (g, grads)."""
    g = f32(*out.shape, gen=gen)
    grads = torch.autograd.grad(out, inputs, g)
    return g, grads


# --- softmax / log_softmax --------------------------------------------------------------------
def gen_softmax():
    gen = torch.Generator().manual_seed(1001)
    w = Writer("ops_softmax.txt", ["softmax and log_softmax along various dims, with gradients."])
    cases = [
        ("v5", f32(5, lo=-3, hi=3, gen=gen), [0, -1]),
        ("m34", f32(3, 4, lo=-3, hi=3, gen=gen), [0, 1, -1]),
        ("t234", f32(2, 3, 4, lo=-4, hi=4, gen=gen), [0, 1, 2, -2]),
        ("t2135", f32(2, 1, 3, 5, lo=-2, hi=2, gen=gen), [1, 3]),
        # large magnitudes: needs the max subtraction to stay finite
        ("big", r32(f32(3, 6, lo=-2, hi=2, gen=gen) + torch.tensor([[90.0], [-800.0], [1000.0]], dtype=torch.float64)), [1]),
        # one dominant entry per row: tiny probabilities
        ("peaked", r32(f32(2, 7, lo=-1, hi=1, gen=gen) + torch.tensor([[0, 0, 30.0, 0, 0, 0, 0]] * 2, dtype=torch.float64)), [1]),
    ]
    for case, x, dims in cases:
        for dim in dims:
            for op, fn in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
                p = "%s/%s_d%d" % (op, case, dim)
                xl = leaf(x)
                out = fn(xl, dim=dim)
                g, (dx,) = backward_grads(out, [xl], gen)
                w.tensor(p + "/x", x, torch.float32)
                w.scalar(p + "/dim", dim)
                w.tensor(p + "/out", out)
                w.tensor(p + "/g", g, torch.float32)
                w.tensor(p + "/dx", dx)
    w.save()


# --- activations --------------------------------------------------------------------------------
def gen_activations():
    gen = torch.Generator().manual_seed(2002)
    w = Writer("ops_activations.txt", ["gelu (none/tanh), sigmoid, tanh, leaky_relu, relu: values and gradients."])
    # No exact zeros (kinks of relu/leaky_relu); saturating magnitudes included.
    base = f32(4, 6, lo=-4, hi=4, gen=gen)
    base[base.abs() < 1e-3] = 0.5
    extremes = r32(torch.tensor([-60.0, -20.0, -9.5, -3e-4, 2.5e-4, 9.5, 20.0, 60.0], dtype=torch.float64).reshape(1, 8))
    inputs = [("r", base), ("ext", extremes)]
    ops = [
        ("gelu", lambda x: F.gelu(x), {"approximate": 0}, "gelu_none"),
        ("gelu", lambda x: F.gelu(x, approximate="tanh"), {"approximate": 1}, "gelu_tanh"),
        ("sigmoid", torch.sigmoid, {}, "sigmoid"),
        ("tanh", torch.tanh, {}, "tanh"),
        ("leaky_relu", lambda x: F.leaky_relu(x, 0.01), {"slope": 0.01}, "leaky_relu_001"),
        ("leaky_relu", lambda x: F.leaky_relu(x, 0.2), {"slope": 0.2}, "leaky_relu_02"),
        ("relu", F.relu, {}, "relu"),
    ]
    for op, fn, params, tag in ops:
        for case, x in inputs:
            p = "%s/%s_%s" % (op, tag, case)
            xl = leaf(x)
            out = fn(xl)
            g, (dx,) = backward_grads(out, [xl], gen)
            w.tensor(p + "/x", x, torch.float32)
            for k, v in params.items():
                w.scalar(p + "/" + k, v)
            w.tensor(p + "/out", out)
            w.tensor(p + "/g", g, torch.float32)
            w.tensor(p + "/dx", dx)
    w.save()


# --- losses -------------------------------------------------------------------------------------
def gen_losses():
    gen = torch.Generator().manual_seed(3003)
    w = Writer("ops_losses.txt", ["Every loss of runtime/ops.h with reductions none/mean/sum; dx = d sum(out*g) / d input."])

    def emit(op, case, red_name, red, fields, out, dx, params):
        p = "%s/%s_%s" % (op, case, red_name)
        for k, v in fields.items():
            if v is None:
                continue
            if v.is_floating_point():
                w.tensor(p + "/" + k, v, torch.float32)
            else:
                w.tensor(p + "/" + k, v)
        w.scalar(p + "/reduction", red)
        for k, v in params.items():
            w.scalar(p + "/" + k, v)
        w.tensor(p + "/out", out)
        if dx is not None:
            g, dxv = dx
            w.tensor(p + "/g", g, torch.float32)
            w.tensor(p + "/dx", dxv)

    def run(op, case, fn, x, fields, params, grad=True):
        for red_name, red in REDUCTIONS:
            xl = leaf(x)
            out = fn(xl, red_name)
            dx = None
            if grad:
                g, (dxv,) = backward_grads(out, [xl], gen)
                dx = (g, dxv)
            emit(op, case, red_name, red, dict(x=x, **fields), out, dx, params)

    # regression losses; |x - target| kept away from 0 and from beta (kinks)
    x = f32(3, 4, lo=-2, hi=2, gen=gen)
    t = f32(3, 4, lo=-2, hi=2, gen=gen)
    d = x - t
    t = r32(torch.where(d.abs() < 0.05, t + 0.3, t))
    run("mse_loss", "m34", lambda a, r: F.mse_loss(a, t, reduction=r), x, {"target": t}, {})
    run("l1_loss", "m34", lambda a, r: F.l1_loss(a, t, reduction=r), x, {"target": t}, {})
    x3 = f32(2, 3, 2, lo=-3, hi=3, gen=gen)
    t3 = f32(2, 3, 2, lo=-3, hi=3, gen=gen)
    for beta in (1.0, 0.5, 2.0):
        tb = t3.clone()
        dd = (x3 - tb).abs()
        tb = torch.where((dd - beta).abs() < 0.05, tb + 0.2, tb)
        tb = r32(torch.where((x3 - tb).abs() < 0.05, tb + 0.3, tb))
        run("smooth_l1_loss", "b%g" % beta, lambda a, r, tb=tb, beta=beta: F.smooth_l1_loss(a, tb, reduction=r, beta=beta),
            x3, {"target": tb}, {"beta": beta})
    run("smooth_l1_loss", "b0", lambda a, r: F.smooth_l1_loss(a, t, reduction=r, beta=0.0), x, {"target": t},
        {"beta": 0.0})

    # binary cross entropy on probabilities (soft and hard targets)
    p = f32(3, 4, lo=0.05, hi=0.95, gen=gen)
    tgt = f32(3, 4, lo=0.0, hi=1.0, gen=gen)
    tgt[0] = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    wt = f32(4, lo=0.2, hi=2.0, gen=gen)
    run("binary_cross_entropy", "m34", lambda a, r: F.binary_cross_entropy(a, tgt, reduction=r), p, {"target": tgt}, {})
    run("binary_cross_entropy", "m34w", lambda a, r: F.binary_cross_entropy(a, tgt, weight=wt, reduction=r), p,
        {"target": tgt, "weight": wt}, {})
    # probabilities exactly 0 and 1: log terms clamp at -100 (forward only; the gradient there is an
    # implementation detail of PyTorch's epsilon)
    pe = r32(torch.tensor([0.0, 1.0, 0.0, 1.0, 1e-30, 0.5], dtype=torch.float64))
    te = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.25], dtype=torch.float64)
    run("binary_cross_entropy", "clamp", lambda a, r: F.binary_cross_entropy(a, te, reduction=r), pe, {"target": te}, {},
        grad=False)

    # with logits, including saturated logits
    z = f32(3, 4, lo=-5, hi=5, gen=gen)
    z[1, 0], z[1, 1], z[2, 2] = 30.0, -30.0, -80.0
    tz = f32(3, 4, lo=0.0, hi=1.0, gen=gen)
    tz[0] = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    pw = f32(4, lo=0.5, hi=3.0, gen=gen)
    for case, kw in (("plain", {}), ("w", {"weight": wt}), ("pw", {"pos_weight": pw}), ("wpw", {"weight": wt, "pos_weight": pw})):
        run("binary_cross_entropy_with_logits", case,
            lambda a, r, kw=kw: F.binary_cross_entropy_with_logits(a, tz, reduction=r, **kw), z,
            {"target": tz, "weight": kw.get("weight"), "pos_weight": kw.get("pos_weight")}, {})

    # nll_loss: (N, C), (N, C, d1), (N, C, d1, d2); ignore_index and class weights
    C = 4
    cw = f32(C, lo=0.3, hi=2.0, gen=gen)
    shapes = [("n5", (5, C), (5,)), ("nd3", (2, C, 3), (2, 3)), ("nd22", (2, C, 2, 3), (2, 2, 3))]
    for name, xs, ts in shapes:
        lp = F.log_softmax(f32(*xs, lo=-2, hi=2, gen=gen), dim=1)
        lp = lp.to(torch.float32).to(torch.float64)
        tg = torch.randint(0, C, ts, generator=gen)
        tg_ign = tg.clone().reshape(-1)
        tg_ign[1] = -100
        tg_ign = tg_ign.reshape(ts)
        tg_ign2 = tg.clone().reshape(-1)
        tg_ign2[0] = 2
        tg_ign2[-1] = 2
        tg_ign2 = tg_ign2.reshape(ts)
        for case, target, kw, params in (
            ("plain", tg, {}, {}),
            ("w", tg, {"weight": cw}, {}),
            ("ign", tg_ign, {}, {"ignore_index": -100}),
            ("ign2w", tg_ign2, {"ignore_index": 2, "weight": cw}, {"ignore_index": 2}),
        ):
            run("nll_loss", name + "_" + case, lambda a, r, target=target, kw=kw: F.nll_loss(a, target, reduction=r, **kw),
                lp, {"target": target, "weight": kw.get("weight")}, params)

    # cross_entropy on logits: label smoothing, ignore_index, weights, spatial dims
    for name, xs, ts in (("n5", (5, C), (5,)), ("nd22", (2, C, 2, 3), (2, 2, 3))):
        logits = f32(*xs, lo=-3, hi=3, gen=gen)
        tg = torch.randint(0, C, ts, generator=gen)
        tg_ign = tg.clone().reshape(-1)
        tg_ign[2] = 1
        tg_ign = tg_ign.reshape(ts)
        for case, target, kw, params in (
            ("plain", tg, {}, {}),
            ("w", tg, {"weight": cw}, {}),
            ("ls01", tg, {"label_smoothing": 0.1}, {"label_smoothing": 0.1}),
            ("ls025w", tg, {"label_smoothing": 0.25, "weight": cw}, {"label_smoothing": 0.25}),
            ("ign1", tg_ign, {"ignore_index": 1}, {"ignore_index": 1}),
            ("ign1lsw", tg_ign, {"ignore_index": 1, "label_smoothing": 0.2, "weight": cw},
             {"ignore_index": 1, "label_smoothing": 0.2}),
        ):
            run("cross_entropy", name + "_" + case, lambda a, r, target=target, kw=kw: F.cross_entropy(a, target, reduction=r, **kw),
                logits, {"target": target, "weight": kw.get("weight")}, params)
    w.save()


# --- matmul and linear ----------------------------------------------------------------------------
def gen_matmul():
    gen = torch.Generator().manual_seed(4004)
    w = Writer("ops_matmul.txt", ["matmul over 1-D/2-D/batched/broadcast shapes and linear; da/db (dw/dbias) gradients."])
    cases = [
        ("vv", (4,), (4,)),
        ("mv", (3, 4), (4,)),
        ("vm", (4,), (4, 5)),
        ("mm", (3, 4), (4, 5)),
        ("bmm", (2, 3, 4), (2, 4, 5)),
        ("bv", (2, 3, 4), (4,)),
        ("vb", (4,), (2, 4, 5)),
        ("mb", (3, 4), (2, 4, 5)),
        ("bm", (2, 3, 4), (4, 5)),
        ("bcast", (2, 1, 3, 4), (5, 4, 2)),
        ("bcast1", (1, 3, 4), (2, 4, 5)),
        ("k1", (3, 1), (1, 2)),
    ]
    for case, sa, sb in cases:
        a, b = f32(*sa, gen=gen), f32(*sb, gen=gen)
        al, bl = leaf(a), leaf(b)
        out = torch.matmul(al, bl)
        g, (da, db) = backward_grads(out, [al, bl], gen)
        p = "matmul/" + case
        w.tensor(p + "/a", a, torch.float32)
        w.tensor(p + "/b", b, torch.float32)
        w.tensor(p + "/out", out)
        w.tensor(p + "/g", g, torch.float32)
        w.tensor(p + "/da", da)
        w.tensor(p + "/db", db)
    for case, sx, n_out, bias in (("2d", (3, 4), 5, True), ("2d_nobias", (3, 4), 5, False), ("3d", (2, 3, 4), 5, True),
                                  ("1d", (4,), 3, True), ("4d", (2, 1, 2, 3), 2, True)):
        x = f32(*sx, gen=gen)
        wt = f32(n_out, sx[-1], gen=gen)
        bs = f32(n_out, gen=gen) if bias else None
        xl, wl = leaf(x), leaf(wt)
        bl = leaf(bs) if bias else None
        out = F.linear(xl, wl, bl)
        ins = [xl, wl] + ([bl] if bias else [])
        g, grads = backward_grads(out, ins, gen)
        p = "linear/" + case
        w.tensor(p + "/x", x, torch.float32)
        w.tensor(p + "/weight", wt, torch.float32)
        if bias:
            w.tensor(p + "/bias", bs, torch.float32)
        w.tensor(p + "/out", out)
        w.tensor(p + "/g", g, torch.float32)
        w.tensor(p + "/dx", grads[0])
        w.tensor(p + "/dw", grads[1])
        if bias:
            w.tensor(p + "/dbias", grads[2])
    w.save()


# --- dtype conversions --------------------------------------------------------------------------
def gen_dtype():
    w = Writer("ops_dtype.txt", ["to(dtype) conversions as PyTorch rounds them: to/<case>/x (source) and /out (result)."])
    f = torch.float32
    half_cases = [
        1.0, 1.0 + 2**-11, 1.0 + 3 * 2**-11, 1.0 + 2**-11 + 2**-20, -(1.0 + 2**-11), 2049.0, 2051.0, 0.1, -0.3,
        65504.0, 65519.0, 65520.0, 1e6, -1e6, 6.1035156e-05, 6.0e-8, 5.96e-8, 2.98e-8, 2.99e-8, 1e-9, 3.0e-6,
        -2.5e-6, 0.0, -0.0, float("inf"), float("-inf"), float("nan"), 3.14159265, 1234.5678,
    ]
    bf_cases = [
        1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-8 + 2**-20, -(1.0 + 2**-8), 0.1, -0.3, 3.14159265, 1e30, -1e-30,
        3.3895314e38, 3.4028235e38, 1e-40, 1e-45, 0.0, -0.0, float("inf"), float("-inf"), float("nan"), 257.0, 259.0,
        65504.0, 123456.789,
    ]
    src = torch.tensor(half_cases, dtype=f)
    w.tensor("to/f32_f16/x", src, f)
    w.tensor("to/f32_f16/out", src.to(torch.float16), torch.float16)
    src = torch.tensor(bf_cases, dtype=f)
    w.tensor("to/f32_bf16/x", src, f)
    w.tensor("to/f32_bf16/out", src.to(torch.bfloat16), torch.bfloat16)
    # PyTorch converts f64 -> f16/bf16 through f32 (two roundings: the first two values show it)
    d = torch.tensor([1.0 + 2**-11 + 2**-40, 1.0 + 2**-8 + 2**-40, 0.1, -7.123456789012345, 1e300, 1e-300], dtype=torch.float64)
    w.tensor("to/f64_f32/x", d, torch.float64)
    w.tensor("to/f64_f32/out", d.to(f), f)
    w.tensor("to/f64_f16/x", d, torch.float64)
    w.tensor("to/f64_f16/out", d.to(torch.float16), torch.float16)
    w.tensor("to/f64_bf16/x", d, torch.float64)
    w.tensor("to/f64_bf16/out", d.to(torch.bfloat16), torch.bfloat16)
    h = torch.tensor([1.0, 0.0009765625, 5.9604644775390625e-08, 65504.0, -2.0, float("nan"), float("-inf")], dtype=torch.float16)
    w.tensor("to/f16_f32/x", h, torch.float16)
    w.tensor("to/f16_f32/out", h.to(f), f)
    w.tensor("to/f16_bf16/x", h, torch.float16)
    w.tensor("to/f16_bf16/out", h.to(torch.bfloat16), torch.bfloat16)
    b = torch.tensor([1.0, 0.0078125, 1e-38, 3.0e38, -2.0, float("nan")], dtype=torch.bfloat16)
    w.tensor("to/bf16_f16/x", b, torch.bfloat16)
    w.tensor("to/bf16_f16/out", b.to(torch.float16), torch.float16)
    # large integers round to nearest even in f32 / f16
    i = torch.tensor([16777217, 16777219, -16777217, 2**31 - 1, 2**40 + 1, 2049, 2051, 70000], dtype=torch.int64)
    w.tensor("to/i64_f32/x", i, torch.int64)
    w.tensor("to/i64_f32/out", i.to(f), f)
    w.tensor("to/i64_f16/x", i, torch.int64)
    w.tensor("to/i64_f16/out", i.to(torch.float16), torch.float16)
    w.tensor("to/i64_f64/x", i, torch.int64)
    w.tensor("to/i64_f64/out", i.to(torch.float64), torch.float64)
    # float -> int truncates toward zero (values kept in range: out of range is undefined)
    fl = torch.tensor([2.7, -2.7, 0.5, -0.5, 100.99, -1e6, 1e9], dtype=f)
    w.tensor("to/f32_i32/x", fl, f)
    w.tensor("to/f32_i32/out", fl.to(torch.int32), torch.int32)
    w.tensor("to/f32_i64/x", fl, f)
    w.tensor("to/f32_i64/out", fl.to(torch.int64), torch.int64)
    fu = torch.tensor([0.0, 0.9, 1.5, 254.9, 255.0, 17.2], dtype=f)
    w.tensor("to/f32_u8/x", fu, f)
    w.tensor("to/f32_u8/out", fu.to(torch.uint8), torch.uint8)
    fb = torch.tensor([0.0, -0.0, 1e-30, -2.0, float("nan"), float("inf"), 0.5], dtype=f)
    w.tensor("to/f32_bool/x", fb, f)
    w.tensor("to/f32_bool/out", fb.to(torch.bool), torch.bool)
    ib = torch.tensor([0, 1, -1, 256, 2**40], dtype=torch.int64)
    w.tensor("to/i64_bool/x", ib, torch.int64)
    w.tensor("to/i64_bool/out", ib.to(torch.bool), torch.bool)
    i32 = torch.tensor([-5, 0, 7, 2**31 - 1, -2**31], dtype=torch.int32)
    w.tensor("to/i32_i64/x", i32, torch.int32)
    w.tensor("to/i32_i64/out", i32.to(torch.int64), torch.int64)
    w.tensor("to/i32_f32/x", i32, torch.int32)
    w.tensor("to/i32_f32/out", i32.to(f), f)
    u = torch.tensor([0, 1, 128, 255], dtype=torch.uint8)
    w.tensor("to/u8_f32/x", u, torch.uint8)
    w.tensor("to/u8_f32/out", u.to(f), f)
    w.tensor("to/u8_i64/x", u, torch.uint8)
    w.tensor("to/u8_i64/out", u.to(torch.int64), torch.int64)
    bb = torch.tensor([True, False, True], dtype=torch.bool)
    w.tensor("to/bool_f32/x", bb, torch.bool)
    w.tensor("to/bool_f32/out", bb.to(f), f)
    w.tensor("to/bool_i64/x", bb, torch.bool)
    w.tensor("to/bool_i64/out", bb.to(torch.int64), torch.int64)
    w.save()


if __name__ == "__main__":
    torch.manual_seed(0)
    gen_softmax()
    gen_activations()
    gen_losses()
    gen_matmul()
    gen_dtype()
