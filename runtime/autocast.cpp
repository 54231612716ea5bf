// Autocast state and the cast cache (see autocast.h). The cache is a short per-thread list (a
// model has tens of parameters), cleared without releasing its capacity, so a steady mixed
// precision step does not allocate for it.
#include "ember/runtime/autocast.h"

#include <vector>

#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"

namespace ember {
namespace {

struct CacheEntry {
  Tensor source;  // keeps the source alive, so its address is not reused while cached
  Tensor cast;    // undefined while a lowp copy waits for its first use
  uint32_t version;  // the source's version when cast: an in-place update invalidates the entry
  Tensor lowp;    // autocast_use_lowp_copy's copy (source's values already rounded), or undefined
};

struct AutocastState {
  bool enabled = false;
  DType dtype = DType::bf16;
  bool cache = true;
  int depth = 0;
  uint64_t computed = 0;
  std::vector<CacheEntry> entries;
};

AutocastState& state() {
  thread_local AutocastState s;
  return s;
}

bool is_half(DType t) { return t == DType::f16 || t == DType::bf16; }

}  // namespace

bool autocast_enabled() { return state().enabled; }
DType autocast_dtype() { return state().dtype; }

AutocastGuard::AutocastGuard(DType dtype, bool enabled, bool cache) {
  EMBER_CHECK(is_half(dtype), "[autocast] dtype ", dtype_name(dtype),
              " is not supported (expected bf16 or f16)");
  AutocastState& s = state();
  prev_enabled_ = s.enabled;
  prev_dtype_ = s.dtype;
  prev_cache_ = s.cache;
  s.enabled = enabled;
  // A disabled scope keeps the outer dtype, as torch.autocast(enabled=False).
  if (enabled) s.dtype = dtype;
  s.cache = cache;
  ++s.depth;
}

AutocastGuard::~AutocastGuard() {
  AutocastState& s = state();
  s.enabled = prev_enabled_;
  s.dtype = prev_dtype_;
  s.cache = prev_cache_;
  if (--s.depth == 0) s.entries.clear();
}

Tensor autocast_lowp(const Tensor& t) {
  AutocastState& s = state();
  const DType to = s.dtype;
  // As PyTorch's cached_cast: every floating dtype but f64 is cast (a half tensor of the other
  // half dtype too).
  if (!s.enabled || !t.defined() || t.dtype() == to || (t.dtype() != DType::f32 && !is_half(t.dtype()))) return t;
  // Only f32 parameters are cached: a leaf that requires grad, cast with grad mode on (a cast
  // made under no-grad has no history and must not serve a later step that needs one).
  const bool cacheable =
      s.cache && t.dtype() == DType::f32 && t.is_leaf() && t.requires_grad() && grad_enabled();
  if (cacheable) {
    for (CacheEntry& e : s.entries) {
      if (e.source.impl_ptr() != t.impl_ptr()) continue;
      if (e.cast.defined() ? e.cast.dtype() != to : e.lowp.dtype() != to) continue;
      if (e.version == t.version()) {
        if (!e.cast.defined()) {
          // The copy's values as a differentiable cast of t: a new handle on the copy's storage,
          // recorded as to_dtype's node is.
          e.cast = e.lowp.detach();
          const DType src = t.dtype();
          autograd::record("to_dtype", {t}, e.cast,
                           [src](const Tensor& g) -> autograd::TensorList { return {g.to(src)}; });
        }
        return e.cast;
      }
      e.cast = t.to(to);
      e.version = t.version();
      e.lowp = Tensor();
      ++s.computed;
      return e.cast;
    }
  }
  Tensor cast = t.to(to);
  ++s.computed;
  if (cacheable) s.entries.push_back({t, cast, t.version(), Tensor()});
  return cast;
}

void autocast_use_lowp_copy(const Tensor& source, const Tensor& copy) {
  AutocastState& s = state();
  EMBER_CHECK(s.enabled, "[autocast] autocast_use_lowp_copy needs an enabled autocast scope");
  EMBER_CHECK(source.defined() && copy.defined() && source.dtype() == DType::f32 && copy.dtype() == s.dtype &&
                  copy.shape() == source.shape() && copy.device() == source.device(),
              "[autocast] autocast_use_lowp_copy takes an f32 tensor and a copy of its shape and device in the scope's ",
              dtype_name(s.dtype), ", got ", source.defined() ? dtype_name(source.dtype()) : "undefined", " and ",
              copy.defined() ? dtype_name(copy.dtype()) : "undefined");
  if (!s.cache || !source.is_leaf() || !source.requires_grad()) return;
  for (const CacheEntry& e : s.entries)
    if (e.source.impl_ptr() == source.impl_ptr()) return;  // already cast (or given) in this scope
  s.entries.push_back({source, Tensor(), source.version(), copy});
}

Tensor autocast_f32(const Tensor& t) {
  if (!state().enabled || !t.defined() || !is_half(t.dtype())) return t;
  return t.to(DType::f32);
}

size_t autocast_cache_size() { return state().entries.size(); }
uint64_t autocast_casts_computed() { return state().computed; }

}  // namespace ember
