// Implements the include-rule checker: an include is resolved to a repository path (relative to
// the including file first, then to the root; a leading "ember/" is dropped), then matched against
// the layering rules below. Includes of system and third-party headers are not project paths and pass.
#include "include_rules.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <regex>
#include <string_view>

namespace ember::structure {
namespace fs = std::filesystem;

namespace {

constexpr std::array<std::string_view, 5> kLibraryFolders = {"runtime", "kernels", "nn", "train", "checkpoint"};
constexpr std::array<std::string_view, 8> kSourceExtensions = {".h", ".hpp", ".c", ".cc", ".cpp", ".cu", ".cuh", ".inc"};
// Folders of the repository that hold code; an include that resolves into none of them is not ours.
constexpr std::array<std::string_view, 9> kProjectFolders = {"runtime", "kernels",  "nn",    "train", "checkpoint",
                                                             "examples", "tests", "bench", "tools"};
// The runtime headers kernels may use: tensors and their metadata, errors, memory and threads;
// nothing that records autograd or knows about ops, RNG state or values.
constexpr std::array<std::string_view, 11> kKernelRuntimeHeaders = {
    "runtime/api.h",         "runtime/device.h",    "runtime/dtype.h",    "runtime/shape.h",
    "runtime/error.h",       "runtime/tensor.h",    "runtime/small_alloc.h", "runtime/allocator.h",
    "runtime/parallel.h",    "runtime/half.h",      "runtime/host_device.h"};

bool starts_with_folder(std::string_view path, std::string_view folder) {
  return path.size() > folder.size() && path.substr(0, folder.size()) == folder && path[folder.size()] == '/';
}

std::string_view top_folder(std::string_view path) { return path.substr(0, path.find('/')); }

template <size_t N>
bool contains(const std::array<std::string_view, N>& list, std::string_view s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// The rule `target` breaks when included from `file` (both repository paths), or "" when allowed.
std::string broken_rule(const std::string& file, const std::string& target) {
  const std::string_view from = top_folder(file), to = top_folder(target);
  for (std::string_view outside : {"examples", "tests", "bench", "tools"}) {
    if (to == outside) return std::string(from) + "/ is library code and may not include " + std::string(outside) + "/";
  }
  if (from == "kernels") {
    if (starts_with_folder(file, "kernels/cpu") && starts_with_folder(target, "kernels/cuda"))
      return "kernels/cpu/ and kernels/cuda/ may not include each other (shared code goes to kernels/common/)";
    if (starts_with_folder(file, "kernels/cuda") && starts_with_folder(target, "kernels/cpu"))
      return "kernels/cpu/ and kernels/cuda/ may not include each other (shared code goes to kernels/common/)";
    if (to == "kernels" || contains(kKernelRuntimeHeaders, target)) return "";
    return "kernels/ may include only kernels/ and the runtime's low-level headers (api, device, dtype, shape, "
           "error, tensor, small_alloc, allocator, parallel, half, host_device)";
  }
  if (from == "runtime" && (to == "nn" || to == "train" || to == "checkpoint"))
    return "runtime/ may not include " + std::string(to) + "/ (runtime is the bottom layer)";
  if (from == "nn" && (to == "train" || to == "checkpoint"))
    return "nn/ may not include " + std::string(to) + "/ (nn builds on runtime only)";
  if (from == "checkpoint" && (to == "nn" || to == "train"))
    return "checkpoint/ may not include " + std::string(to) + "/ (the format knows tensors and values, not modules)";
  if ((from == "nn" || from == "train" || from == "checkpoint") && to == "kernels")
    return std::string(from) + "/ may not include kernels/ (kernels are private to the runtime's op front ends)";
  return "";
}

// The repository path an include names, or "" when it is not one of ours.
std::string resolve(const fs::path& root, const std::string& file, std::string written) {
  const fs::path beside = fs::path(file).parent_path() / written;
  if (fs::exists(root / beside)) {
    const std::string p = beside.lexically_normal().generic_string();
    if (contains(kProjectFolders, top_folder(p))) return p;
  }
  if (written.rfind("ember/", 0) == 0) written = written.substr(6);
  return contains(kProjectFolders, top_folder(written)) && written.find('/') != std::string::npos ? written : "";
}

}  // namespace

std::vector<Violation> check_include_rules(const fs::path& root) {
  static const std::regex include_re(R"(^\s*#\s*include\s*[<"]([^">]+)[">])");
  std::vector<std::string> files;
  for (std::string_view folder : kLibraryFolders) {
    const fs::path dir = root / folder;
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      if (entry.is_regular_file() && contains(kSourceExtensions, entry.path().extension().string()))
        files.push_back(fs::relative(entry.path(), root).generic_string());
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<Violation> out;
  for (const std::string& file : files) {
    std::ifstream in(root / file);
    if (!in) {
      out.push_back({file, 0, "", "cannot be read"});
      continue;
    }
    std::string text;
    std::smatch m;
    for (int line = 1; std::getline(in, text); ++line) {
      if (!std::regex_search(text, m, include_re)) continue;
      const std::string target = resolve(root, file, m[1].str());
      if (target.empty()) continue;
      std::string rule = broken_rule(file, target);
      if (!rule.empty()) out.push_back({file, line, m[1].str(), std::move(rule)});
    }
  }
  return out;
}

std::string format(const Violation& v) {
  if (v.line == 0) return v.file + ": " + v.rule;
  return v.file + ":" + std::to_string(v.line) + ": includes \"" + v.include + "\": " + v.rule;
}

}  // namespace ember::structure
