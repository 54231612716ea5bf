// Helper for the crash-safety test: saves checkpoint versions start, start+1, ... to one path in
// an endless loop until it is killed. Version v holds a tensor filled with v, an i64 scalar v and
// global_step v, so a reader can tell a complete file of any version from a torn one. With a fourth
// argument "async" the saves go through checkpoint::AsyncSaver (its background thread writes while
// the loop fills the next version).
#include <cstdlib>
#include <iostream>
#include <string>

#include "ember/checkpoint/async_saver.h"
#include "ember/checkpoint/checkpoint.h"

int main(int argc, char** argv) {
  if (argc != 4 && !(argc == 5 && std::string(argv[4]) == "async")) {
    std::cerr << "usage: ember_ckpt_crash_writer PATH START_VERSION NUMEL [async]\n";
    return 2;
  }
  std::string path = argv[1];
  long long start = std::atoll(argv[2]);
  long long numel = std::atoll(argv[3]);
  using namespace ember;
  Tensor w = empty({numel}, DType::f32);
  Tensor v = empty({}, DType::i64);
  const bool async = argc == 5;
  checkpoint::AsyncSaver saver;
  try {
    for (long long version = start;; ++version) {
      float* p = w.data_ptr<float>();
      for (long long i = 0; i < numel; ++i) p[i] = static_cast<float>(version);
      *v.data_ptr<int64_t>() = version;
      ValueMap sd{{"w", Value(w)}, {"version", Value(v)}};
      ValueMap root{{checkpoint::kStateDict, Value(std::move(sd))}, {checkpoint::kGlobalStep, Value(int64_t{version})}};
      if (async) saver.save(path, Value(std::move(root)));
      else checkpoint::save(path, Value(std::move(root)));
    }
  } catch (const Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
