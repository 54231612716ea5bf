// Automatic mixed precision for op front ends, as torch.autocast: inside an AutocastGuard scope
// the matrix ops (matmul, linear, conv2d, conv_transpose2d) cast their floating inputs (f32, or
// the other half type; f64 stays) to the scope's half dtype (bf16 or f16) and multiply with f32
// accumulation, and the ops that need range or precision (sum, mean, softmax, log_softmax, the
// losses, exp/log/pow) cast half inputs to f32 and return f32. Every other op keeps its inputs'
// dtype (mixed ones promote as in PyTorch). The state is per thread and applies to ops on every
// device; casts of f32 leaves that require grad (parameters) are cached until the outermost scope
// exits, so a weight used twice is cast once. The casts are differentiable: gradients reaching
// f32 parameters are f32. A CPU linear under bf16 autocast whose weight is an f32 tensor that
// requires grad is one autograd node over the f32 weight and bias: their gradients are the GEMM's
// float32 sums and float32 column sums, not rounded to bf16 first as torch's autocast rounds them.
//
// Mixed precision training (Lightning's "bf16-mixed" / "16-mixed"): run the forward pass and the
// loss inside `AutocastGuard guard(DType::bf16)` (or DType::f16, with loss scaling), then call
// backward() after the scope; parameters and optimizer state stay f32.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ember/runtime/api.h"
#include "ember/runtime/dtype.h"
#include "ember/runtime/tensor.h"

namespace ember {

// Whether autocast is on in the calling thread, and the half dtype it casts to (bf16 when no
// scope ever set one).
EMBER_API bool autocast_enabled();
EMBER_API DType autocast_dtype();

// Turns autocast on (or, with enabled = false, off) for its lifetime, restoring the previous
// state on exit. Scopes nest; the cast cache is cleared when the outermost one exits (disabled
// scopes count, as in PyTorch). dtype must be bf16 or f16 (else ember::Error "[autocast] ...").
// With cache = false this scope's casts are not cached (torch's cache_enabled).
class EMBER_API AutocastGuard {
 public:
  explicit AutocastGuard(DType dtype = DType::bf16, bool enabled = true, bool cache = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool prev_enabled_;
  DType prev_dtype_;
  bool prev_cache_;
};

// The casts autocast applies, for op front ends and custom ops (as PyTorch's cached_cast). Both
// return t itself when no cast applies (autocast off, t undefined or of another dtype).
// autocast_lowp: an f32 (or other half) tensor to autocast_dtype(); an f32 leaf that requires
// grad is cast once per outermost scope (cached).
EMBER_API Tensor autocast_lowp(const Tensor& t);
// autocast_f32: an f16/bf16 tensor to f32.
EMBER_API Tensor autocast_f32(const Tensor& t);

// Inside an enabled scope: the next autocast_lowp(source) in this scope returns copy's values (a
// tensor on copy's storage) as source's cast, recorded as a differentiable cast, instead of casting
// again, provided source's version is still the one it had at this call. copy must hold source's
// values rounded to the scope's dtype (the Trainer passes the optimizer's lowp copies, see
// Optimizer::keep_lowp_copies). Ignored when the scope does not cache or source is not an f32 leaf
// that requires grad, and when source was already cast in this scope.
EMBER_API void autocast_use_lowp_copy(const Tensor& source, const Tensor& copy);

// The number of casts now cached in the calling thread, and how many casts autocast_lowp has
// computed in this thread since it started (cache hits excluded); for tests and profiling.
EMBER_API size_t autocast_cache_size();
EMBER_API uint64_t autocast_casts_computed();

}  // namespace ember
