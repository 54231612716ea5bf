// parallel_for's chunk assignment outside grad mode, for the backward pass. Private to the library.
#pragma once

namespace ember::detail {

// While one is alive, the calling thread's parallel_for calls run chunk i on worker i, as in grad
// mode, even with grad mode off. The backward pass runs with grad mode off, and its kernels grow
// per-thread scratch buffers in the first steps: with the same chunks on the same threads every
// step, a steady training step allocates nothing (claimed chunks could land a larger chunk on a
// thread that never ran one, late in training, under load).
class FixedChunksGuard {
 public:
  FixedChunksGuard();
  ~FixedChunksGuard();
  FixedChunksGuard(const FixedChunksGuard&) = delete;
  FixedChunksGuard& operator=(const FixedChunksGuard&) = delete;
};

// Whether a FixedChunksGuard is alive in the calling thread.
bool fixed_chunks();

}  // namespace ember::detail
