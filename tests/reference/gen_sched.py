#!/usr/bin/python3
"""Writes the PyTorch reference fixtures for Ember's LR scheduler tests
(tests/train/test_lr_scheduler.cpp).

Run with Debian's PyTorch 1.13:  /usr/bin/python3 tests/reference/gen_sched.py

Each case builds an optimizer with two parameter groups (lr 0.1 and 0.05; SGD with momentum 0.9
unless the case says Adam), builds the scheduler, then calls optimizer.step() and scheduler.step()
50 times. Names:
  <case>/lr          (51, 2) f64: each group's lr after construction and after each step
  <case>/momentum    (51, 2) f64: each group's momentum (SGD) or betas[0] (Adam), for OneCycleLR
  <case>/epochs      (n,) f64: for closed-form cases, the epochs passed to step(epoch); lr is (n+1, 2)
  <case>/metrics     (50,) f64: for ReduceLROnPlateau, the metric passed at each step
  <case>/sd/<path>   the numeric fields of torch's scheduler.state_dict() after the run (lists of
                     numbers as f64 tensors, nested dicts/lists joined with '/'; strings, bools and
                     functions left out)
The scheduler's own arguments are written in the C++ test (one line per case, named as here).
"""
import os
import warnings

import torch
from torch.optim import lr_scheduler as S

import fixture_io

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")
STEPS = 50


class Writer(fixture_io.Writer):
    """fixture_io.Writer taking flat lists of numbers, stored as f64."""

    def __init__(self, name, header):
        super().__init__("gen_sched.py", OUT_DIR, name, header)

    def tensor(self, name, values, shape):
        super().tensor(name, torch.tensor([float(v) for v in values], dtype=torch.float64).reshape(shape))



def make_optimizer(kind="sgd"):
    a = torch.zeros(3, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    if kind == "adam":
        return torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1)
    return torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1, momentum=0.9)


def momentum_of(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


def write_state(w, prefix, sd):
    for k, v in sd.items():
        name = "%s/%s" % (prefix, k)
        if isinstance(v, bool) or v is None or isinstance(v, str) or callable(v):
            continue
        if isinstance(v, (int, float)):
            w.scalar(name, v)
        elif isinstance(v, dict):
            write_state(w, name, {str(kk): vv for kk, vv in v.items()})
        elif isinstance(v, (list, tuple)):
            if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                w.tensor(name, v, (len(v),))
            else:
                write_state(w, name, {str(i): x for i, x in enumerate(v)})


def lam0(epoch):
    return 0.95 ** epoch


def lam1(epoch):
    return 1.0 / (1.0 + epoch)


CASES = {
    "step": lambda o: S.StepLR(o, step_size=7, gamma=0.5),
    "multistep": lambda o: S.MultiStepLR(o, milestones=[5, 12, 12, 30], gamma=0.3),
    "constant": lambda o: S.ConstantLR(o, factor=0.25, total_iters=8),
    "linear": lambda o: S.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=12),
    "linear_default": lambda o: S.LinearLR(o),
    "exponential": lambda o: S.ExponentialLR(o, gamma=0.93),
    "polynomial": lambda o: S.PolynomialLR(o, total_iters=20, power=2.0),
    "cosine": lambda o: S.CosineAnnealingLR(o, T_max=15, eta_min=0.001),
    "warm_restarts": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.0005),
    "warm_restarts_mult1": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=7),
    "onecycle_cos": lambda o: S.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=50),
    "onecycle_linear_3phase": lambda o: S.OneCycleLR(o, max_lr=0.8, total_steps=50, anneal_strategy="linear",
                                                     three_phase=True, base_momentum=0.8, max_momentum=0.9),
    "onecycle_epochs_nomomentum": lambda o: S.OneCycleLR(o, max_lr=0.5, epochs=5, steps_per_epoch=10, pct_start=0.25,
                                                         cycle_momentum=False, div_factor=10.0,
                                                         final_div_factor=100.0),
    "sequential": lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=5),
                                               S.CosineAnnealingLR(o, T_max=20)], milestones=[5]),
    "sequential3": lambda o: S.SequentialLR(o, [S.ConstantLR(o, factor=0.5, total_iters=3),
                                                S.ExponentialLR(o, gamma=0.9),
                                                S.StepLR(o, step_size=4, gamma=0.5)], milestones=[6, 20]),
    "chained": lambda o: S.ChainedScheduler([S.ConstantLR(o, factor=0.1, total_iters=2),
                                             S.ExponentialLR(o, gamma=0.9)]),
    "lambda": lambda o: S.LambdaLR(o, [lam0, lam1]),
}
ADAM_CASES = {
    "onecycle_adam": lambda o: S.OneCycleLR(o, max_lr=0.01, total_steps=50, pct_start=0.4),
}
# step(epoch) with the closed forms (and CosineAnnealingWarmRestarts' fractional epochs).
CLOSED_EPOCHS = [0, 3, 7, 8, 20, 14, 49, 2, 12, 30]
CLOSED_CASES = {
    "closed_step": lambda o: S.StepLR(o, step_size=7, gamma=0.5),
    "closed_multistep": lambda o: S.MultiStepLR(o, milestones=[5, 12, 12, 30], gamma=0.3),
    "closed_constant": lambda o: S.ConstantLR(o, factor=0.25, total_iters=8),
    "closed_linear": lambda o: S.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=12),
    "closed_exponential": lambda o: S.ExponentialLR(o, gamma=0.93),
    "closed_polynomial": lambda o: S.PolynomialLR(o, total_iters=20, power=2.0),
    "closed_cosine": lambda o: S.CosineAnnealingLR(o, T_max=15, eta_min=0.001),
}
FRACTIONAL_EPOCHS = [0.0, 0.37, 1.5, 4.99, 5.0, 7.25, 14.9, 15.0, 33.3, 2.2, 100.75]
FRACTIONAL_CASES = {
    "fractional_warm_restarts": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.0005),
    "fractional_warm_restarts_mult3": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=3),
    "fractional_warm_restarts_mult1": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=7),
}
PLATEAU_CASES = {
    "plateau_min_rel": dict(mode="min", factor=0.5, patience=2, threshold=0.01, cooldown=1, min_lr=[0.01, 0.002]),
    "plateau_min_abs": dict(mode="min", factor=0.3, patience=1, threshold=0.05, threshold_mode="abs"),
    "plateau_max_rel": dict(mode="max", factor=0.7, patience=3, threshold=0.02, cooldown=2, min_lr=0.03),
    "plateau_max_abs": dict(mode="max", factor=0.5, patience=0, threshold=0.1, threshold_mode="abs", cooldown=3,
                            eps=1e-3),
}


def plateau_metrics(mode):
    gen = torch.Generator().manual_seed(9 if mode == "min" else 10)
    noise = (torch.rand(STEPS, generator=gen, dtype=torch.float64) - 0.5) * 0.2
    trend = [1.0 / (1.0 + 0.3 * min(i, 15)) for i in range(STEPS)]  # improves, then plateaus
    vals = [t + float(n) for t, n in zip(trend, noise)]
    if mode == "max":
        vals = [-v for v in vals]
    return vals


def record(w, case, opt, sched, steps, with_momentum):
    lrs = [g["lr"] for g in opt.param_groups]
    moms = momentum_of(opt) if with_momentum else []
    for arg in steps:
        opt.step()
        if arg is None:
            sched.step()
        else:
            sched.step(arg)
        lrs += [g["lr"] for g in opt.param_groups]
        if with_momentum:
            moms += momentum_of(opt)
    n = len(lrs) // 2
    w.tensor(case + "/lr", lrs, (n, 2))
    if with_momentum:
        w.tensor(case + "/momentum", moms, (n, 2))
    write_state(w, case + "/sd", sched.state_dict())


def main():
    warnings.simplefilter("ignore")
    w = Writer("sched_lr.txt", ["LR scheduler sequences; see the generator's docstring."])
    for case, make in CASES.items():
        opt = make_optimizer()
        record(w, case, opt, make(opt), [None] * STEPS, case.startswith("onecycle"))
    for case, make in ADAM_CASES.items():
        opt = make_optimizer("adam")
        record(w, case, opt, make(opt), [None] * STEPS, True)
    # Resuming with last_epoch: initial_lr must already be in the groups.
    opt = make_optimizer()
    for g, lr in zip(opt.param_groups, [0.1, 0.05]):
        g["initial_lr"] = lr
        g["lr"] = lr * 0.3
    record(w, "cosine_resume", opt, S.CosineAnnealingLR(opt, T_max=15, eta_min=0.001, last_epoch=10), [None] * STEPS,
           False)
    for case, make in CLOSED_CASES.items():
        opt = make_optimizer()
        w.tensor(case + "/epochs", CLOSED_EPOCHS, (len(CLOSED_EPOCHS),))
        record(w, case, opt, make(opt), CLOSED_EPOCHS, False)
    for case, make in FRACTIONAL_CASES.items():
        opt = make_optimizer()
        w.tensor(case + "/epochs", FRACTIONAL_EPOCHS, (len(FRACTIONAL_EPOCHS),))
        record(w, case, opt, make(opt), FRACTIONAL_EPOCHS, False)
    for case, kwargs in PLATEAU_CASES.items():
        opt = make_optimizer()
        metrics = plateau_metrics(kwargs["mode"])
        w.tensor(case + "/metrics", metrics, (STEPS,))
        sched = S.ReduceLROnPlateau(opt, **kwargs)
        lrs = [g["lr"] for g in opt.param_groups]
        for m in metrics:
            opt.step()
            sched.step(m)
            lrs += [g["lr"] for g in opt.param_groups]
        w.tensor(case + "/lr", lrs, (STEPS + 1, 2))
        write_state(w, case + "/sd", sched.state_dict())
    w.save()


if __name__ == "__main__":
    main()
