"""The C API from Python's ctypes (standard library only), against an installed libember.so.

Reads what `consumer DIR` wrote (see c_api_test.c): lists the checkpoint's tensors, reads one,
reads the hyperparameters as JSON, runs the model on the probe input and compares with the C++
API's output. Usage: python3 c_api_test.py LIBEMBER_SO DIR
"""
import ctypes
import json
import struct
import sys

EMBER_OK, EMBER_ERROR_INVALID_ARGUMENT, EMBER_ERROR_NOT_FOUND, EMBER_ERROR_BUFFER_TOO_SMALL = 0, 1, 2, 3
EMBER_MAX_NDIM = 8


class TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("ndim", ctypes.c_int32),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("nbytes", ctypes.c_size_t)]


def main():
    lib = ctypes.CDLL(sys.argv[1])
    directory = sys.argv[2]
    lib.ember_last_error.restype = ctypes.c_char_p
    for name in ["ember_version", "ember_checkpoint_open", "ember_checkpoint_close", "ember_checkpoint_tensor_count",
                 "ember_checkpoint_tensor_info", "ember_checkpoint_read_tensor", "ember_checkpoint_hparams_json",
                 "ember_model_load", "ember_model_free", "ember_model_forward"]:
        getattr(lib, name).restype = ctypes.c_int
    lib.ember_checkpoint_close.argtypes = [ctypes.c_void_p]
    lib.ember_model_free.argtypes = [ctypes.c_void_p]

    def ok(status):
        if status != EMBER_OK:
            raise SystemExit(f"c_api_test.py: status {status}: {lib.ember_last_error().decode()}")

    major, minor, patch = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    ok(lib.ember_version(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch)))
    version = f"{major.value}.{minor.value}.{patch.value}"

    ckpt = ctypes.c_void_p()
    path = f"{directory}/model.ckpt".encode()
    ok(lib.ember_checkpoint_open(path, ctypes.byref(ckpt)))
    count = ctypes.c_size_t()
    ok(lib.ember_checkpoint_tensor_count(ckpt, ctypes.byref(count)))
    tensors = {}
    for i in range(count.value):
        info = TensorInfo()
        ok(lib.ember_checkpoint_tensor_info(ckpt, ctypes.c_size_t(i), ctypes.byref(info)))
        tensors[info.name.decode()] = ([info.shape[d] for d in range(info.ndim)], info.dtype, info.nbytes)
    assert sorted(tensors) == ["state_dict/0.bias", "state_dict/0.weight", "state_dict/2.bias", "state_dict/2.weight"], tensors
    assert tensors["state_dict/2.weight"] == ([2, 16], 0, 128), tensors["state_dict/2.weight"]
    buf = (ctypes.c_float * 2)()
    ok(lib.ember_checkpoint_read_tensor(ckpt, b"state_dict/2.bias", buf, ctypes.c_size_t(8)))
    assert all(v == v for v in buf), list(buf)

    length = ctypes.c_size_t()
    assert lib.ember_checkpoint_hparams_json(ckpt, None, ctypes.c_size_t(0), ctypes.byref(length)) == EMBER_ERROR_BUFFER_TOO_SMALL
    text = ctypes.create_string_buffer(length.value + 1)
    ok(lib.ember_checkpoint_hparams_json(ckpt, text, ctypes.c_size_t(len(text)), ctypes.byref(length)))
    hparams = json.loads(text.value.decode())
    assert hparams == {"hidden": 16, "lr": 0.01, "activation": "tanh"}, hparams
    ok(lib.ember_checkpoint_close(ckpt))

    with open(f"{directory}/probe_input.f32", "rb") as f:
        probe = f.read()
    with open(f"{directory}/probe_output.f32", "rb") as f:
        expected = struct.unpack("10f", f.read())
    model = ctypes.c_void_p()
    ok(lib.ember_model_load(path, b"cpu", ctypes.byref(model)))
    inp = (ctypes.c_float * 20).from_buffer_copy(probe)
    in_shape = (ctypes.c_int64 * 2)(5, 4)
    out = (ctypes.c_float * 10)()
    out_shape = (ctypes.c_int64 * EMBER_MAX_NDIM)()
    out_ndim = ctypes.c_int32()
    ok(lib.ember_model_forward(model, inp, in_shape, ctypes.c_int32(2), out, ctypes.c_size_t(10), out_shape,
                               ctypes.byref(out_ndim)))
    assert out_ndim.value == 2 and list(out_shape[:2]) == [5, 2], (out_ndim.value, list(out_shape[:2]))
    diff = max(abs(a - b) for a, b in zip(out, expected))
    assert diff <= 1e-6, diff
    bad = (ctypes.c_int64 * 2)(5, 7)
    bad_input = (ctypes.c_float * 35)()  # an input holds as many floats as its shape says
    status = lib.ember_model_forward(model, bad_input, bad, ctypes.c_int32(2), out, ctypes.c_size_t(10), out_shape,
                                     ctypes.byref(out_ndim))
    assert status == EMBER_ERROR_INVALID_ARGUMENT, status
    assert b"(5, 7)" in lib.ember_last_error(), lib.ember_last_error()
    ok(lib.ember_model_free(model))

    missing = ctypes.c_void_p()
    assert lib.ember_checkpoint_open(b"/nonexistent.ckpt", ctypes.byref(missing)) != EMBER_OK
    assert b"/nonexistent.ckpt" in lib.ember_last_error()
    print(f"c_api_test.py: all checks passed (Ember {version}, max |diff| {diff:g})")


if __name__ == "__main__":
    main()
