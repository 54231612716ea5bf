// cuBLAS opened with dlopen on first use, so that no Ember program or library needs it to start
// (the CUDA runtime is linked statically and opens the driver itself). The headers give the types
// and prototypes; the symbols come from dlsym through a table, so nothing of cuBLAS is referenced
// at link time. cuDNN's table, for the files that include <cudnn.h>, is in dynload_cudnn.h.
#pragma once
#include <cublas_v2.h>

#include <string>
#include <vector>

namespace ember::cu {

// The two-level stringify: the name a function macro expands to (cublasCreate is
// cublasCreate_v2), which is the name the library exports.
#define EMBER_DYNLOAD_STR2(x) #x
#define EMBER_DYNLOAD_STR(x) EMBER_DYNLOAD_STR2(x)

// A shared library to open: the file named by environment variable `env` when that is set, else
// each of `files` in turn (through the loader's search path: LD_LIBRARY_PATH, ld.so.conf).
struct LibrarySpec {
  const char* tag;     // the component in error messages: "cublas"
  std::string name;    // the library and the major version this build was compiled against: "cuBLAS 13"
  const char* env;     // "EMBER_CUBLAS_LIBRARY"
  std::vector<std::string> files;
  std::string remedy;  // what to do when it cannot be opened
};

// An opened library: the dlopen handle, and what messages about it say.
struct Library {
  void* handle = nullptr;
  std::string file;
  const char* tag = "";
  std::string name;
  const char* env = "";
};

// Opens spec's library; throws ember::Error naming each file tried, dlerror()'s text and the remedy.
Library open_library(const LibrarySpec& spec);
// The address of `symbol` in lib; throws ember::Error naming the symbol and the file.
void* library_symbol(const Library& lib, const char* symbol);

// The cuBLAS functions Ember calls (kernels/cuda/gemm.cu): X(member, function).
#define EMBER_CUBLAS_FUNCTIONS(X)                   \
  X(Create, cublasCreate)                           \
  X(Destroy, cublasDestroy)                         \
  X(SetStream, cublasSetStream)                     \
  X(SetMathMode, cublasSetMathMode)                 \
  X(SgemmStridedBatched, cublasSgemmStridedBatched) \
  X(DgemmStridedBatched, cublasDgemmStridedBatched)

#define EMBER_DYNLOAD_FIELD(member, function) decltype(&function) member = nullptr;
// cuBLAS's entry points: cublas().Create(&handle) calls cublasCreate.
// cublasGemmStridedBatchedEx (f16/bf16 GEMMs) has a C++ overload taking the compute type as a
// cudaDataType, so its entry is named by the C function's type instead of decltype.
using CublasGemmStridedBatchedEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                                      int, const void*, const void*, cudaDataType, int, long long,
                                                      const void*, cudaDataType, int, long long, const void*, void*,
                                                      cudaDataType, int, long long, int, cublasComputeType_t,
                                                      cublasGemmAlgo_t);
struct Cublas {
  EMBER_CUBLAS_FUNCTIONS(EMBER_DYNLOAD_FIELD)
  CublasGemmStridedBatchedEx GemmStridedBatchedEx = nullptr;
};

// The process's cuBLAS table, loaded on the first call (thread-safe); a load that failed throws
// the same ember::Error on every call. EMBER_CUBLAS_LIBRARY names a file to load instead of
// libcublas.so.<CUBLAS_VER_MAJOR> / libcublas.so.
const Cublas& cublas();
// Loads a fresh table, reading EMBER_CUBLAS_LIBRARY now and caching nothing (for tests).
Cublas load_cublas();

}  // namespace ember::cu
