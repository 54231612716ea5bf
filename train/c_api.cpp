// The C API (<ember/c.h>) over the C++ one. Every entry point runs its body through guarded(),
// which turns any exception into a status code and a thread-local message, so nothing C++ crosses
// into C. Handles own the C++ objects and the strings and shapes handed out to the caller.
#include "ember/c.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "ember/checkpoint/checkpoint.h"
#include "ember/config.h"
#include "ember/nn/module.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/tensor.h"
#include "ember/runtime/value.h"
#include "ember/train/module_io.h"

struct ember_checkpoint {
  ember::checkpoint::Reader reader;
  std::vector<std::string> names;  // "section/dotted.name", parallel to reader.tensors()
};

struct ember_model {
  ember::nn::ModulePtr module;
  ember::Device device;
};

namespace {

thread_local std::string g_last_error;

// An error the C layer detects itself, with the status it maps to.
struct CError {
  ember_status status;
  std::string message;
};

// Records message as this thread's last error (keeping the old one if even that allocation fails)
// and returns status.
ember_status failed(ember_status status, const char* message) noexcept {
  try {
    g_last_error = message;
  } catch (...) {
  }
  return status;
}

template <typename F>
ember_status guarded(F&& body) noexcept {
  try {
    body();
    g_last_error.clear();
    return EMBER_OK;
  } catch (const CError& e) {
    return failed(e.status, e.message.c_str());
  } catch (const std::bad_alloc&) {
    return failed(EMBER_ERROR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return failed(EMBER_ERROR_FAILED, e.what());
  } catch (...) {
    return failed(EMBER_ERROR_FAILED, "unknown error");
  }
}

[[noreturn]] void fail(ember_status status, std::string message) { throw CError{status, std::move(message)}; }

void require(const void* p, const char* function, const char* argument) {
  if (p == nullptr) fail(EMBER_ERROR_INVALID_ARGUMENT, std::string(function) + ": " + argument + " is NULL");
}

// Copies text (and its NUL) into a caller's buffer, as ember_checkpoint_hparams_json describes.
void give_text(const std::string& text, char* buffer, size_t buffer_size, size_t* length, const char* function) {
  if (length != nullptr) *length = text.size();
  if (buffer == nullptr || buffer_size <= text.size()) {
    fail(EMBER_ERROR_BUFFER_TOO_SMALL, std::string(function) + ": the text needs " + std::to_string(text.size() + 1) +
                                           " bytes with its NUL; the buffer has " +
                                           std::to_string(buffer == nullptr ? 0 : buffer_size));
  }
  std::memcpy(buffer, text.c_str(), text.size() + 1);
}

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);  // UTF-8 passes through: checkpoint strings are valid UTF-8
        }
    }
  }
  out += '"';
}

void json_value(std::string& out, const ember::Value& v) {
  using Kind = ember::Value::Kind;
  switch (v.kind()) {
    case Kind::Null: out += "null"; return;
    case Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Kind::Int: out += std::to_string(v.as_int()); return;
    case Kind::Float: {
      const double d = v.as_double();
      if (std::isnan(d)) {
        out += "NaN";
      } else if (std::isinf(d)) {
        out += d > 0 ? "Infinity" : "-Infinity";
      } else {
        // The shortest of %.15g/%.16g/%.17g that reads back as d, with a ".0" for integral
        // values so that the number stays a float for a JSON reader such as Python's.
        char buf[40];
        for (int precision = 15; precision <= 17; ++precision) {
          std::snprintf(buf, sizeof buf, "%.*g", precision, d);
          if (std::strtod(buf, nullptr) == d) break;
        }
        out += buf;
        if (std::strpbrk(buf, ".eE") == nullptr) out += ".0";
      }
      return;
    }
    case Kind::String: json_string(out, v.as_string()); return;
    case Kind::Bytes: {
      static const char* hex = "0123456789abcdef";
      out += "{\"$bytes\": \"";
      for (uint8_t b : v.as_bytes().data) {
        out += hex[b >> 4];
        out += hex[b & 15];
      }
      out += "\"}";
      return;
    }
    case Kind::List: {
      out += '[';
      bool first = true;
      for (const ember::Value& e : v.as_list()) {
        if (!first) out += ", ";
        first = false;
        json_value(out, e);
      }
      out += ']';
      return;
    }
    case Kind::Map: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.as_map()) {
        if (!first) out += ", ";
        first = false;
        json_string(out, k);
        out += ": ";
        json_value(out, e);
      }
      out += '}';
      return;
    }
    case Kind::Tensor: {
      const ember::Tensor& t = v.as_tensor();
      out += "{\"$tensor\": ";
      json_string(out, std::string(ember::dtype_name(t.dtype())) + t.shape().str());
      out += '}';
      return;
    }
  }
}

}  // namespace

extern "C" {

const char* ember_last_error(void) { return g_last_error.c_str(); }

ember_status ember_version(int* major, int* minor, int* patch) {
  return guarded([&] {
    if (major != nullptr) *major = EMBER_VERSION_MAJOR;
    if (minor != nullptr) *minor = EMBER_VERSION_MINOR;
    if (patch != nullptr) *patch = EMBER_VERSION_PATCH;
  });
}

ember_status ember_set_num_threads(int threads) {
  return guarded([&] {
    if (threads < 1) {
      fail(EMBER_ERROR_INVALID_ARGUMENT,
           "ember_set_num_threads: threads must be at least 1, got " + std::to_string(threads));
    }
    ember::set_num_threads(threads);
  });
}

ember_status ember_checkpoint_open(const char* path, ember_checkpoint** out) {
  if (out != nullptr) *out = nullptr;
  return guarded([&] {
    require(path, "ember_checkpoint_open", "path");
    require(out, "ember_checkpoint_open", "out");
    auto c = std::unique_ptr<ember_checkpoint>(new ember_checkpoint{ember::checkpoint::Reader(path), {}});
    for (const ember::checkpoint::TensorInfo& t : c->reader.tensors()) c->names.push_back(t.section + "/" + t.name);
    *out = c.release();
  });
}

ember_status ember_checkpoint_close(ember_checkpoint* checkpoint) {
  return guarded([&] { delete checkpoint; });
}

ember_status ember_checkpoint_tensor_count(const ember_checkpoint* checkpoint, size_t* count) {
  return guarded([&] {
    require(checkpoint, "ember_checkpoint_tensor_count", "checkpoint");
    require(count, "ember_checkpoint_tensor_count", "count");
    *count = checkpoint->names.size();
  });
}

ember_status ember_checkpoint_tensor_info(const ember_checkpoint* checkpoint, size_t index, ember_tensor_info* info) {
  return guarded([&] {
    require(checkpoint, "ember_checkpoint_tensor_info", "checkpoint");
    require(info, "ember_checkpoint_tensor_info", "info");
    if (index >= checkpoint->names.size()) {
      fail(EMBER_ERROR_NOT_FOUND, "ember_checkpoint_tensor_info: index " + std::to_string(index) + " is out of range: " +
                                      checkpoint->reader.path() + " holds " + std::to_string(checkpoint->names.size()) +
                                      " tensors");
    }
    const ember::checkpoint::TensorInfo& t = checkpoint->reader.tensors()[index];
    info->name = checkpoint->names[index].c_str();
    info->dtype = static_cast<ember_dtype>(t.dtype);
    // The reader's index (and so t.shape's inline sizes) lives as long as the handle.
    info->ndim = static_cast<int32_t>(t.shape.size());
    info->shape = t.shape.begin();
    info->nbytes = static_cast<size_t>(t.nbytes);
  });
}

ember_status ember_checkpoint_read_tensor(const ember_checkpoint* checkpoint, const char* name, void* buffer,
                                          size_t buffer_bytes) {
  return guarded([&] {
    require(checkpoint, "ember_checkpoint_read_tensor", "checkpoint");
    require(name, "ember_checkpoint_read_tensor", "name");
    size_t i = 0;
    while (i < checkpoint->names.size() && checkpoint->names[i] != name) ++i;
    if (i == checkpoint->names.size()) {
      fail(EMBER_ERROR_NOT_FOUND, std::string("ember_checkpoint_read_tensor: ") + checkpoint->reader.path() +
                                      " has no tensor '" + name + "' (names are \"section/dotted.name\")");
    }
    const ember::checkpoint::TensorInfo& info = checkpoint->reader.tensors()[i];
    if (buffer == nullptr || buffer_bytes < info.nbytes) {
      fail(EMBER_ERROR_BUFFER_TOO_SMALL, std::string("ember_checkpoint_read_tensor: '") + name + "' needs " +
                                             std::to_string(info.nbytes) + " bytes; the buffer has " +
                                             std::to_string(buffer == nullptr ? 0 : buffer_bytes));
    }
    const ember::Tensor t = checkpoint->reader.load_tensor(info.section, info.name).contiguous();
    if (t.nbytes() > 0) std::memcpy(buffer, t.data_ptr(), t.nbytes());
  });
}

ember_status ember_checkpoint_hparams_json(const ember_checkpoint* checkpoint, char* buffer, size_t buffer_size,
                                           size_t* length) {
  return guarded([&] {
    require(checkpoint, "ember_checkpoint_hparams_json", "checkpoint");
    std::string json;
    const char* section = ember::checkpoint::kHyperParameters;
    if (checkpoint->reader.has_section(section)) {
      json_value(json, checkpoint->reader.section(section));
    } else {
      json = "{}";
    }
    give_text(json, buffer, buffer_size, length, "ember_checkpoint_hparams_json");
  });
}

ember_status ember_model_load(const char* path, const char* device, ember_model** out) {
  if (out != nullptr) *out = nullptr;
  return guarded([&] {
    require(path, "ember_model_load", "path");
    require(out, "ember_model_load", "out");
    ember::Device dev = ember::kCPU;
    if (device != nullptr) {
      try {
        dev = ember::Device(std::string_view(device));
      } catch (const ember::Error& e) {
        fail(EMBER_ERROR_INVALID_ARGUMENT, std::string("ember_model_load: device: ") + e.what());
      }
    }
    auto m = std::make_unique<ember_model>(ember_model{ember::nn::load_module(path), dev});
    if (dev.is_cuda()) m->module->to(dev);
    *out = m.release();
  });
}

ember_status ember_model_free(ember_model* model) {
  return guarded([&] { delete model; });
}

ember_status ember_model_forward(ember_model* model, const float* input, const int64_t* input_shape,
                                 int32_t input_ndim, float* output, size_t output_capacity, int64_t* output_shape,
                                 int32_t* output_ndim) {
  return guarded([&] {
    require(model, "ember_model_forward", "model");
    require(input, "ember_model_forward", "input");
    require(output_shape, "ember_model_forward", "output_shape");
    require(output_ndim, "ember_model_forward", "output_ndim");
    if (input_ndim < 0 || input_ndim > EMBER_MAX_NDIM || (input_ndim > 0 && input_shape == nullptr)) {
      fail(EMBER_ERROR_INVALID_ARGUMENT, "ember_model_forward: input_ndim must be in [0, " +
                                             std::to_string(EMBER_MAX_NDIM) + "] with input_shape given, got " +
                                             std::to_string(input_ndim));
    }
    ember::Shape shape;
    for (int32_t i = 0; i < input_ndim; ++i) {
      if (input_shape[i] < 0) {
        fail(EMBER_ERROR_INVALID_ARGUMENT, "ember_model_forward: input_shape[" + std::to_string(i) +
                                               "] is negative (" + std::to_string(input_shape[i]) + ")");
      }
      shape.push_back(input_shape[i]);
    }
    // The caller's memory is only read: the model sees a copy (on the model's device).
    ember::Tensor x = ember::from_blob(const_cast<float*>(input), shape, ember::DType::f32).to(model->device);
    if (x.data_ptr() == static_cast<const void*>(input)) x = x.clone();
    ember::Tensor y;
    {
      ember::NoGradGuard no_grad;
      try {
        y = model->module->forward(x);
      } catch (const ember::Error& e) {
        fail(EMBER_ERROR_INVALID_ARGUMENT, std::string("ember_model_forward: input of shape ") + shape.str() +
                                               ": " + e.what());
      }
    }
    y = y.to(ember::kCPU).to(ember::DType::f32).contiguous();
    *output_ndim = static_cast<int32_t>(y.shape().size());
    for (int i = 0; i < y.shape().size(); ++i) output_shape[i] = y.shape()[i];
    const size_t n = static_cast<size_t>(y.numel());
    if (output == nullptr || output_capacity < n) {
      fail(EMBER_ERROR_BUFFER_TOO_SMALL, "ember_model_forward: the output " + y.shape().str() + " needs " +
                                             std::to_string(n) + " floats; output holds " +
                                             std::to_string(output == nullptr ? 0 : output_capacity));
    }
    if (n > 0) std::memcpy(output, y.data_ptr(), n * sizeof(float));
  });
}

ember_status ember_model_describe(const ember_model* model, char* buffer, size_t buffer_size, size_t* length) {
  return guarded([&] {
    require(model, "ember_model_describe", "model");
    give_text(model->module->repr(), buffer, buffer_size, length, "ember_model_describe");
  });
}

}  // extern "C"
