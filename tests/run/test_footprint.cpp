// ember-run's footprint as a deployment binary: the shared libraries it needs (DT_NEEDED entries
// of its ELF dynamic section, read here without readelf) are only the C and C++ runtimes and zlib
// (plus the sanitizer runtimes in a sanitizer build). A CUDA build needs no CUDA library to start
// (the runtime is linked statically, cuBLAS and cuDNN are opened on first use), which is checked on
// ember-run and on libember.so. In an optimised CPU build without sanitizers the stripped size of
// ember-run is at most 3 MB.
#include <elf.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ember/config.h"

namespace fs = std::filesystem;

namespace {

// The DT_NEEDED names of a 64-bit little-endian ELF file, from its SHT_DYNAMIC section and the
// string table that section links to; every offset is checked against the file's size.
std::vector<std::string> needed_libraries(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string f{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  auto fits = [&](uint64_t off, uint64_t n) { return off <= f.size() && n <= f.size() - off; };
  auto at = [&](auto& out, uint64_t off) {
    if (!fits(off, sizeof out)) throw std::runtime_error("ELF structure out of bounds");
    std::memcpy(&out, f.data() + off, sizeof out);
  };
  Elf64_Ehdr eh{};
  at(eh, 0);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != ELFDATA2LSB)
    throw std::runtime_error(path + " is not a 64-bit little-endian ELF file");
  std::vector<Elf64_Shdr> sections(eh.e_shnum);
  for (size_t i = 0; i < sections.size(); ++i) at(sections[i], eh.e_shoff + i * eh.e_shentsize);

  std::vector<std::string> needed;
  for (const Elf64_Shdr& s : sections) {
    if (s.sh_type != SHT_DYNAMIC) continue;
    if (s.sh_link >= sections.size()) throw std::runtime_error("bad sh_link");
    const Elf64_Shdr& strtab = sections[s.sh_link];
    for (uint64_t off = 0; off + sizeof(Elf64_Dyn) <= s.sh_size; off += sizeof(Elf64_Dyn)) {
      Elf64_Dyn d{};
      at(d, s.sh_offset + off);
      if (d.d_tag == DT_NULL) break;
      if (d.d_tag != DT_NEEDED) continue;
      if (d.d_un.d_val >= strtab.sh_size || !fits(strtab.sh_offset + d.d_un.d_val, 1))
        throw std::runtime_error("DT_NEEDED outside the string table");
      const char* name = f.data() + strtab.sh_offset + d.d_un.d_val;
      needed.emplace_back(name, strnlen(name, strtab.sh_size - d.d_un.d_val));
    }
  }
  return needed;
}

}  // namespace

// Whether a DT_NEEDED name is one of CUDA's libraries, none of which an Ember binary may need.
bool is_cuda_library(const std::string& lib) {
  for (const char* prefix : {"libcudart.", "libcublas.", "libcublasLt.", "libcudnn", "libcuda."})
    if (lib.rfind(prefix, 0) == 0) return true;
  return false;
}

TEST(Footprint, NeedsOnlyTheCAndCxxRuntimesAndZlib) {
  const std::vector<std::string> needed = needed_libraries(EMBER_RUN_TOOL);
  EXPECT_FALSE(needed.empty()) << "ember-run should be dynamically linked against libc";
  std::vector<std::string> allowed = {"libc.so.",       "libstdc++.so.", "libm.so.", "libgcc_s.so.",
                                      "libpthread.so.", "ld-linux",      "libz.so."};
  // The static CUDA runtime's own needs (stubs inside libc since glibc 2.34, real before).
  if (EMBER_WITH_CUDA) allowed.insert(allowed.end(), {"libdl.so.", "librt.so."});
  if (EMBER_RUN_SANITIZED) allowed.insert(allowed.end(), {"libasan.so.", "libubsan.so.", "libtsan.so."});
  for (const std::string& lib : needed) {
    bool ok = false;
    for (const std::string& prefix : allowed) ok = ok || lib.rfind(prefix, 0) == 0;
    EXPECT_TRUE(ok) << "ember-run needs " << lib << ", which is not among the C/C++ runtimes and zlib";
    EXPECT_FALSE(is_cuda_library(lib)) << "ember-run needs " << lib << " to start";
  }
  // The one-binary promise: the library is linked in statically.
  for (const std::string& lib : needed) EXPECT_EQ(lib.find("libember"), std::string::npos) << lib;
}

TEST(Footprint, SharedLibraryNeedsNoCudaLibrary) {
#ifdef EMBER_SHARED_LIBRARY
  const std::vector<std::string> needed = needed_libraries(EMBER_SHARED_LIBRARY);
  EXPECT_FALSE(needed.empty()) << EMBER_SHARED_LIBRARY << " should need libc";
  for (const std::string& lib : needed)
    EXPECT_FALSE(is_cuda_library(lib)) << EMBER_SHARED_LIBRARY << " needs " << lib << " to load";
#else
  GTEST_SKIP() << "this build makes no shared library";
#endif
}

TEST(Footprint, StrippedSizeIsAtMost3MB) {
  if (!EMBER_RUN_OPTIMIZED || EMBER_RUN_SANITIZED || EMBER_WITH_CUDA)
    GTEST_SKIP() << "the size limit is for optimised CPU builds without sanitizers";
  if (std::system("command -v strip >/dev/null 2>&1") != 0) GTEST_SKIP() << "strip is not installed";
  const fs::path stripped = fs::temp_directory_path() / ("ember_run_stripped_" + std::to_string(::getpid()));
  const std::string cmd = "strip -o " + stripped.string() + " " + EMBER_RUN_TOOL;
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd;
  const uintmax_t size = fs::file_size(stripped);
  fs::remove(stripped);
  EXPECT_LE(size, 3u * 1000 * 1000) << "stripped ember-run is " << size << " bytes";
}
