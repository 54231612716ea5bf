// Helpers shared by the checkpoint tests (see util.h).
#include "tests/checkpoint/util.h"

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace ember::test {

ScratchDir::ScratchDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/ember-ckpt-test-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw Error("[test] mkdtemp failed");
  path_ = buf.data();
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::vector<std::string> ScratchDir::list() const {
  std::vector<std::string> names;
  for (auto& e : std::filesystem::directory_iterator(path_)) names.push_back(e.path().filename().string());
  return names;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(str_cat("[test] cannot read ", path));
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

int run_command(const std::string& command, std::string* out) {
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return -1;
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  int status = ::pclose(p);
  if (out) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw Error(str_cat("[test] cannot write ", path));
}

std::string open_error(const std::string& dir, const std::vector<uint8_t>& bytes, const checkpoint::ReadOptions& opt) {
  std::string path = dir + "/case.ckpt";
  write_bytes(path, bytes);
  // EMBER_CKPT_DUMP_CORPUS=DIR saves every case (to refresh the fuzzer's seed corpus).
  if (const char* dump = std::getenv("EMBER_CKPT_DUMP_CORPUS"); dump && *dump && bytes.size() <= 65536) {
    static int counter = 0;
    write_bytes(str_cat(dump, "/case-", counter++, ".ckpt"), bytes);
  }
  try {
    checkpoint::Reader r(path, opt);
    r.verify_all();
    for (auto& s : r.sections()) r.section(s.name);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

::testing::AssertionResult fails_with(const std::string& dir, const std::vector<uint8_t>& bytes,
                                      const std::string& expected, const checkpoint::ReadOptions& opt) {
  std::string msg = open_error(dir, bytes, opt);
  if (msg.empty()) return ::testing::AssertionFailure() << "the file was accepted; expected an error with '" << expected << "'";
  if (msg.find(expected) == std::string::npos)
    return ::testing::AssertionFailure() << "error '" << msg << "' does not contain '" << expected << "'";
  if (msg.rfind("[checkpoint] '", 0) != 0)
    return ::testing::AssertionFailure() << "error '" << msg << "' does not start with [checkpoint] and the file name";
  return ::testing::AssertionSuccess();
}

}  // namespace ember::test
