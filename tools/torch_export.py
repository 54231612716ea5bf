#!/usr/bin/env python3
"""Exports a PyTorch model for Ember: its module tree as JSON and its weights as .safetensors.

`ember-ckpt import-torch ARCH.json WEIGHTS.safetensors OUT.ckpt` turns the two files into a
self-describing Ember checkpoint (`nn::load_module` rebuilds the model from it alone). This script
needs PyTorch (>= 1.13) and nothing from Ember's build; it uses the `safetensors` package when it is
importable and writes the (simple) format itself otherwise.

ARCH.json holds the value of the checkpoint's `module_tree` section (docs/checkpoint-format.md):
{"version": 1, "root": node}, node = {"type", "options", "children", "modules"}, with each module's
constructor arguments under PyTorch's names. Only the layers Ember has are exported, matched by
exact class (a subclass may change `forward`, which the tree cannot record); anything else, or an
option value Ember lacks, raises ExportError naming the class, the module's dotted path and the
option.

Python:   from torch_export import export
          export(model, "arch.json", "weights.safetensors")
Command:  python3 tools/torch_export.py MODULE:FACTORY ARCH.json WEIGHTS.safetensors
          python3 tools/torch_export.py path/to/model.py:make_model ARCH.json WEIGHTS.safetensors
          python3 tools/torch_export.py model.pt ARCH.json WEIGHTS.safetensors   (a torch.save'd module)
"""
import argparse
import importlib
import importlib.util
import json
import math
import os
import struct
import sys

import torch
from torch import nn

MODULE_TREE_VERSION = 1

# torch dtype -> safetensors dtype name, for the dtypes Ember stores.
SAFETENSORS_DTYPES = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int32: "I32", torch.int64: "I64", torch.uint8: "U8", torch.bool: "BOOL",
}


class ExportError(ValueError):
    """A module or option that Ember cannot represent; the message names the module's path."""


def _where(path):
    return "at the root" if not path else "at '%s'" % path


class _Node:
    """One module being exported: reads its attributes into options and reports what is unsupported."""

    def __init__(self, module, path):
        self.module = module
        self.path = path
        self.cls = type(module).__name__

    def fail(self, message):
        raise ExportError("[torch_export] %s %s: %s" % (self.cls, _where(self.path), message))

    def require(self, attr, expected, why):
        """Fails unless getattr(module, attr) == expected (a missing attribute counts as expected)."""
        value = getattr(self.module, attr, expected)
        if value != expected:
            self.fail("%s=%r is not supported (%s)" % (attr, value, why))

    def get_int(self, attr):
        v = getattr(self.module, attr)
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail("%s=%r: expected an int" % (attr, v))
        return int(v)

    def get_float(self, attr):
        v = getattr(self.module, attr)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail("%s=%r: expected a finite number" % (attr, v))
        return float(v)

    def get_optional_float(self, attr):
        return None if getattr(self.module, attr) is None else self.get_float(attr)

    def get_bool(self, attr):
        return bool(getattr(self.module, attr))

    def get_ints(self, attr):
        v = getattr(self.module, attr)
        if not isinstance(v, (tuple, list, torch.Size)) or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in v):
            self.fail("%s=%r: expected a sequence of ints" % (attr, v))
        return [int(x) for x in v]

    def get_size1(self, attr, value=None):
        """A Conv1d kernel size, stride, padding or dilation: torch holds a 1-tuple; Ember an int."""
        v = getattr(self.module, attr) if value is None else value
        if isinstance(v, (tuple, list)) and len(v) == 1:
            v = v[0]
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail("%s=%r: expected an int or a 1-tuple of ints" % (attr, v))
        return int(v)

    def get_size2(self, attr, value=None):
        """A kernel size, stride, padding or dilation: an int, or [h, w] (as the module holds it)."""
        v = getattr(self.module, attr) if value is None else value
        if isinstance(v, int) and not isinstance(v, bool):
            return int(v)
        if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, int) for x in v):
            return [int(v[0]), int(v[1])]
        self.fail("%s=%r: expected an int or a pair of ints" % (attr, v))


def _conv_padding(node):
    """Conv padding as the module holds it; the strings 'valid' and 'same' become the explicit
    padding, one entry per spatial dimension."""
    m = node.module
    if not isinstance(m.padding, str):
        return list(m.padding) if len(m.kernel_size) == 1 else node.get_size2("padding")
    if m.padding == "valid":
        return [0] * len(m.kernel_size)
    pad = []
    for k, d in zip(m.kernel_size, m.dilation):
        total = d * (k - 1)
        if total % 2:
            node.fail("padding='same' with kernel_size=%r and dilation=%r pads one side more than the other, "
                      "which Ember's symmetric padding cannot express" % (tuple(m.kernel_size), tuple(m.dilation)))
        pad.append(total // 2)
    return pad


def _zeros_padding(node):
    node.require("padding_mode", "zeros", "Ember's convolutions pad with zeros")


def _linear(n):
    return {"in_features": n.get_int("in_features"), "out_features": n.get_int("out_features"),
            "bias": n.module.bias is not None}


def _conv2d(n):
    _zeros_padding(n)
    return {"in_channels": n.get_int("in_channels"), "out_channels": n.get_int("out_channels"),
            "kernel_size": n.get_size2("kernel_size"), "stride": n.get_size2("stride"),
            "padding": _conv_padding(n), "dilation": n.get_size2("dilation"), "groups": n.get_int("groups"),
            "bias": n.module.bias is not None}


def _conv1d(n):
    _zeros_padding(n)
    padding = _conv_padding(n)  # 'valid' / 'same' resolved per spatial dim: a list of one here
    return {"in_channels": n.get_int("in_channels"), "out_channels": n.get_int("out_channels"),
            "kernel_size": n.get_size1("kernel_size"), "stride": n.get_size1("stride"),
            "padding": n.get_size1("padding", padding), "dilation": n.get_size1("dilation"),
            "groups": n.get_int("groups"), "bias": n.module.bias is not None}


def _conv_transpose2d(n):
    _zeros_padding(n)
    return {"in_channels": n.get_int("in_channels"), "out_channels": n.get_int("out_channels"),
            "kernel_size": n.get_size2("kernel_size"), "stride": n.get_size2("stride"),
            "padding": n.get_size2("padding"), "output_padding": n.get_size2("output_padding"),
            "groups": n.get_int("groups"), "bias": n.module.bias is not None, "dilation": n.get_size2("dilation")}


def _max_pool2d(n):
    n.require("return_indices", False, "Ember's MaxPool2d returns the values only")
    # torch resolves stride=None to the kernel size in the constructor, as Ember records it
    stride = n.module.stride if n.module.stride is not None else n.module.kernel_size
    return {"kernel_size": n.get_size2("kernel_size"), "stride": n.get_size2("stride", stride),
            "padding": n.get_size2("padding"), "dilation": n.get_size2("dilation"),
            "ceil_mode": n.get_bool("ceil_mode")}


def _avg_pool2d(n):
    n.require("divisor_override", None, "Ember divides by the window size")
    stride = n.module.stride if n.module.stride is not None else n.module.kernel_size
    return {"kernel_size": n.get_size2("kernel_size"), "stride": n.get_size2("stride", stride),
            "padding": n.get_size2("padding"), "ceil_mode": n.get_bool("ceil_mode"),
            "count_include_pad": n.get_bool("count_include_pad")}


def _batch_norm(n):
    return {"num_features": n.get_int("num_features"), "eps": n.get_float("eps"),
            "momentum": n.get_optional_float("momentum"), "affine": n.get_bool("affine"),
            "track_running_stats": n.get_bool("track_running_stats")}


def _layer_norm(n):
    if n.module.elementwise_affine and getattr(n.module, "bias", True) is None:
        n.fail("bias=False is not supported (Ember's LayerNorm has a bias whenever elementwise_affine=True)")
    return {"normalized_shape": n.get_ints("normalized_shape"), "eps": n.get_float("eps"),
            "elementwise_affine": n.get_bool("elementwise_affine")}


def _embedding(n):
    n.require("max_norm", None, "Ember does not renormalise embeddings")
    n.require("scale_grad_by_freq", False, "Ember does not scale embedding gradients")
    # `sparse` only picks the gradient's storage; Ember's gradients are dense, with the same values.
    padding_idx = n.module.padding_idx
    return {"num_embeddings": n.get_int("num_embeddings"), "embedding_dim": n.get_int("embedding_dim"),
            "padding_idx": None if padding_idx is None else n.get_int("padding_idx")}


def _unflatten(n):
    if isinstance(n.module.dim, str):
        n.fail("dim=%r is not supported (Ember has no named tensors)" % n.module.dim)
    return {"dim": n.get_int("dim"), "unflattened_size": n.get_ints("unflattened_size")}


def _gelu(n):
    approximate = getattr(n.module, "approximate", "none")
    if approximate not in ("none", "tanh"):
        n.fail("approximate=%r: expected 'none' or 'tanh'" % approximate)
    return {"approximate": approximate}


def _softmax(n):
    if n.module.dim is None:
        n.fail("dim=None (the implicit-dim legacy rule) is not supported; give dim explicitly")
    return {"dim": n.get_int("dim")}


def _no_options(n):
    return {}


# Ember's registered type name (PyTorch's class name) -> (torch class, options writer). The option
# keys are those of nn/serialize.cpp (add_builtins) and the module_tree table of
# docs/checkpoint-format.md. `inplace` flags are ignored: they do not change the results.
LAYERS = {
    "Identity": (nn.Identity, _no_options),
    "Linear": (nn.Linear, _linear),
    "Conv1d": (nn.Conv1d, _conv1d),
    "Conv2d": (nn.Conv2d, _conv2d),
    "ConvTranspose2d": (nn.ConvTranspose2d, _conv_transpose2d),
    "MaxPool2d": (nn.MaxPool2d, _max_pool2d),
    "AvgPool2d": (nn.AvgPool2d, _avg_pool2d),
    "Dropout": (nn.Dropout, lambda n: {"p": n.get_float("p")}),
    "Embedding": (nn.Embedding, _embedding),
    "Flatten": (nn.Flatten, lambda n: {"start_dim": n.get_int("start_dim"), "end_dim": n.get_int("end_dim")}),
    "Unflatten": (nn.Unflatten, _unflatten),
    "ReLU": (nn.ReLU, _no_options),
    "LeakyReLU": (nn.LeakyReLU, lambda n: {"negative_slope": n.get_float("negative_slope")}),
    "Sigmoid": (nn.Sigmoid, _no_options),
    "Tanh": (nn.Tanh, _no_options),
    "GELU": (nn.GELU, _gelu),
    "Softmax": (nn.Softmax, _softmax),
    "BatchNorm1d": (nn.BatchNorm1d, _batch_norm),
    "BatchNorm2d": (nn.BatchNorm2d, _batch_norm),
    "LayerNorm": (nn.LayerNorm, _layer_norm),
    "Sequential": (nn.Sequential, _no_options),
    "ModuleList": (nn.ModuleList, _no_options),
    "ModuleDict": (nn.ModuleDict, _no_options),
}
_BY_CLASS = {cls: (name, write) for name, (cls, write) in LAYERS.items()}
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _node(module, path):
    n = _Node(module, path)
    entry = _BY_CLASS.get(type(module))
    if entry is None:
        n.fail("%s.%s is not a layer Ember supports (supported, by exact class: %s); compose the model from "
               "these with nn.Sequential" % (type(module).__module__, type(module).__qualname__,
                                            ", ".join(sorted(LAYERS))))
    name, write = entry
    # _modules, not named_children(): a module registered under two names is two children here,
    # as in state_dict() (named_children() would list it once)
    children = list(module._modules.items())
    if children and type(module) not in _CONTAINERS:
        n.fail("has child modules %s, which Ember's %s does not have" % ([c for c, _ in children], name))
    for child_name, child in children:
        if child is None:
            n.fail("has a child '%s' registered as None" % child_name)
    modules = {}
    for child_name, child in children:
        modules[child_name] = _node(child, child_name if not path else path + "." + child_name)
    return {"type": name, "options": write(n), "children": [c for c, _ in children], "modules": modules}


def module_tree(model):
    """The module_tree section's value for `model`: {"version": 1, "root": node} (JSON-ready)."""
    if not isinstance(model, nn.Module):
        raise ExportError("[torch_export] expected a torch.nn.Module, got %s" % type(model).__name__)
    return {"version": MODULE_TREE_VERSION, "root": _node(model, "")}


def state_dict_tensors(model):
    """The model's state_dict as contiguous CPU tensors (each its own copy), checked for dtype."""
    out = {}
    for name, t in model.state_dict().items():
        if t.dtype not in SAFETENSORS_DTYPES:
            raise ExportError("[torch_export] state_dict entry '%s' has dtype %s, which Ember does not store "
                              "(supported: %s)" % (name, t.dtype, ", ".join(str(d) for d in SAFETENSORS_DTYPES)))
        # clone: tied weights share storage, which safetensors refuses to save
        out[name] = t.detach().cpu().contiguous().clone()
    return out


def _tensor_bytes(t):
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: go through the int16 bits
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(tensors, path, metadata=None):
    """The safetensors format without the package: an 8-byte little-endian header length, a JSON
    header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}} padded with spaces to a
    multiple of 8, then the tensors back to back (largest elements first, so each stays aligned)."""
    order = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name, t in order:
        b = _tensor_bytes(t)
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def _atomic_write(path, write):
    """Calls write(tmp) and renames tmp onto path, so a failure never leaves a torn file at path."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export(model, arch_path, weights_path, use_safetensors=None):
    """Writes model's module tree to arch_path (JSON) and its state_dict to weights_path
    (.safetensors); returns the tree. use_safetensors: None uses the safetensors package when it is
    importable, False always the built-in writer (its bytes depend on nothing installed)."""
    tree = module_tree(model)
    tensors = state_dict_tensors(model)
    metadata = {"format": "pt", "source": "torch_export.py", "torch_version": torch.__version__.split("+")[0]}
    save_file = None
    if use_safetensors is not False:
        try:
            from safetensors.torch import save_file
        except ImportError:
            if use_safetensors:
                raise
    _atomic_write(arch_path, lambda p: _write_text(p, json.dumps(tree, indent=1, allow_nan=False) + "\n"))
    if save_file is not None:
        _atomic_write(weights_path, lambda p: save_file(tensors, p, metadata=metadata))
    else:
        _atomic_write(weights_path, lambda p: write_safetensors(tensors, p, metadata))
    return tree


def _write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def load_model(source, state_dict=None, kwargs=None):
    """The model named by `source`: MODULE:FACTORY (an importable module, or a .py file, and a
    function that returns the model) or a file written by torch.save(model). state_dict: a file
    written by torch.save(model.state_dict()), loaded into it strictly."""
    module_part, sep, attr = source.rpartition(":")
    if sep and not os.path.exists(source):
        if module_part.endswith(".py"):
            spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(module_part))[0],
                                                          module_part)
            if spec is None or not os.path.exists(module_part):
                raise ExportError("[torch_export] cannot find '%s'" % module_part)
            mod = importlib.util.module_from_spec(spec)
            sys.path.insert(0, os.path.dirname(os.path.abspath(module_part)))
            spec.loader.exec_module(mod)
        else:
            sys.path.insert(0, os.getcwd())
            mod = importlib.import_module(module_part)
        factory = getattr(mod, attr, None)
        if not callable(factory):
            raise ExportError("[torch_export] '%s' has no function '%s'" % (module_part, attr))
        model = factory(**(kwargs or {}))
    else:
        try:
            model = torch.load(source, map_location="cpu", weights_only=False)
        except TypeError:  # a torch without the weights_only argument
            model = torch.load(source, map_location="cpu")
        if isinstance(model, dict):
            raise ExportError("[torch_export] '%s' holds a state_dict, not a module: name the code that builds the "
                              "model (MODULE:FACTORY) and pass this file with --state-dict" % source)
    if not isinstance(model, nn.Module):
        raise ExportError("[torch_export] '%s' gave a %s, not a torch.nn.Module" % (source, type(model).__name__))
    if state_dict is not None:
        model.load_state_dict(torch.load(state_dict, map_location="cpu"), strict=True)
    return model


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Export a PyTorch model's module tree (JSON) and weights (.safetensors) for "
                    "`ember-ckpt import-torch`.")
    p.add_argument("source", metavar="SOURCE",
                   help="MODULE:FACTORY or FILE.py:FACTORY (a function returning the model), or a torch.save'd module")
    p.add_argument("arch", metavar="ARCH.json", help="output: the module tree")
    p.add_argument("weights", metavar="WEIGHTS.safetensors", help="output: the state_dict")
    p.add_argument("--state-dict", metavar="FILE", help="load this torch.save'd state_dict into the model first")
    p.add_argument("--kwargs", metavar="JSON", default="{}", help="keyword arguments for FACTORY, as a JSON object")
    args = p.parse_args(argv)
    try:
        model = load_model(args.source, args.state_dict, json.loads(args.kwargs))
        tree = export(model, args.arch, args.weights)
    except ExportError as e:
        print("torch_export: %s" % e, file=sys.stderr)
        return 2
    count = sum(1 for _ in _walk(tree["root"]))
    print("wrote %s (%d modules) and %s (%d tensors)"
          % (args.arch, count, args.weights, len(model.state_dict())))
    return 0


def _walk(node):
    yield node
    for child in node["modules"].values():
        yield from _walk(child)


if __name__ == "__main__":
    sys.exit(main())
