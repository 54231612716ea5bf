// Reader for IDX files, the format of MNIST and Fashion-MNIST: a big-endian header (magic
// 0x0000TTRR: element type TT, rank RR; then RR u32 dims) followed by the elements. Plain or gzip.
// Only unsigned-byte files (type 0x08) are supported; every inconsistency is an ember::Error.
#pragma once
#include <cstdint>
#include <string>

#include "ember/runtime/api.h"
#include "ember/runtime/tensor.h"

namespace ember::data {

// Largest payload the reader accepts (2 GiB; MNIST's training images are 47 MB).
inline constexpr int64_t kMaxIdxBytes = int64_t{1} << 31;

// Reads an unsigned-byte IDX file of the given rank (plain or .gz) into a u8 tensor of its dims.
EMBER_API Tensor read_idx(const std::string& path, int rank);
// Reads an MNIST image file (magic 0x00000803) into a u8 tensor (N, rows, cols).
EMBER_API Tensor read_idx_images(const std::string& path);
// Reads an MNIST label file (magic 0x00000801) into a u8 tensor (N); labels must be < num_classes.
EMBER_API Tensor read_idx_labels(const std::string& path, int64_t num_classes = 10);

}  // namespace ember::data
