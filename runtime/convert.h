// Bulk element conversion over raw buffers, for data loaders that assemble batches themselves:
// the runtime's way to a vectorised CPU kernel without reaching into kernels/.
#pragma once
#include <cstdint>

#include "ember/runtime/api.h"

namespace ember {

// dst[i] = float(src[i]) / divisor for i in [0, n) (e.g. divisor 255 turns u8 pixels into [0, 1],
// as torchvision's ToTensor does), on the calling thread, vectorised for the CPU's widest ISA with
// the same bits on every ISA. The buffers must not overlap.
EMBER_API void u8_to_f32_divided(const uint8_t* src, float* dst, int64_t n, float divisor);

}  // namespace ember
