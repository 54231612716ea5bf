// ember-run's commands (run.h): loading the model with hints for --module, preparing the input
// (dtype, --scale), the batched forward with the expected input shape in its error, and the
// annotated module tree of --describe.
#include "tools/run/run.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <ostream>
#include <typeinfo>

#include "ember/checkpoint/checkpoint.h"
#include "ember/config.h"
#include "ember/nn/nn.h"
#include "ember/runtime/autograd.h"
#include "ember/train/module_io.h"
#include "ember/checkpoint/npy.h"

namespace ember::run_tool {

namespace {

std::string join_path(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }

std::string where(const std::string& path) { return path.empty() ? "the root" : "'" + path + "'"; }

// --- --module hints ------------------------------------------------------------------------------

// Whether this program can build a module_tree node: its options were recorded and its type is
// registered here.
bool buildable(const Value& node) {
  return node.is_map() && node.contains("type") && node.at("type").is_string() && node.contains("options") &&
         !node.at("options").is_null() && nn::is_registered_module_type(node.at("type").as_string());
}

// The dotted paths of node's highest buildable descendants, in registration order.
void buildable_descendants(const Value& node, const std::string& path, std::vector<std::string>& out) {
  if (!node.is_map() || !node.contains("children") || !node.at("children").is_list() || !node.contains("modules") ||
      !node.at("modules").is_map())
    return;
  const Value& modules = node.at("modules");
  for (const Value& name : node.at("children").as_list()) {
    if (!name.is_string() || !modules.contains(name.as_string())) continue;
    const Value& child = modules.at(name.as_string());
    const std::string child_path = join_path(path, name.as_string());
    if (buildable(child))
      out.push_back(child_path);
    else
      buildable_descendants(child, child_path, out);
  }
}

// When the stored module at `submodule` cannot be built in this program because of its type, a
// message saying so and listing what --module could name instead; "" otherwise (the load error
// then says enough).
std::string module_hint(const std::string& path, const std::string& submodule) {
  try {
    checkpoint::Reader reader(path);
    if (!reader.has_section(checkpoint::kModuleTree)) return "";
    const Value section = reader.section(checkpoint::kModuleTree);
    const Value& node = nn::subtree(section.at("root"), submodule);
    if (buildable(node) || !node.is_map() || !node.contains("type") || !node.at("type").is_string() ||
        !node.contains("options"))
      return "";
    const std::string why = node.at("options").is_null()
                                ? "its type was not registered when the file was written"
                                : "its type is not one of the module types ember-run knows (Ember's built-in ones)";
    std::vector<std::string> names;
    buildable_descendants(node, submodule, names);
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    return str_cat("'", path, "': the module at ", where(submodule), " (", node.at("type").as_string(),
                   ") cannot be rebuilt here: ", why,
                   names.empty() ? std::string("; none of its submodules can be either")
                                 : "; pass --module with one of its registered submodules: " + list);
  } catch (const Error&) {
    return "";
  }
}

// --- input ---------------------------------------------------------------------------------------

// The dtype the model computes in: that of its first floating parameter (or buffer); f32 without any.
DType model_dtype(const nn::Module& m) {
  for (const auto& [name, t] : m.named_parameters())
    if (is_floating(t.dtype())) return t.dtype();
  for (const auto& [name, t] : m.named_buffers())
    if (is_floating(t.dtype())) return t.dtype();
  return DType::f32;
}

template <typename Dst, typename Src>
void convert(const Tensor& src, Tensor& dst, const std::optional<Scale>& scale) {
  const Src* s = src.data_ptr<Src>();
  Dst* d = dst.data_ptr<Dst>();
  const Dst k = static_cast<Dst>(scale ? scale->value : 1.0);
  const int64_t n = src.numel();
  for (int64_t i = 0; i < n; ++i) {
    Dst v = static_cast<Dst>(s[i]);
    if (scale) v = scale->divide ? v / k : v * k;
    d[i] = v;
  }
}

template <typename Dst>
void convert_from(const Tensor& src, Tensor& dst, const std::optional<Scale>& scale) {
  switch (src.dtype()) {
    case DType::f32: return convert<Dst, float>(src, dst, scale);
    case DType::f64: return convert<Dst, double>(src, dst, scale);
    default: return convert<Dst, uint8_t>(src, dst, scale);
  }
}

// The array read from path in the model's dtype, scaled. u8 data is only accepted with a scale.
Tensor prepare_input(const Tensor& raw, DType dtype, const std::optional<Scale>& scale, const std::string& path) {
  if (raw.dtype() == DType::u8 && !scale)
    throw UsageError(str_cat("'", path, "' holds u8 data ('|u1'); pass --scale 1/255 to read it as pixels / 255 "
                             "(or save it as float32)"));
  if (raw.dim() == 0)
    throw UsageError(str_cat("'", path, "' holds a 0-d array (shape ()); ember-run needs a first axis of samples"));
  if (raw.dtype() == dtype && !scale) return raw;
  if (dtype != DType::f32 && dtype != DType::f64)
    throw UsageError(str_cat("the model computes in ", dtype_name(dtype), "; ember-run feeds f32 or f64 models"));
  Tensor x = empty(raw.shape(), dtype);
  if (dtype == DType::f32)
    convert_from<float>(raw, x, scale);
  else
    convert_from<double>(raw, x, scale);
  return x;
}

// What the model's first shape-fixing layer takes, as " -- the model expects (N, 784) inputs (...)";
// "" when none is found. The layers are taken in registration order, which is the order they run
// in for Sequential models and most others.
std::string expected_input(const nn::Module& model) {
  bool flattened = false;
  for (const auto& [name, m] : model.named_modules()) {
    const std::string layer = str_cat(name.empty() ? "the model is " : "its first layer, '" + name + "', is ",
                                      m->type_name(), "(", m->extra_repr(), ")");
    if (dynamic_cast<const nn::Flatten*>(m.get())) {
      flattened = true;
    } else if (auto* l = dynamic_cast<const nn::Linear*>(m.get())) {
      if (flattened)
        return str_cat(" -- the model expects inputs of ", l->in_features, " values per sample, e.g. (N, ",
                       l->in_features, ") (", layer, " after a Flatten)");
      return str_cat(" -- the model expects (N, ", l->in_features, ") inputs (", layer, ")");
    } else if (auto* c = dynamic_cast<const nn::Conv2d*>(m.get())) {
      return str_cat(" -- the model expects (N, ", c->in_channels, ", H, W) inputs (", layer, ")");
    } else if (auto* t = dynamic_cast<const nn::ConvTranspose2d*>(m.get())) {
      return str_cat(" -- the model expects (N, ", t->in_channels, ", H, W) inputs (", layer, ")");
    }
  }
  return "";
}

}  // namespace

Scale parse_scale(const std::string& text) {
  Scale s;
  std::string number = text;
  if (text.rfind("1/", 0) == 0) {
    s.divide = true;
    number = text.substr(2);
  }
  char* end = nullptr;
  s.value = number.empty() ? 0.0 : std::strtod(number.c_str(), &end);
  if (number.empty() || end != number.c_str() + number.size() || !std::isfinite(s.value) || s.value <= 0)
    throw UsageError(str_cat("--scale '", text, "': expected a positive number or 1/K (e.g. 1/255)"));
  return s;
}

std::vector<int64_t> parse_shape(const std::string& text) {
  std::string t;
  for (char c : text)
    if (c != ' ' && c != '(' && c != ')') t += c;
  auto bad = [&] {
    throw UsageError(str_cat("--input-shape '", text, "': expected the per-sample shape as comma-separated sizes, "
                             "e.g. 1,28,28"));
  };
  std::vector<int64_t> dims;
  size_t pos = 0;
  while (pos < t.size()) {
    size_t comma = std::min(t.find(',', pos), t.size());
    const std::string item = t.substr(pos, comma - pos);
    pos = comma + 1;
    if (item.empty() || item.size() > 12 || item.find_first_not_of("0123456789") != std::string::npos) bad();
    dims.push_back(std::stoll(item));
  }
  if (dims.size() + 1 > static_cast<size_t>(kMaxRank))
    throw UsageError(str_cat("--input-shape '", text, "': rank ", dims.size(), " plus the batch axis exceeds ",
                             "Ember's maximum rank ", kMaxRank));
  return dims;
}

Device parse_device(const std::string& text) {
  Device d;
  try {
    d = Device(std::string_view(text));
  } catch (const Error& e) {
    throw UsageError(str_cat("--device '", text, "': ", e.what()));
  }
  if (d.is_cuda()) {
    if (!EMBER_WITH_CUDA)
      throw UsageError(str_cat("--device ", text, ": this ember-run was built without CUDA (CPU only)"));
    const int n = cuda_device_count();
    if (d.index >= n)
      throw UsageError(str_cat("--device ", text, ": no such CUDA device (", n, " visible",
                               n == 0 ? ": " + cuda_unavailable_reason() : std::string(), ")"));
  }
  return d;
}

nn::ModulePtr load_model(const std::string& path, const std::string& submodule) {
  try {
    return nn::load_module(path, submodule);
  } catch (const Error& e) {
    const std::string hint = module_hint(path, submodule);
    throw UsageError(hint.empty() ? std::string(e.what()) : hint);
  }
}

int64_t run(const RunOptions& o, std::ostream& log) {
  if (o.batch_size <= 0) throw UsageError(str_cat("--batch-size ", o.batch_size, ": must be positive"));
  nn::ModulePtr model = load_model(o.model, o.module);
  const DType dtype = model_dtype(*model);
  Tensor x;
  try {
    x = prepare_input(read_npy(o.input), dtype, o.scale, o.input);
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  model->to(o.device);

  // One batch after another; the first sets the output's per-sample shape, later ones must match.
  const int64_t n = x.size(0);
  const DType out_dtype = dtype == DType::f64 ? DType::f64 : DType::f32;
  Tensor out;
  int64_t batches = 0;
  NoGradGuard no_grad;
  for (int64_t start = 0; start < n || batches == 0; start += o.batch_size) {
    const int64_t len = std::min(o.batch_size, n - start);
    const Tensor xb = x.narrow(0, start, len).to(o.device);
    Tensor yb;
    try {
      yb = model->forward(xb);
    } catch (const Error& e) {
      if (batches > 0) throw;
      Shape sample = x.shape();
      sample.erase(0);
      throw UsageError(str_cat("'", o.input, "': the model rejects inputs of shape ", xb.shape().str(),
                               " (per sample ", sample.str(), "): ", e.what(), expected_input(*model)));
    }
    if (yb.dim() == 0 || yb.size(0) != len)
      EMBER_THROW("the model's output for a batch of shape ", xb.shape().str(), " has shape ", yb.shape().str(),
                  ", which does not keep the batch axis, so batches cannot be concatenated");
    if (!out.defined()) {
      Shape shape = yb.shape();
      shape[0] = n;
      out = empty(shape, out_dtype);
    } else {
      Shape a = yb.shape(), b = out.shape();
      a.erase(0);
      b.erase(0);
      if (a != b)
        EMBER_THROW("the model's output for the batch at sample ", start, " has shape ", yb.shape().str(),
                    ", but the first batch's per-sample shape was ", b.str());
    }
    out.narrow(0, start, len).copy_(yb.to(kCPU));
    ++batches;
    if (n == 0) break;
  }
  write_npy(o.output, out);
  log << "wrote " << o.output << ": " << out.shape().str() << " " << dtype_name(out_dtype) << " (" << n
      << " samples in " << batches << (batches == 1 ? " batch" : " batches") << ")\n";
  return batches;
}

namespace {

// --- describe ------------------------------------------------------------------------------------

// Runs x through m, recording the output shape of m by dotted path, and of each child of a
// Sequential (child by child, recursively).
Tensor trace(nn::Module& m, const std::string& path, const Tensor& x, std::map<std::string, Shape>& shapes) {
  Tensor y = x;
  if (typeid(m) == typeid(nn::Sequential)) {
    for (const auto& [name, child] : m.named_children()) y = trace(*child, join_path(path, name), y, shapes);
  } else {
    try {
      y = m.forward(x);
    } catch (const Error& e) {
      throw UsageError(str_cat("--input-shape: the module at ", where(path), " (", m.type_name(),
                               ") rejects its input of shape ", x.shape().str(), ": ", e.what()));
    }
  }
  shapes[path] = y.shape();
  return y;
}

struct Line {
  std::string text;
  const nn::Module* module = nullptr;  // the module whose first line this is
  std::string path;
};

// Module::repr()'s layout, one entry per line, so that notes can be added to each module's first line.
void tree_lines(const nn::Module& m, const std::string& path, const std::string& label, size_t indent,
                std::vector<Line>& lines) {
  std::vector<std::string> extra;
  std::string e = m.extra_repr();
  for (size_t pos = 0; !e.empty() && pos <= e.size();) {
    size_t nl = std::min(e.find('\n', pos), e.size());
    extra.push_back(e.substr(pos, nl - pos));
    pos = nl + 1;
  }
  const nn::NamedModules children = m.named_children();
  const std::string pad(indent, ' ');
  const std::string head = pad + label + m.type_name() + "(";
  if (children.empty() && extra.size() <= 1) {
    lines.push_back({head + (extra.empty() ? "" : extra[0]) + ")", &m, path});
    return;
  }
  lines.push_back({head, &m, path});
  for (const auto& l : extra) lines.push_back({pad + "  " + l});
  for (const auto& [name, child] : children)
    tree_lines(*child, join_path(path, name), "(" + name + "): ", indent + 2, lines);
  lines.push_back({pad + ")"});
}

}  // namespace

void describe(const DescribeOptions& o, std::ostream& out) {
  nn::ModulePtr model = load_model(o.model, o.module);
  const DType dtype = model_dtype(*model);
  model->to(o.device);

  std::map<std::string, Shape> shapes;
  Shape input;
  if (o.input_shape) {
    input = Shape(o.input_shape->begin(), o.input_shape->end());
    input.insert(0, 1);
    NoGradGuard no_grad;
    trace(*model, "", zeros(input, TensorOptions(dtype).with_device(o.device)), shapes);
  }

  std::vector<Line> lines;
  tree_lines(*model, "", "", 0, lines);
  size_t width = 0, count_width = 0;
  for (const Line& l : lines) {
    width = std::max(width, std::min<size_t>(l.text.size(), 100));
    if (l.module) count_width = std::max(count_width, std::to_string(l.module->num_parameters()).size());
  }
  for (const Line& l : lines) {
    out << l.text;
    if (l.module) {
      const std::string count = std::to_string(l.module->num_parameters());
      out << std::string(width > l.text.size() ? width - l.text.size() : 0, ' ') << "  "
          << std::string(count_width - count.size(), ' ') << count << " params";
      auto it = shapes.find(l.path);
      if (it != shapes.end()) out << "  -> " << it->second.str();
    }
    out << "\n";
  }
  out << "total: " << model->num_parameters() << " parameters (" << model->num_parameters(true) << " trainable), "
      << dtype_name(dtype) << "\n";
  if (o.input_shape) out << "output: " << shapes.at("").str() << " for an input of shape " << input.str() << "\n";
}

}  // namespace ember::run_tool
