// Opens cuBLAS and cuDNN with dlopen on first use and fills their function tables with dlsym
// (dynload.h, dynload_cudnn.h). Each library is loaded once per process; a failure is kept and
// thrown again, with the same message, by every later call.
#include "kernels/cuda/dynload.h"

#include <dlfcn.h>

#include <cstdlib>

#include "ember/config.h"
#include "ember/runtime/error.h"
#if EMBER_WITH_CUDNN
#include "kernels/cuda/dynload_cudnn.h"
#endif

namespace ember::cu {

Library open_library(const LibrarySpec& spec) {
  std::vector<std::string> files = spec.files;
  const char* over = std::getenv(spec.env);
  if (over && *over) files = {over};
  std::string tried, errors;  // file names and dlerror() texts, for the message
  for (const std::string& file : files) {
    dlerror();  // clear a stale message
    if (void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL)) return {h, file, spec.tag, spec.name, spec.env};
    const char* e = dlerror();
    tried += str_cat(tried.empty() ? "" : ", ", file);
    errors += str_cat(errors.empty() ? "" : "; ", e ? e : "unknown dlopen error");
  }
  EMBER_THROW("[", spec.tag, "] cannot load ", spec.name, " (",
              over && *over ? str_cat(spec.env, "=", over) : str_cat("tried ", tried), "): ", errors, ". ",
              spec.remedy);
}

void* library_symbol(const Library& lib, const char* symbol) {
  dlerror();
  void* p = dlsym(lib.handle, symbol);
  if (!p) {
    const char* e = dlerror();
    EMBER_THROW("[", lib.tag, "] ", lib.file, " has no symbol ", symbol, " (", e ? e : "null address",
                "): this build of Ember needs ", lib.name, "; point ", lib.env, " or LD_LIBRARY_PATH at that version");
  }
  return p;
}

namespace {

// A table loaded once, or the message of the failure to load it.
template <typename Table>
struct Once {
  Table table{};
  std::string error;
};

template <typename Table>
Once<Table> load_once(Table (*load)()) {
  try {
    return {load(), {}};
  } catch (const Error& e) {
    return {{}, e.what()};
  }
}

// Fills one table entry from lib (a function pointer from dlsym's object pointer, as POSIX allows).
#define EMBER_DYNLOAD_RESOLVE(member, function) \
  t.member = reinterpret_cast<decltype(t.member)>(library_symbol(lib, EMBER_DYNLOAD_STR(function)));

}  // namespace

Cublas load_cublas() {
  const Library lib = open_library(
      {"cublas", "cuBLAS " EMBER_DYNLOAD_STR(CUBLAS_VER_MAJOR), "EMBER_CUBLAS_LIBRARY",
       {"libcublas.so." EMBER_DYNLOAD_STR(CUBLAS_VER_MAJOR), "libcublas.so"},
       "Install the CUDA toolkit's cuBLAS " EMBER_DYNLOAD_STR(CUBLAS_VER_MAJOR) ", or set LD_LIBRARY_PATH to the "
       "folder that holds it, or EMBER_CUBLAS_LIBRARY to its path"});
  Cublas t;
  EMBER_CUBLAS_FUNCTIONS(EMBER_DYNLOAD_RESOLVE)
  EMBER_DYNLOAD_RESOLVE(GemmStridedBatchedEx, cublasGemmStridedBatchedEx)
  return t;
}

const Cublas& cublas() {
  static const Once<Cublas> once = load_once(load_cublas);
  if (!once.error.empty()) throw Error(once.error);
  return once.table;
}

#if EMBER_WITH_CUDNN
Cudnn load_cudnn() {
  const Library lib = open_library(
      {"cudnn", "cuDNN " EMBER_DYNLOAD_STR(CUDNN_MAJOR), "EMBER_CUDNN_LIBRARY",
       {"libcudnn.so." EMBER_DYNLOAD_STR(CUDNN_MAJOR), "libcudnn.so"},
       "Install cuDNN " EMBER_DYNLOAD_STR(CUDNN_MAJOR) ", or set LD_LIBRARY_PATH to the folder that holds it, or "
       "EMBER_CUDNN_LIBRARY to its path"});
  Cudnn t;
  EMBER_CUDNN_FUNCTIONS(EMBER_DYNLOAD_RESOLVE)
  return t;
}

const Cudnn& cudnn() {
  static const Once<Cudnn> once = load_once(load_cudnn);
  if (!once.error.empty()) throw Error(once.error);
  return once.table;
}
#endif

}  // namespace ember::cu
