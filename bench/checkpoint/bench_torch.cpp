// LibTorch companion of ember_bench_checkpoint: saves the same 100M-parameter state (model + Adam
// moments) with torch::serialize::OutputArchive (what torch::save writes) and loads it back with
// InputArchive (torch::load), and does the same for a weights-only file. Prints "key value" lines:
// save_full_s, load_full_s, load_weights_s, size_full, size_weights.
//
//   ember_bench_checkpoint_torch DIR SCALE REPS warm|cold
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "bench/checkpoint/shapes.h"

namespace {

double median_time(int reps, const std::function<void()>& before, const std::function<void()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    before();
    auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void fsync_path(const std::string& path, bool drop) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  if (drop) ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

double file_size(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return 0;
  std::fseek(f, 0, SEEK_END);
  double n = static_cast<double>(std::ftell(f));
  std::fclose(f);
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s DIR SCALE REPS warm|cold\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  double scale = std::atof(argv[2]);
  int reps = std::max(1, std::atoi(argv[3]));
  bool cold = std::string(argv[4]) == "cold";
  torch::manual_seed(0);
  std::vector<std::pair<std::string, torch::Tensor>> full, weights;
  for (auto& p : ember_bench::model_params(scale)) {
    torch::Tensor w = torch::randn(p.shape), m = torch::randn(p.shape), v = torch::randn(p.shape);
    weights.push_back({"state_dict." + p.name, w});
    full.push_back({"state_dict." + p.name, w});
    full.push_back({"optimizer.state." + p.name + ".exp_avg", m});
    full.push_back({"optimizer.state." + p.name + ".exp_avg_sq", v});
  }
  auto save = [](const std::vector<std::pair<std::string, torch::Tensor>>& ts, const std::string& path) {
    torch::serialize::OutputArchive a;
    for (auto& [k, t] : ts) a.write(k, t);
    a.save_to(path);
    fsync_path(path, false);
  };
  auto load = [](const std::vector<std::pair<std::string, torch::Tensor>>& ts, const std::string& path) {
    torch::serialize::InputArchive a;
    a.load_from(path);
    for (auto& [k, t] : ts) {
      torch::Tensor x;
      a.read(k, x);
    }
  };
  std::string pf = dir + "/torch_full.pt", pw = dir + "/torch_weights.pt";
  double save_full = median_time(reps, [] {}, [&] { save(full, pf); });
  save(weights, pw);
  double load_full = median_time(reps, [&] { fsync_path(pf, cold); }, [&] { load(full, pf); });
  double load_weights = median_time(reps, [&] { fsync_path(pw, cold); }, [&] { load(weights, pw); });
  std::printf("save_full_s %.6f\nload_full_s %.6f\nload_weights_s %.6f\nsize_full %.0f\nsize_weights %.0f\n",
              save_full, load_full, load_weights, file_size(pf), file_size(pw));
  return 0;
}
