#!/usr/bin/python3
# Writes fixtures/nn_{layers,batchnorm,losses,init}.txt for tests/nn: each torch.nn layer's state
# dict (loaded into the Ember layer), input, upstream gradient, output and the gradients of
# sum(y * gy) w.r.t. the input and every parameter; BatchNorm running statistics over several
# training steps and the eval output; every loss module per reduction; init fans and gains.
# Inputs and weights are f32; references are computed in float64 from those same values, then rounded.
# Run: /usr/bin/python3 tests/reference/gen_nn.py   (from anywhere)
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DT = {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64"}


def write_tensor(out, name, t):
    t = t.detach()
    dt = DT[t.dtype]
    out.append(("tensor %s %s %d %s" % (name, dt, t.dim(), " ".join(str(d) for d in t.shape))).rstrip())
    vals = t.reshape(-1).tolist()
    strs = [str(int(v)) for v in vals] if dt == "i64" else ["%.17g" % v for v in vals]
    for i in range(0, len(strs), 8):
        out.append(" ".join(strs[i:i + 8]))


def write_scalar(out, name, v):
    out.append("scalar %s %.17g" % (name, v))


def randomize(module, gen):
    """Replaces every floating parameter with N(0, 1) f32 values (BN/LN would start at 1 and 0)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))


def write_state(out, name, module):
    for k, v in module.state_dict().items():
        write_tensor(out, "%s.sd.%s" % (name, k), v)


def run_case(out, name, module, x, gen, randomize_params=True, training=True):
    """Writes the state dict, x, gy, y and the gradients of sum(y * gy) (float64 reference)."""
    if randomize_params:
        randomize(module, gen)
    module.train(training)
    write_state(out, name, module)
    ref = _double_copy(module)
    ref.train(training)
    xd = x.double() if x.is_floating_point() else x
    if x.is_floating_point():
        xd.requires_grad_()
    y = ref(xd)
    gy = torch.randn(y.shape, generator=gen)
    y.backward(gy.double())
    write_tensor(out, name + ".x", x)
    write_tensor(out, name + ".gy", gy)
    write_tensor(out, name + ".y", y.float())
    if x.is_floating_point():
        write_tensor(out, name + ".gx", xd.grad.float())
    for k, p in ref.named_parameters():
        write_tensor(out, "%s.grad.%s" % (name, k), p.grad.float())
    for k, b in ref.named_buffers():
        write_tensor(out, "%s.after.%s" % (name, k), b.float() if b.is_floating_point() else b)
    return ref


def _double_copy(module):
    import copy
    m = copy.deepcopy(module)
    return m.double()


def layers_fixture():
    gen = torch.Generator().manual_seed(2024)
    out = ["# Layer cases: NAME.sd.KEY = state dict, NAME.x input, NAME.gy upstream gradient, NAME.y output,",
           "# NAME.gx / NAME.grad.PARAM = gradients of sum(y * gy), NAME.after.BUF = buffers after forward."]

    def rnd(*shape):
        return torch.randn(*shape, generator=gen)

    run_case(out, "linear", nn.Linear(5, 4), rnd(3, 5), gen)
    run_case(out, "linear3d", nn.Linear(5, 3), rnd(2, 3, 5), gen)
    run_case(out, "linear_nobias", nn.Linear(5, 3, bias=False), rnd(4, 5), gen)
    run_case(out, "conv", nn.Conv2d(3, 4, 3, stride=2, padding=1), rnd(2, 3, 5, 5), gen)
    run_case(out, "conv_groups",
             nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=2), rnd(1, 4, 8, 7), gen)
    run_case(out, "conv_unbatched", nn.Conv2d(2, 3, 2, bias=False), rnd(2, 5, 4), gen)
    run_case(out, "convt", nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1), rnd(2, 4, 4, 4), gen)
    run_case(out, "convt_groups",
             nn.ConvTranspose2d(4, 6, (2, 3), stride=(2, 1), groups=2, bias=False, dilation=(1, 2)), rnd(1, 4, 3, 5),
             gen)
    run_case(out, "maxpool", nn.MaxPool2d(2), rnd(2, 2, 6, 6), gen)
    run_case(out, "maxpool_s2p1_ceil", nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), rnd(1, 2, 8, 7), gen)
    run_case(out, "avgpool", nn.AvgPool2d(2), rnd(2, 2, 6, 6), gen)
    run_case(out, "avgpool_nocount", nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
             rnd(1, 2, 8, 7), gen)
    run_case(out, "bn1d", nn.BatchNorm1d(4), rnd(6, 4), gen)
    run_case(out, "bn1d_3d", nn.BatchNorm1d(3), rnd(4, 3, 5), gen)
    run_case(out, "bn2d", nn.BatchNorm2d(3), rnd(3, 3, 4, 4) * 2.0 + 0.5, gen)
    run_case(out, "layernorm", nn.LayerNorm([4, 5]), rnd(3, 4, 5), gen)
    run_case(out, "layernorm_noaffine", nn.LayerNorm(6, eps=1e-3, elementwise_affine=False), rnd(2, 3, 6), gen)
    run_case(out, "embedding", nn.Embedding(10, 4), torch.randint(0, 10, (3, 5), generator=gen), gen)
    idx = torch.randint(0, 10, (4, 6), generator=gen)
    idx[0, 0] = idx[2, 3] = idx[3, 5] = 2
    emb = nn.Embedding(10, 4, padding_idx=2)
    randomize(emb, gen)  # the padding row is non-zero too: its forward value must be the weight row
    run_case(out, "embedding_pad", emb, idx, gen, randomize_params=False)
    for name, m in (("relu", nn.ReLU()), ("leaky_relu", nn.LeakyReLU(0.2)), ("sigmoid", nn.Sigmoid()),
                    ("tanh", nn.Tanh()), ("gelu", nn.GELU()), ("gelu_tanh", nn.GELU("tanh")),
                    ("softmax", nn.Softmax(dim=1)), ("identity", nn.Identity()),
                    ("flatten", nn.Flatten()), ("unflatten", nn.Unflatten(1, (2, -1)))):
        run_case(out, name, m, rnd(2, 4, 3), gen)
    run_case(out, "mlp", nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)), rnd(4, 6), gen)
    run_case(out, "conv1d", nn.Conv1d(3, 4, 3, stride=2, padding=1), rnd(2, 3, 9), gen)
    run_case(out, "conv1d_groups", nn.Conv1d(4, 6, 2, dilation=2, groups=2, bias=False), rnd(4, 10), gen)
    return out


def batchnorm_fixture():
    gen = torch.Generator().manual_seed(77)
    out = ["# BatchNorm over several training steps: NAME.sd.* initial state (random affine), NAME.xK / NAME.yK",
           "# input and output of training step K, NAME.after.BUF buffers after the steps, NAME.xe / NAME.ye /",
           "# NAME.gye / NAME.gxe / NAME.grade.PARAM an eval-mode forward and gradients of sum(ye * gye)."]
    cases = [
        ("bn2d_mom", nn.BatchNorm2d(3), (4, 3, 3, 3)),
        ("bn1d_cumavg", nn.BatchNorm1d(4, momentum=None), (5, 4, 3)),
        ("bn1d_mom03", nn.BatchNorm1d(4, eps=1e-3, momentum=0.3), (6, 4)),
        ("bn2d_notrack", nn.BatchNorm2d(2, affine=False, track_running_stats=False), (3, 2, 4, 4)),
    ]
    for name, m, shape in cases:
        randomize(m, gen)
        write_state(out, name, m)
        ref = _double_copy(m)
        ref.train()
        for k in range(3):
            x = torch.randn(shape, generator=gen) * (k + 1) + k
            y = ref(x.double())
            write_tensor(out, "%s.x%d" % (name, k), x)
            write_tensor(out, "%s.y%d" % (name, k), y.float())
        for k, b in ref.named_buffers():
            write_tensor(out, "%s.after.%s" % (name, k), b.float() if b.is_floating_point() else b)
        ref.eval()
        xe = torch.randn(shape, generator=gen)
        xed = xe.double().requires_grad_()
        ye = ref(xed)
        gye = torch.randn(ye.shape, generator=gen)
        ye.backward(gye.double())
        write_tensor(out, name + ".xe", xe)
        write_tensor(out, name + ".ye", ye.float())
        write_tensor(out, name + ".gye", gye)
        write_tensor(out, name + ".gxe", xed.grad.float())
        for k, p in ref.named_parameters():
            write_tensor(out, "%s.grade.%s" % (name, k), p.grad.float())
    return out


def losses_fixture():
    gen = torch.Generator().manual_seed(99)
    out = ["# Loss modules: NAME.input, NAME.target, NAME.weight / NAME.pos_weight (when used);",
           "# per reduction R in mean/sum/none: NAME.R.y and NAME.R.gx (gradient of y, or of sum(y * NAME.none.gy))."]

    def rnd(*shape):
        return torch.randn(*shape, generator=gen)

    w4 = torch.rand(4, generator=gen) + 0.5
    cls = torch.randint(0, 4, (6,), generator=gen)
    cls[1] = 1
    cls[4] = 1
    cls3 = torch.randint(0, 4, (2, 3), generator=gen)
    cls3[0, 1] = 1
    cases = [
        ("mse", lambda r: nn.MSELoss(reduction=r), rnd(3, 4), rnd(3, 4), {}),
        ("l1", lambda r: nn.L1Loss(reduction=r), rnd(3, 4), rnd(3, 4), {}),
        ("smooth_l1", lambda r: nn.SmoothL1Loss(reduction=r), rnd(3, 4) * 2, rnd(3, 4), {}),
        ("smooth_l1_b05", lambda r: nn.SmoothL1Loss(reduction=r, beta=0.5), rnd(3, 4), rnd(3, 4), {}),
        ("bce", lambda r: nn.BCELoss(weight=w4, reduction=r), torch.rand(3, 4, generator=gen) * 0.9 + 0.05,
         torch.rand(3, 4, generator=gen), {"weight": w4}),
        ("bce_logits", lambda r: nn.BCEWithLogitsLoss(weight=w4, reduction=r, pos_weight=w4.flip(0) * 2),
         rnd(3, 4) * 2, (torch.rand(3, 4, generator=gen) > 0.5).float(), {"weight": w4, "pos_weight": w4.flip(0) * 2}),
        ("ce", lambda r: nn.CrossEntropyLoss(reduction=r), rnd(6, 4), cls, {}),
        ("ce_full", lambda r: nn.CrossEntropyLoss(weight=w4, ignore_index=1, reduction=r, label_smoothing=0.1),
         rnd(6, 4), cls, {"weight": w4}),
        ("ce_spatial", lambda r: nn.CrossEntropyLoss(weight=w4, ignore_index=1, reduction=r), rnd(2, 4, 3), cls3,
         {"weight": w4}),
        ("nll", lambda r: nn.NLLLoss(weight=w4, ignore_index=1, reduction=r), F.log_softmax(rnd(6, 4), 1), cls,
         {"weight": w4}),
    ]
    for name, make, inp, target, extra in cases:
        write_tensor(out, name + ".input", inp)
        write_tensor(out, name + ".target", target)
        for k, v in extra.items():
            write_tensor(out, "%s.%s" % (name, k), v)
        for red in ("mean", "sum", "none"):
            m = make(red).double()
            xd = inp.double().requires_grad_()
            tgt = target.double() if target.is_floating_point() else target
            y = m(xd, tgt)
            if red == "none":
                gy = torch.randn(y.shape, generator=gen)
                write_tensor(out, "%s.none.gy" % name, gy)
                y.backward(gy.double())
            else:
                y.backward()
            write_tensor(out, "%s.%s.y" % (name, red), y.float())
            write_tensor(out, "%s.%s.gx" % (name, red), xd.grad.float())
    return out


def init_fixture():
    out = ["# torch.nn.init: FAN.NAME.in / .out from _calculate_fan_in_and_fan_out for the shapes below;",
           "# gain.NAME = calculate_gain; bound.NAME = the default weight/bias bounds of torch layers."]
    shapes = {"linear": (64, 784), "conv": (16, 3, 5, 3), "convt": (8, 6, 3, 2), "r3": (4, 5, 6)}
    for k, s in shapes.items():
        fi, fo = nn.init._calculate_fan_in_and_fan_out(torch.empty(s))
        write_scalar(out, "fan.%s.in" % k, fi)
        write_scalar(out, "fan.%s.out" % k, fo)
    for k, (nl, p) in {"linear": ("linear", None), "conv2d": ("conv2d", None), "sigmoid": ("sigmoid", None),
                       "tanh": ("tanh", None), "relu": ("relu", None), "leaky_relu": ("leaky_relu", None),
                       "leaky_relu_02": ("leaky_relu", 0.2), "leaky_relu_sqrt5": ("leaky_relu", math.sqrt(5)),
                       "selu": ("selu", None)}.items():
        write_scalar(out, "gain.%s" % k, nn.init.calculate_gain(nl, p))
    for k, m in {"linear": nn.Linear(300, 200), "conv": nn.Conv2d(16, 32, 3), "convt": nn.ConvTranspose2d(16, 8, 3, groups=2)}.items():
        fan_in = nn.init._calculate_fan_in_and_fan_out(m.weight)[0]
        write_scalar(out, "bound.%s" % k, 1.0 / math.sqrt(fan_in))
    return out


def main():
    os.makedirs(os.path.join(HERE, "fixtures"), exist_ok=True)
    for fname, lines in (("nn_layers.txt", layers_fixture()), ("nn_batchnorm.txt", batchnorm_fixture()),
                         ("nn_losses.txt", losses_fixture()), ("nn_init.txt", init_fixture())):
        path = os.path.join(HERE, "fixtures", fname)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
