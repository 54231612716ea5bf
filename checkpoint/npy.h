// NumPy's .npy format, the way arrays go in and out of a deployed model (ember-run uses it):
// header versions 1.0, 2.0 and 3.0, C order, little-endian f32 ('<f4'), f64 ('<f8') and u8 ('|u1')
// only. The reader is strict: anything else (Fortran order, big-endian, other dtypes, a bad magic,
// a header that does not parse, data shorter or longer than the header's shape says) is an
// ember::Error naming the file and what was found. The format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
#pragma once
#include <string>

#include "ember/runtime/api.h"
#include "ember/runtime/tensor.h"

namespace ember {

// A contiguous CPU tensor of dtype f32, f64 or u8 holding the array in path. The data size is
// checked against the file size before anything is allocated for it.
EMBER_API Tensor read_npy(const std::string& path);

// Writes t (f32, f64 or u8; any device and layout) to path in C order with a header of the given
// major version (1, 2 or 3), padded so that the data starts at a multiple of 64 bytes as NumPy's
// own files do. The file is written under a temporary name and renamed into place, so a failed
// write leaves no partial file.
EMBER_API void write_npy(const std::string& path, const Tensor& t, int version = 1);

}  // namespace ember
