// The run-time loader of cuBLAS and cuDNN (kernels/cuda/dynload.h): a library named by
// EMBER_CUBLAS_LIBRARY / EMBER_CUDNN_LIBRARY that cannot be opened is an ember::Error naming that
// path, and the default names load wherever the library is installed. No device is needed. The
// tests call load_cublas() / load_cudnn(), which read the environment each time and cache nothing,
// so they do not depend on what other tests of the process loaded first.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <string>

#include "ember/config.h"
#include "ember/runtime/error.h"

#if EMBER_WITH_CUDA
#include <dlfcn.h>

#include "kernels/cuda/dynload.h"
#include "tests/support/env.h"
#if EMBER_WITH_CUDNN
#include "kernels/cuda/dynload_cudnn.h"
#endif

namespace ember {
namespace {

using test::ScopedEnv;

// The message of the ember::Error that load() throws (empty when it loads).
template <typename Load>
std::string load_error(Load load) {
  try {
    load();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Whether the dynamic loader finds `file` here (the default names resolve only where the library
// is installed on the loader's search path).
bool resolvable(const std::string& file) {
  void* h = dlopen(file.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (h) dlclose(h);
  return h != nullptr;
}

const char* kMissing = "/nonexistent/ember-dynload-test/libmissing.so";

TEST(Dynload, CublasOverrideThatCannotBeOpenedNamesThePath) {
  ScopedEnv env("EMBER_CUBLAS_LIBRARY", kMissing);
  const std::string msg = load_error(cu::load_cublas);
  ASSERT_FALSE(msg.empty()) << "loading cuBLAS from " << kMissing << " succeeded";
  EXPECT_EQ(msg.rfind("[cublas] cannot load cuBLAS", 0), 0u) << msg;
  EXPECT_NE(msg.find(std::string("EMBER_CUBLAS_LIBRARY=") + kMissing), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot open shared object file"), std::string::npos) << msg;  // dlerror()'s text
  EXPECT_NE(msg.find("LD_LIBRARY_PATH"), std::string::npos) << msg;
}

TEST(Dynload, CublasLoadsByItsDefaultName) {
  ScopedEnv env("EMBER_CUBLAS_LIBRARY", nullptr);
  const std::string file = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  if (!resolvable(file)) GTEST_SKIP() << file << " is not on the loader's search path here";
  const std::string msg = load_error(cu::load_cublas);
  EXPECT_EQ(msg, "");
  const cu::Cublas t = cu::load_cublas();
  EXPECT_NE(t.Create, nullptr);
  EXPECT_NE(t.SgemmStridedBatched, nullptr);
}

TEST(Dynload, MissingSymbolNamesTheSymbolAndTheFile) {
  // libz is linked into every Ember program, so it resolves; it has none of cuBLAS's functions.
  const std::string zlib = "libz.so.1";
  ASSERT_TRUE(resolvable(zlib));
  ScopedEnv env("EMBER_CUBLAS_LIBRARY", zlib.c_str());
  const std::string msg = load_error(cu::load_cublas);
  EXPECT_NE(msg.find("[cublas] libz.so.1 has no symbol cublasCreate_v2"), std::string::npos) << msg;
}

// cublas() loads once: after a failure it throws the same error, even once the cause is gone. Run in
// a child process of its own, whose cuBLAS nothing has loaded yet.
TEST(Dynload, AFailedLoadIsKeptForLaterCalls) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("EMBER_CUBLAS_LIBRARY", kMissing, 1);
        const std::string first = load_error(cu::cublas);
        unsetenv("EMBER_CUBLAS_LIBRARY");
        const std::string second = load_error(cu::cublas);
        std::exit(first.find(kMissing) != std::string::npos && second == first ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

#if EMBER_WITH_CUDNN
TEST(Dynload, CudnnOverrideThatCannotBeOpenedNamesThePath) {
  ScopedEnv env("EMBER_CUDNN_LIBRARY", kMissing);
  const std::string msg = load_error(cu::load_cudnn);
  ASSERT_FALSE(msg.empty()) << "loading cuDNN from " << kMissing << " succeeded";
  EXPECT_EQ(msg.rfind("[cudnn] cannot load cuDNN", 0), 0u) << msg;
  EXPECT_NE(msg.find(std::string("EMBER_CUDNN_LIBRARY=") + kMissing), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot open shared object file"), std::string::npos) << msg;
}

TEST(Dynload, CudnnLoadsByItsDefaultName) {
  ScopedEnv env("EMBER_CUDNN_LIBRARY", nullptr);
  const std::string file = "libcudnn.so." + std::to_string(CUDNN_MAJOR);
  if (!resolvable(file)) GTEST_SKIP() << file << " is not on the loader's search path here";
  const std::string msg = load_error(cu::load_cudnn);
  EXPECT_EQ(msg, "");
  const cu::Cudnn t = cu::load_cudnn();
  EXPECT_NE(t.ConvolutionForward, nullptr);
  EXPECT_NE(t.GetErrorString, nullptr);
}
#endif

}  // namespace
}  // namespace ember
#endif
