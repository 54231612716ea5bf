#!/usr/bin/python3
"""Writes the PyTorch reference fixtures for Ember's optimizer tests (tests/train/test_optim.cpp).

Run with Debian's PyTorch 1.13:  /usr/bin/python3 tests/reference/gen_optim.py
Fixed seeds: the output is stable.

Every optimizer runs 10 steps from the same three parameters a (3, 4), b (5,), c (2, 3) and the
same float32 gradient sequence; c has no gradient in steps 0-2 (torch skips it; its state starts
later). Each configuration runs twice, in float32 and in float64 (same starting values), with
torch's single-tensor (foreach=False) implementations.

Names:
  init/<p>, grad/<t>/<p>                         inputs (f32), t = 0..9
  <cfg>/ngroups                                  1: one group [a, b, c]; 2: groups [a, b] and [c]
  <cfg>/g<i>/<option>                            options of group i (bools as 0/1; betas as betas0/1)
  <cfg>/<dt>/param/<p>                           parameters after 10 steps (dt = f32 | f64)
  <cfg>/<dt>/state/<p>/<key>                     state tensors, or scalars for step
  <cfg>/<dt>/state/<p>/<key>/none                1 when the state value is None (SGD without momentum)
Plus clip_grad_norm_/clip_grad_value_ cases (optim_clip.txt): clip/<case>/{max_norm, norm_type,
total, g/<p>} and clipv/<case>/{clip_value, g/<p>} on the step-0 gradients (c given one too).
"""
import functools
import math
import os

import torch

import fixture_io

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")
DTYPE_NAMES = {torch.float32: "f32", torch.float64: "f64"}
SHAPES = {"a": (3, 4), "b": (5,), "c": (2, 3)}
STEPS = 10
C_FIRST_GRAD = 3

# Floating tensors keep their own dtype (f32 inputs, f64 references).
Writer = functools.partial(fixture_io.Writer, "gen_optim.py", OUT_DIR)


def make_inputs():
    gen = torch.Generator().manual_seed(4242)
    init = {p: torch.randn(s, generator=gen, dtype=torch.float32) for p, s in SHAPES.items()}
    grads = []
    for t in range(STEPS):
        g = {p: torch.randn(s, generator=gen, dtype=torch.float32) * 0.5 for p, s in SHAPES.items()}
        if t < C_FIRST_GRAD:
            del g["c"]
        grads.append(g)
    return init, grads


def write_inputs(w, init, grads):
    for p, t in init.items():
        w.tensor("init/" + p, t)
    for t, g in enumerate(grads):
        for p, v in g.items():
            w.tensor("grad/%d/%s" % (t, p), v)


def write_options(w, cfg, groups):
    w.scalar(cfg + "/ngroups", len(groups))
    for i, opts in enumerate(groups):
        for k, v in opts.items():
            if k == "betas":
                w.scalar("%s/g%d/betas0" % (cfg, i), v[0])
                w.scalar("%s/g%d/betas1" % (cfg, i), v[1])
            else:
                w.scalar("%s/g%d/%s" % (cfg, i, k), float(v))


def run(cls, groups, init, grads, dtype):
    params = {p: init[p].to(dtype).clone().requires_grad_(True) for p in SHAPES}
    # Group 0's options go to the constructor (torch's Adagrad takes initial_accumulator_value
    # from there only); group 1 overrides some of them.
    if len(groups) == 1:
        pg = [dict(params=[params["a"], params["b"], params["c"]])]
    else:
        pg = [dict(params=[params["a"], params["b"]]), dict(params=[params["c"]], **groups[1])]
    opt = cls(pg, foreach=False, **groups[0])
    for t in range(STEPS):
        for p in SHAPES:
            g = grads[t].get(p)
            params[p].grad = None if g is None else g.to(dtype).clone()
        opt.step()
    return params, opt


def write_result(w, cfg, dtype, params, opt):
    dt = DTYPE_NAMES[dtype]
    for p, t in params.items():
        w.tensor("%s/%s/param/%s" % (cfg, dt, p), t)
        state = opt.state[t]
        for key, v in state.items():
            name = "%s/%s/state/%s/%s" % (cfg, dt, p, key)
            if v is None:
                w.scalar(name + "/none", 1)
            elif key == "step":
                w.scalar(name, float(v))
            else:
                assert v.dtype == dtype and v.shape == t.shape, (cfg, key)
                w.tensor(name, v)


CONFIGS = {
    "sgd": (torch.optim.SGD, [
        ("plain", [dict(lr=0.1)]),
        ("wd", [dict(lr=0.1, weight_decay=0.1)]),
        ("momentum", [dict(lr=0.1, momentum=0.9)]),
        ("momentum_dampening", [dict(lr=0.1, momentum=0.9, dampening=0.3)]),
        ("nesterov", [dict(lr=0.1, momentum=0.9, nesterov=True)]),
        ("nesterov_wd_max", [dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05, maximize=True)]),
        ("momentum_wd_max", [dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01, maximize=True)]),
        ("groups", [dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.5, nesterov=True)]),
    ]),
    "adam": (torch.optim.Adam, [
        ("default", [dict()]),
        ("amsgrad", [dict(lr=0.01, amsgrad=True)]),
        ("wd", [dict(lr=0.01, weight_decay=0.1)]),
        ("maximize", [dict(lr=0.01, maximize=True)]),
        ("all", [dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, amsgrad=True, maximize=True)]),
        ("groups", [dict(lr=0.01), dict(lr=0.003, betas=(0.5, 0.9), amsgrad=True)]),
    ]),
    "adamw": (torch.optim.AdamW, [
        ("default", [dict()]),
        ("amsgrad", [dict(lr=0.01, amsgrad=True)]),
        ("wd_max", [dict(lr=0.01, weight_decay=0.1, maximize=True)]),
        ("groups", [dict(lr=0.01), dict(lr=0.02, weight_decay=0.0, amsgrad=True)]),
    ]),
    "rmsprop": (torch.optim.RMSprop, [
        ("default", [dict()]),
        ("centered", [dict(centered=True)]),
        ("momentum", [dict(momentum=0.9)]),
        ("centered_momentum", [dict(centered=True, momentum=0.5)]),
        ("wd_max", [dict(alpha=0.9, eps=1e-6, weight_decay=0.1, maximize=True)]),
        ("all", [dict(lr=0.005, centered=True, momentum=0.9, weight_decay=0.01, maximize=True)]),
        ("groups", [dict(), dict(lr=0.001, centered=True)]),
    ]),
    "adagrad": (torch.optim.Adagrad, [
        ("default", [dict()]),
        ("lr_decay", [dict(lr=0.1, lr_decay=0.1)]),
        ("wd", [dict(weight_decay=0.1)]),
        ("init_acc", [dict(lr=0.1, initial_accumulator_value=0.5)]),
        ("all", [dict(lr=0.1, lr_decay=0.05, weight_decay=0.02, initial_accumulator_value=0.1, eps=1e-6,
                      maximize=True)]),
        # torch 1.13 ignores a group's own initial_accumulator_value (test_optim.cpp checks that
        # Ember honours it), so group 1 leaves it at the default here.
        ("groups", [dict(initial_accumulator_value=0.2), dict(lr=0.1, lr_decay=0.2)]),
    ]),
}


def gen_optimizers():
    init, grads = make_inputs()
    for opt_name, (cls, configs) in CONFIGS.items():
        w = Writer("optim_%s.txt" % opt_name, [
            "torch.optim.%s, foreach=False: 10 steps in f32 and f64; see the generator's docstring." % cls.__name__])
        write_inputs(w, init, grads)
        for case, groups in configs:
            cfg = "%s/%s" % (opt_name, case)
            write_options(w, cfg, groups)
            for dtype in (torch.float32, torch.float64):
                params, opt = run(cls, groups, init, grads, dtype)
                write_result(w, cfg, dtype, params, opt)
        w.save()


def gen_clip():
    init, grads = make_inputs()
    gen = torch.Generator().manual_seed(77)
    base = dict(grads[0])
    base["c"] = torch.randn(SHAPES["c"], generator=gen, dtype=torch.float32) * 0.5
    w = Writer("optim_clip.txt", ["clip_grad_norm_ and clip_grad_value_ on three f32 gradients."])
    for p, g in base.items():
        w.tensor("clipin/" + p, g)
    cases = [("l2_clip", 1.0, 2.0), ("l2_noclip", 100.0, 2.0), ("l1", 2.0, 1.0), ("inf", 0.5, math.inf),
             ("p3_5", 0.7, 3.5)]
    for case, max_norm, norm_type in cases:
        params = {p: init[p].clone().requires_grad_(True) for p in SHAPES}
        for p in SHAPES:
            params[p].grad = base[p].clone()
        total = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm, norm_type)
        name = "clip/" + case
        w.scalar(name + "/max_norm", max_norm)
        w.scalar(name + "/norm_type", norm_type)
        w.scalar(name + "/total", float(total))
        for p in SHAPES:
            w.tensor("%s/g/%s" % (name, p), params[p].grad)
    for case, clip_value in [("v02", 0.2), ("v1", 1.0)]:
        params = {p: init[p].clone().requires_grad_(True) for p in SHAPES}
        for p in SHAPES:
            params[p].grad = base[p].clone()
        torch.nn.utils.clip_grad_value_(list(params.values()), clip_value)
        name = "clipv/" + case
        w.scalar(name + "/clip_value", clip_value)
        for p in SHAPES:
            w.tensor("%s/g/%s" % (name, p), params[p].grad)
    w.save()


if __name__ == "__main__":
    torch.set_num_threads(1)
    gen_optimizers()
    gen_clip()
