// Pictures the examples write: a grid of images over their reconstructions, and a line plot of
// loss curves with axes, tick labels and a legend (drawn with a built-in 5x7 pixel font).
#pragma once
#include <array>
#include <string>
#include <vector>

#include "examples/common/png.h"
#include "runtime/tensor.h"

namespace ember::examples {

// originals, reconstructions: (N, 784) or (N, 1, 28, 28) values in [0, 1] (any square image size).
// Returns a grayscale grid: for each group of `columns` images, a row of originals above a row of
// their reconstructions; each image is scaled up `scale` times.
Image reconstruction_grid(const Tensor& originals, const Tensor& reconstructions, int columns = 8, int scale = 2);

struct Series {
  std::string name;
  std::array<uint8_t, 3> color;
  std::vector<double> x, y;  // points in x order; NaN values are skipped
};

// An RGB line plot (width x height) of the series, with a title, an x-axis label, numbered axes
// and a legend. Throws when no series has a finite point.
Image line_plot(const std::vector<Series>& series, const std::string& title, const std::string& xlabel,
                int width = 640, int height = 400);

// Draws text with the built-in 5x7 font (characters it lacks are drawn as boxes); returns its width.
int draw_text(Image& img, int x, int y, const std::string& text, const uint8_t* color, int scale = 1);
// The width in pixels that draw_text would use.
int text_width(const std::string& text, int scale = 1);

}  // namespace ember::examples
