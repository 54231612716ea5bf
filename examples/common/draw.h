// Pictures the examples write: a grid of images over their reconstructions, and a line plot of
// loss curves with axes, tick labels and a legend (drawn with a built-in 5x7 pixel font).
#pragma once
#include <array>
#include <string>
#include <vector>

#include "examples/common/png.h"
#include "ember/runtime/tensor.h"

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

// Axis ticks at round values, as a plotting library's tick locator places them: every multiple of
// a step of 1, 2, 2.5 or 5 times a power of ten in [lo, hi], with the smallest such step that gives
// at most max_ticks ticks. `integer` allows only whole steps (for epochs and counts). Each label has
// the decimals the step needs, the same for all ("0.030", "0.035", "0.040"). Throws unless lo < hi
// are finite and max_ticks >= 2.
struct Ticks {
  std::vector<double> values;
  std::vector<std::string> labels;
};
Ticks nice_ticks(double lo, double hi, int max_ticks, bool integer = false);

// An RGB line plot (width x height) of the series, with a title, an x-axis label, axes numbered at
// round values (nice_ticks; whole numbers on x when every x is one) and a legend. Throws when no
// series has a finite point.
Image line_plot(const std::vector<Series>& series, const std::string& title, const std::string& xlabel,
                int width = 640, int height = 400);

// Draws text with the built-in 5x7 font (characters it lacks are drawn as boxes); returns its width.
int draw_text(Image& img, int x, int y, const std::string& text, const uint8_t* color, int scale = 1);
// The width in pixels that draw_text would use.
int text_width(const std::string& text, int scale = 1);

}  // namespace ember::examples
