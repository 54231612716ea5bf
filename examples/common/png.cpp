// PNG writing through libpng's simplified write API, which handles its own error recovery
// (no setjmp in our code).
#include "examples/common/png.h"

#include <png.h>

#include <cstring>

#include "ember/runtime/error.h"

namespace ember::examples {

Image::Image(int w, int h, int c, std::vector<uint8_t> fill) : width(w), height(h), channels(c) {
  EMBER_CHECK(w > 0 && h > 0 && (c == 1 || c == 3), "[png] image size ", w, "x", h, " with ", c,
              " channels is not supported (need positive sizes and 1 or 3 channels)");
  EMBER_CHECK(static_cast<int>(fill.size()) == c, "[png] fill color has ", fill.size(), " values for ", c, " channels");
  pixels.resize(static_cast<size_t>(w) * h * c);
  for (size_t i = 0; i < pixels.size(); i += c) std::memcpy(&pixels[i], fill.data(), c);
}

void Image::set(int x, int y, const uint8_t* color) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  std::memcpy(at(x, y), color, channels);
}

void write_png(const std::string& path, const Image& img) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(img.width);
  png.height = static_cast<png_uint_32>(img.height);
  png.format = img.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  int ok = png_image_write_to_file(&png, path.c_str(), 0, img.pixels.data(), img.width * img.channels, nullptr);
  std::string message = png.message;
  png_image_free(&png);
  EMBER_CHECK(ok != 0, "[png] cannot write '", path, "': ", message.empty() ? "unknown libpng error" : message);
}

}  // namespace ember::examples
