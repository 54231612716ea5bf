// PNG output for the examples: an 8-bit grayscale or RGB image in memory, written with libpng's
// simplified API (png_image_write_to_file). Errors are ember::Error naming the file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ember::examples {

// A row-major 8-bit image: channels 1 (gray) or 3 (RGB), pixels.size() == width * height * channels.
struct Image {
  int width = 0, height = 0, channels = 1;
  std::vector<uint8_t> pixels;

  // A width x height image filled with one value per channel (gray: value[0]).
  Image(int width, int height, int channels, std::vector<uint8_t> fill);
  // Pointer to the first channel of pixel (x, y); no bounds check.
  uint8_t* at(int x, int y) { return &pixels[(static_cast<size_t>(y) * width + x) * channels]; }
  // Sets pixel (x, y) to `color` (channels values); pixels outside the image are ignored.
  void set(int x, int y, const uint8_t* color);
};

// Writes img to path as a PNG; throws "[png] cannot write 'path': <libpng message>".
void write_png(const std::string& path, const Image& img);

}  // namespace ember::examples
