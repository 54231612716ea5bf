// How the Trainer spreads a fit over processes. Without a strategy (the default) a fit runs in this
// process alone. Ember::distributed's dist::ddp() (train/distributed/ddp_strategy.h) trains
// data-parallel over MPI, as Lightning's strategy="ddp"; the core library only calls this
// interface, so it never links MPI.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/tensor.h"

namespace ember {

class LightningModule;

class EMBER_API Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  bool is_global_zero() const { return rank() == 0; }
  // Once the model is on its device, before a checkpoint is restored: every rank takes rank 0's
  // parameters and buffers.
  virtual void setup_model(LightningModule& model) = 0;
  // Before the backward pass that completes a step (the last of accumulate_grad_batches): the
  // strategy may start reducing gradients while backward produces them.
  virtual void before_backward(LightningModule& model) = 0;
  // After that backward pass: the gradients become their mean over ranks.
  virtual void reduce_gradients(LightningModule& model) = 0;
  virtual void barrier() = 0;
  // Rank 0's value, on every rank.
  virtual uint64_t broadcast_u64(uint64_t value) = 0;
  // The mean over ranks (log(..., sync_dist=true)); and whether any rank says true.
  virtual double mean(double value) = 0;
  virtual bool any(bool value) = 0;
  // Every rank's bytes become rank 0's (same size on every rank).
  virtual void broadcast_bytes(std::vector<uint8_t>& bytes) = 0;
  // Ends every rank of the job with a non-zero status after printing `why` (a rank failed: the
  // others would otherwise wait for it forever).
  [[noreturn]] virtual void abort_job(const std::string& why) = 0;
};

}  // namespace ember
