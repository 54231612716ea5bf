// The ddp strategy (train/distributed/ddp_strategy.h) over the process group and GradReducer.
#include "ember/train/distributed/ddp_strategy.h"

#include "ember/runtime/ops.h"
#include "ember/train/lightning_module.h"
#include "ember/train/distributed/process_group.h"

namespace ember::dist {
namespace {

class DdpStrategy final : public Strategy {
 public:
  explicit DdpStrategy(GradReducerOptions options) : options_(options) { init(); }
  std::string name() const override { return "ddp"; }
  int rank() const override { return dist::rank(); }
  int world_size() const override { return dist::world_size(); }

  void setup_model(LightningModule& model) override {
    broadcast_module(model);
    reducer_.reset();
    params_.clear();
  }

  void before_backward(LightningModule& model) override { reducer_for(model).prepare_for_backward(); }

  void reduce_gradients(LightningModule& model) override { reducer_for(model).finish(); }

  void barrier() override { dist::barrier(); }

  uint64_t broadcast_u64(uint64_t value) override {
    Tensor t = full({1}, 0.0, TensorOptions(DType::i64));
    t.data_ptr<int64_t>()[0] = static_cast<int64_t>(value);
    broadcast(t, 0);
    return static_cast<uint64_t>(t.data_ptr<int64_t>()[0]);
  }

  double mean(double value) override {
    Tensor t = full({1}, value, TensorOptions(DType::f64));
    all_reduce(t, ReduceOp::Mean);
    return t.data_ptr<double>()[0];
  }

  bool any(bool value) override {
    Tensor t = full({1}, value ? 1.0 : 0.0, TensorOptions(DType::i32));
    all_reduce(t, ReduceOp::Max);
    return t.data_ptr<int32_t>()[0] != 0;
  }

  void broadcast_bytes(std::vector<uint8_t>& bytes) override {
    const uint64_t n = broadcast_u64(bytes.size());
    bytes.resize(n);
    if (n == 0) return;
    Tensor t = from_blob(bytes.data(), {static_cast<int64_t>(n)}, DType::u8);
    broadcast(t, 0);
  }

  [[noreturn]] void abort_job(const std::string& why) override { dist::abort(why, 1); }

 private:
  GradReducer& reducer_for(LightningModule& model) {
    std::vector<Tensor> params = model.parameters();
    bool same = reducer_ && params.size() == params_.size();
    for (size_t i = 0; same && i < params.size(); ++i) same = params[i].impl_ptr() == params_[i].impl_ptr();
    if (!same) {  // first step, or the model's parameters were replaced
      reducer_.reset();
      params_ = params;
      reducer_ = std::make_unique<GradReducer>(params, options_);
    }
    return *reducer_;
  }

  GradReducerOptions options_;
  std::unique_ptr<GradReducer> reducer_;
  std::vector<Tensor> params_;
};

}  // namespace

std::shared_ptr<Strategy> ddp(GradReducerOptions options) { return std::make_shared<DdpStrategy>(options); }

}  // namespace ember::dist
