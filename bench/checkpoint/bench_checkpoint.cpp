// Checkpoint benchmark: save and load a 100M-parameter training state (model + Adam moments, f32)
// with Ember's checkpoint format, against a raw sequential write + fsync of the same bytes and,
// when the optional LibTorch companion was built, against torch::save / torch::load. Prints one
// table and the targets it was written against. Not part of the test suite (it writes ~4 GB).
//
//   ember_bench_checkpoint [--scale S] [--reps N] [--dir DIR] [--cold] [--zlib]
//     --scale  model size factor (1.0 = 99.9M parameters)      --reps  repetitions (median)
//     --dir    scratch directory (default $TMPDIR or /tmp)       --cold  drop the files from the
//              page cache before each load (posix_fadvise DONTNEED on the fsync'd file)
//     --zlib   also time a zlib-compressed save (slow: deflate runs at tens of MB/s)
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bench/checkpoint/shapes.h"
#include "ember/checkpoint/async_saver.h"
#include "ember/checkpoint/checkpoint.h"

using namespace ember;
namespace ck = ember::checkpoint;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median_time(int reps, const std::function<void()>& before, const std::function<void()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    before();
    double t0 = now_s();
    fn();
    t.push_back(now_s() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

uint64_t file_bytes(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return 0;
  std::fseek(f, 0, SEEK_END);
  uint64_t n = static_cast<uint64_t>(std::ftell(f));
  std::fclose(f);
  return n;
}

void drop_cache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

Tensor random_tensor(const std::vector<int64_t>& shape, uint64_t seed) {
  Tensor t = empty(Shape(shape), DType::f32);
  float* p = t.data_ptr<float>();
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < t.numel(); ++i) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    p[i] = static_cast<float>(static_cast<int32_t>(s >> 32)) * 4.6566e-10f;
  }
  return t;
}

struct Row {
  std::string what;
  double seconds;
  uint64_t bytes;      // bytes moved (for GB/s)
  uint64_t file_size;  // 0 when not applicable
};

// Runs the LibTorch companion and returns its "key value" lines.
std::map<std::string, double> run_torch(const std::string& dir, double scale, int reps, bool cold) {
  std::map<std::string, double> r;
#ifdef EMBER_BENCH_TORCH_HELPER
  if (::access(EMBER_BENCH_TORCH_HELPER, X_OK) != 0) return r;
  std::string cmd = std::string(EMBER_BENCH_TORCH_HELPER) + " " + dir + " " + std::to_string(scale) + " " +
                    std::to_string(reps) + (cold ? " cold" : " warm");
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char key[128];
  double v;
  while (std::fscanf(p, "%127s %lf", key, &v) == 2) r[key] = v;
  ::pclose(p);
#else
  (void)dir, (void)scale, (void)reps, (void)cold;
#endif
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  double scale = 1.0;
  int reps = 3;
  bool cold = false, with_zlib = false;
  const char* tmp = std::getenv("TMPDIR");
  std::string base = tmp && *tmp ? tmp : "/tmp";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--scale" && i + 1 < argc) scale = std::atof(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--dir" && i + 1 < argc) base = argv[++i];
    else if (a == "--cold") cold = true;
    else if (a == "--zlib") with_zlib = true;
    else {
      std::fprintf(stderr, "usage: %s [--scale S] [--reps N] [--dir DIR] [--cold] [--zlib]\n", argv[0]);
      return 2;
    }
  }
  std::string dir = base + "/ember-bench-ckpt-" + std::to_string(::getpid());
  if (::mkdir(dir.c_str(), 0755) != 0) {
    std::perror("mkdir");
    return 1;
  }

  // The state: parameters and the two Adam moments (same shapes), keyed by parameter name.
  auto params = ember_bench::model_params(scale);
  ValueMap sd, opt_state;
  ValueList names;
  std::vector<Tensor> all;
  uint64_t nparams = 0;
  uint64_t seed = 1;
  for (auto& p : params) {
    Tensor w = random_tensor(p.shape, seed++), m = random_tensor(p.shape, seed++), v = random_tensor(p.shape, seed++);
    sd[p.name] = Value(w);
    opt_state[p.name] = Value(ValueMap{{"step", Value(1000)}, {"exp_avg", Value(m)}, {"exp_avg_sq", Value(v)}});
    names.push_back(Value(p.name));
    all.insert(all.end(), {w, m, v});
    nparams += static_cast<uint64_t>(p.numel());
  }
  uint64_t weight_bytes = nparams * 4, total_bytes = 3 * weight_bytes;
  ValueMap group{{"lr", Value(3e-4)}, {"betas", Value(ValueList{Value(0.9), Value(0.999)})}, {"eps", Value(1e-8)},
                 {"weight_decay", Value(0.0)}, {"params", Value(std::move(names))}};
  ValueMap root{{ck::kStateDict, Value(sd)},
                {ck::kOptimizerStates, Value(ValueList{Value(ValueMap{{"state", Value(std::move(opt_state))},
                                                                      {"param_groups", Value(ValueList{Value(group)})}})})},
                {ck::kEpoch, Value(3)},
                {ck::kGlobalStep, Value(1000)},
                {ck::kHyperParameters, Value(ValueMap{{"hidden", Value(1024)}, {"lr", Value(3e-4)}})}};
  Value state(std::move(root));

  std::string raw = dir + "/raw.bin", ckpt = dir + "/state.ckpt";
  auto nothing = [] {};
  std::vector<Row> rows;

  // --- save (raw and Ember interleaved, so that disk and CPU noise hits both alike) -------------
  // Every timed write makes a new file, as the trainer's checkpoints do (their names carry the
  // step): the previous rep's file is deleted before the clock starts, and the time the file
  // system then spends freeing its blocks is left to settle, so that neither side pays for it.
  // Replacing an existing file (last.ckpt) is timed on its own row.
  auto raw_write = [&] {
    int fd = ::open(raw.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    for (auto& t : all) {
      const char* p = static_cast<const char*>(t.data_ptr());
      size_t n = t.nbytes();
      while (n > 0) {
        ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t{1} << 30));
        if (w <= 0) std::abort();
        p += w;
        n -= static_cast<size_t>(w);
      }
    }
    ::fsync(fd);
    ::close(fd);
  };
  auto fresh = [&](const std::string& path) {
    return [&path] {
      ::unlink(path.c_str());
      ::sync();
      ::usleep(200000);
    };
  };
  auto settle = [] {
    ::sync();
    ::usleep(200000);
  };
  ck::AsyncSaver saver;
  std::string ckpt_async = dir + "/state_async.ckpt";
  std::vector<double> raw_t, ember_t, replace_t, async_t, async_write_t;
  for (int i = 0; i < reps; ++i) {
    raw_t.push_back(median_time(1, fresh(raw), raw_write));
    ember_t.push_back(median_time(1, fresh(ckpt), [&] { ck::save(ckpt, state); }));
    replace_t.push_back(median_time(1, settle, [&] { ck::save(ckpt, state); }));
    // Asynchronous: the time save() blocks the caller (the copy into the saver's buffers; the
    // first save also allocates them, so it is timed but left out of the median when reps > 1).
    fresh(ckpt_async)();
    async_t.push_back(median_time(1, nothing, [&] { saver.save(ckpt_async, state); }));
    saver.wait();
    async_write_t.push_back(saver.stats().last_write_s);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  double raw_save = median(raw_t), ember_save = median(ember_t);
  rows.push_back({"save  raw sequential write + fsync (new file)", raw_save, total_bytes, total_bytes});
  rows.push_back({"save  ember checkpoint::save (new file; CRC, fsync, rename)", ember_save, total_bytes, file_bytes(ckpt)});
  rows.push_back({"save  ember checkpoint::save replacing the previous file", median(replace_t), total_bytes, 0});
  if (reps > 1) async_t.erase(async_t.begin());
  double async_block = median(async_t);
  rows.push_back({"save  ember AsyncSaver::save, caller blocked (full copy)", async_block, total_bytes, 0});
  rows.push_back({"save  ember AsyncSaver background write", median(async_write_t), total_bytes, file_bytes(ckpt_async)});
  ::unlink(ckpt_async.c_str());
  if (with_zlib) {
    std::string ckpt_z = dir + "/state_zlib.ckpt";
    double t = median_time(1, nothing, [&] { ck::save(ckpt_z, state, {.compression = ck::Compression::zlib, .zlib_level = 1}); });
    rows.push_back({"save  ember, zlib level 1 (random data)", t, total_bytes, file_bytes(ckpt_z)});
    ::unlink(ckpt_z.c_str());
  }

  // --- load ------------------------------------------------------------------------------------
  auto before_raw = [&] { if (cold) drop_cache(raw); };
  auto before_ckpt = [&] { if (cold) drop_cache(ckpt); };
  double raw_load = median_time(reps, before_raw, [&] {
    int fd = ::open(raw.c_str(), O_RDONLY | O_CLOEXEC);
    uint64_t off = 0;
    for (auto& t : all) {
      Tensor d = empty(t.shape(), t.dtype());
      char* p = static_cast<char*>(d.data_ptr());
      size_t n = d.nbytes();
      while (n > 0) {
        ssize_t r = ::pread(fd, p, std::min<size_t>(n, size_t{1} << 30), static_cast<off_t>(off));
        if (r <= 0) std::abort();
        p += r, off += static_cast<uint64_t>(r), n -= static_cast<size_t>(r);
      }
    }
    ::close(fd);
  });
  rows.push_back({"load  raw pread of all tensors", raw_load, total_bytes, 0});
  double w_pread = median_time(reps, before_ckpt, [&] { Value v = ck::load(ckpt, {.weights_only = true}); });
  rows.push_back({"load  ember open + weights only (pread, CRC; default)", w_pread, weight_bytes, 0});
  double w_mmap = median_time(reps, before_ckpt, [&] { Value v = ck::load(ckpt, {.mmap = true, .weights_only = true}); });
  rows.push_back({"load  ember open + weights only (mmap, CRC)", w_mmap, weight_bytes, 0});
  double w_nocrc = median_time(reps, before_ckpt, [&] {
    Value v = ck::load(ckpt, {.verify = ck::Verify::none, .mmap = true, .weights_only = true});
    double s = 0;  // touch one float per page so that the data is really read
    for (auto& [k, t] : v.at(ck::kStateDict).as_map()) {
      const float* p = t.as_tensor().data_ptr<float>();
      for (int64_t i = 0; i < t.as_tensor().numel(); i += 1024) s += p[i];
    }
    if (s == 12345.678) std::puts("");
  });
  rows.push_back({"load  ember open + weights only (mmap, no CRC, touched)", w_nocrc, weight_bytes, 0});
  double full_pread = median_time(reps, before_ckpt, [&] { Value v = ck::load(ckpt); });
  rows.push_back({"load  ember full state (pread, CRC; default)", full_pread, total_bytes, 0});
  double full_mmap = median_time(reps, before_ckpt, [&] { Value v = ck::load(ckpt, {.mmap = true}); });
  rows.push_back({"load  ember full state (mmap, CRC)", full_mmap, total_bytes, 0});
  double open_only = median_time(reps, before_ckpt, [&] { ck::Reader r(ckpt); });
  rows.push_back({"open  ember Reader (header + index only)", open_only, 0, 0});

  auto torch = run_torch(dir, scale, reps, cold);
  if (!torch.empty()) {
    rows.push_back({"save  torch::save (full state) + fsync", torch["save_full_s"], total_bytes,
                    static_cast<uint64_t>(torch["size_full"])});
    rows.push_back({"load  torch::load full state", torch["load_full_s"], total_bytes, 0});
    rows.push_back({"load  torch::load weights-only file", torch["load_weights_s"], weight_bytes,
                    static_cast<uint64_t>(torch["size_weights"])});
  }

  std::printf("\nCheckpoint benchmark: %.1fM parameters, model + Adam moments = %.1fM f32 values (%.3f GB of tensor "
              "data), %s page cache, median of %d\n\n",
              nparams / 1e6, 3 * nparams / 1e6, total_bytes / 1e9, cold ? "cold" : "warm", reps);
  std::printf("| %-56s | %9s | %8s | %15s |\n", "operation", "time (s)", "GB/s", "file size (B)");
  std::printf("|%s|%s|%s|%s|\n", std::string(58, '-').c_str(), std::string(11, '-').c_str(),
              std::string(10, '-').c_str(), std::string(17, '-').c_str());
  for (auto& r : rows) {
    std::string size = r.file_size ? std::to_string(r.file_size) : "";
    std::string gbs = r.bytes && r.seconds > 0 ? std::to_string(r.bytes / r.seconds / 1e9).substr(0, 5) : "";
    std::printf("| %-56s | %9.3f | %8s | %15s |\n", r.what.c_str(), r.seconds, gbs.c_str(), size.c_str());
  }
  uint64_t ember_size = file_bytes(ckpt);
  double overhead = static_cast<double>(ember_size) - static_cast<double>(total_bytes);
  double allowed = 0.001 * static_cast<double>(total_bytes) + 65536;
  std::printf("\nTargets:\n");
  std::printf("  save within 1.25x of raw write + fsync:       %.3f / %.3f = %.2fx  %s\n", ember_save, raw_save,
              ember_save / raw_save, ember_save <= 1.25 * raw_save ? "PASS" : "FAIL");
  std::printf("  AsyncSaver::save copying everything before it returns: %.3f s = %.1f%% of the sync save (the\n"
              "  trainer leaves parameters and moments to the background copy: ember_bench_async_train times that)\n",
              async_block, 100 * async_block / ember_save);
  std::printf("  size within 0.1%% + 64 KiB of tensor bytes:    +%.0f bytes (allowed %.0f)  %s\n", overhead, allowed,
              overhead <= allowed ? "PASS" : "FAIL");
  if (!torch.empty()) {
    double tl = torch["load_full_s"], tw = torch["load_weights_s"];
    std::printf("  weights load >= 5x faster than torch::load:   vs the full-state file %.1fx  %s\n", tl / w_pread,
                tl / w_pread >= 5 ? "PASS" : "FAIL");
    std::printf("  (vs a torch file holding only the weights %.1fx; full state: ember %.3f s vs torch::load %.3f s = "
                "%.1fx)\n",
                tw / w_pread, full_pread, tl, tl / full_pread);
  } else {
    std::printf("  torch::load comparison: not run (build the target ember_bench_checkpoint_torch; it needs LibTorch,\n"
                "  e.g. apt-get install libtorch-dev)\n");
  }
  for (const char* f : {"raw.bin", "state.ckpt", "torch_full.pt", "torch_weights.pt"}) ::unlink((dir + "/" + f).c_str());
  ::rmdir(dir.c_str());
  return 0;
}
