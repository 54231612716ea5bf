// Image grids and line plots for the examples. The plot is deliberately plain: axes with ticks at
// round values, one polyline with point markers per series, and a legend; text uses a hand-drawn
// 5x7 font covering digits, lowercase letters and the few symbols the plots need.
#include "examples/common/draw.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "ember/runtime/error.h"

namespace ember::examples {

namespace {

using Glyph = std::array<const char*, 7>;

const std::map<char, Glyph>& font() {
  static const std::map<char, Glyph> f = {
      {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
      {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
      {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
      {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
      {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
      {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
      {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
      {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
      {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
      {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
      {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
      {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
      {'-', {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
      {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
      {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
      {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
      {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
      {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
      {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
      {'/', {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}},
      {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
      {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
      {'S', {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
      {'a', {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"}},
      {'b', {"#....", "#....", "####.", "#...#", "#...#", "#...#", "####."}},
      {'c', {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."}},
      {'d', {"....#", "....#", ".####", "#...#", "#...#", "#...#", ".####"}},
      {'e', {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."}},
      {'f', {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."}},
      {'g', {".....", ".####", "#...#", "#...#", ".####", "....#", ".###."}},
      {'h', {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
      {'i', {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."}},
      {'j', {"...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."}},
      {'k', {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."}},
      {'l', {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
      {'m', {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"}},
      {'n', {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
      {'o', {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."}},
      {'p', {".....", ".....", "####.", "#...#", "####.", "#....", "#...."}},
      {'q', {".....", ".....", ".####", "#...#", ".####", "....#", "....#"}},
      {'r', {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."}},
      {'s', {".....", ".....", ".####", "#....", ".###.", "....#", "####."}},
      {'t', {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."}},
      {'u', {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"}},
      {'v', {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
      {'w', {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."}},
      {'x', {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"}},
      {'y', {".....", ".....", "#...#", "#...#", ".####", "....#", ".###."}},
      {'z', {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"}},
  };
  return f;
}

constexpr Glyph kBox = {"#####", "#...#", "#...#", "#...#", "#...#", "#...#", "#####"};
constexpr int kAdvance = 6;  // 5 pixels of glyph and 1 of spacing

void fill_rect(Image& img, int x0, int y0, int x1, int y1, const uint8_t* c) {
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) img.set(x, y, c);
}

// A 2-pixel-wide line (Bresenham, with the pixel below/right of each point).
void draw_line(Image& img, int x0, int y0, int x1, int y1, const uint8_t* c) {
  int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
  int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    fill_rect(img, x0, y0, x0 + 1, y0 + 1, c);
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

// CPU float copy of a batch of square images: returns (count, side) and the values.
std::vector<float> image_values(const Tensor& t, int64_t& count, int64_t& side, const char* what) {
  EMBER_CHECK(t.defined() && t.dim() >= 2, "[reconstruction_grid] ", what, " must be a batch of images (N, ...), got ",
              t.defined() ? t.shape().str() : std::string("an undefined tensor"));
  count = t.size(0);
  int64_t per = count > 0 ? t.numel() / count : 0;
  side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(per))));
  EMBER_CHECK(count > 0 && side * side == per, "[reconstruction_grid] ", what, " of shape ", t.shape().str(),
              " are not square images");
  return t.detach().to(kCPU).to(DType::f32).contiguous().reshape({count * per}).to_vector<float>();
}

}  // namespace

Ticks nice_ticks(double lo, double hi, int max_ticks, bool integer) {
  EMBER_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi && max_ticks >= 2, "[nice_ticks] needs finite lo < hi ",
              "and max_ticks >= 2, got lo=", lo, ", hi=", hi, ", max_ticks=", max_ticks);
  // A step of mantissa * 10^exponent; steps grow from one decade below range / max_ticks, so the
  // first that fits is the smallest.
  static constexpr double kMantissas[] = {1.0, 2.0, 2.5, 5.0};
  int exponent = static_cast<int>(std::floor(std::log10((hi - lo) / max_ticks))) - 1;
  if (integer) exponent = std::max(exponent, 0);
  for (;; ++exponent) {
    for (double m : kMantissas) {
      if (integer && m == 2.5 && exponent == 0) continue;
      const double step = m * std::pow(10.0, exponent);
      // Multiples k * step in [lo, hi]; the slack absorbs the rounding of lo / step and hi / step.
      const double first = std::ceil(lo / step - 1e-9), last = std::floor(hi / step + 1e-9);
      if (last - first + 1 > max_ticks) continue;
      const int count = static_cast<int>(last - first + 1);
      // 2.5 * 10^e needs one decimal more than 10^e.
      const int decimals = std::max(0, -exponent + (m == 2.5 ? 1 : 0));
      Ticks t;
      for (int i = 0; i < count; ++i) {
        const double v = (first + i) * step + 0.0;  // + 0.0 turns -0 (first == -0.0) into 0: no "-0.00"
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
        t.values.push_back(v);
        t.labels.push_back(buf);
      }
      return t;
    }
  }
}

int text_width(const std::string& text, int scale) { return static_cast<int>(text.size()) * kAdvance * scale; }

int draw_text(Image& img, int x, int y, const std::string& text, const uint8_t* color, int scale) {
  int cx = x;
  for (char ch : text) {
    auto it = font().find(ch);
    const Glyph& g = it == font().end() ? kBox : it->second;
    for (int r = 0; r < 7; ++r)
      for (int c = 0; c < 5; ++c)
        if (g[r][c] == '#') fill_rect(img, cx + c * scale, y + r * scale, cx + (c + 1) * scale - 1, y + (r + 1) * scale - 1, color);
    cx += kAdvance * scale;
  }
  return cx - x;
}

Image reconstruction_grid(const Tensor& originals, const Tensor& reconstructions, int columns, int scale) {
  int64_t n = 0, side = 0, n2 = 0, side2 = 0;
  std::vector<float> a = image_values(originals, n, side, "originals");
  std::vector<float> b = image_values(reconstructions, n2, side2, "reconstructions");
  EMBER_CHECK(n == n2 && side == side2, "[reconstruction_grid] ", n, " originals of ", side, "x", side, " but ", n2,
              " reconstructions of ", side2, "x", side2);
  EMBER_CHECK(columns >= 1 && scale >= 1, "[reconstruction_grid] columns=", columns, " and scale=", scale, " must be >= 1");
  const int cols = static_cast<int>(std::min<int64_t>(columns, n));
  const int groups = static_cast<int>((n + cols - 1) / cols);
  const int cell = static_cast<int>(side) * scale, pad = 2 * scale;
  const int width = cols * (cell + pad) + pad;
  const int height = groups * (2 * cell + 3 * pad) + pad;  // a wider gap between groups
  Image img(width, height, 1, {48});
  auto paint = [&](const std::vector<float>& src, int64_t index, int x0, int y0) {
    const float* p = src.data() + index * side * side;
    for (int64_t r = 0; r < side; ++r)
      for (int64_t c = 0; c < side; ++c) {
        float v = std::clamp(p[r * side + c], 0.0f, 1.0f);
        uint8_t g = static_cast<uint8_t>(std::lround(v * 255.0f));
        fill_rect(img, x0 + static_cast<int>(c) * scale, y0 + static_cast<int>(r) * scale,
                  x0 + static_cast<int>(c + 1) * scale - 1, y0 + static_cast<int>(r + 1) * scale - 1, &g);
      }
  };
  for (int64_t i = 0; i < n; ++i) {
    int g = static_cast<int>(i / cols), c = static_cast<int>(i % cols);
    int x0 = pad + c * (cell + pad);
    int y0 = pad + g * (2 * cell + 3 * pad);
    paint(a, i, x0, y0);
    paint(b, i, x0, y0 + cell + pad);
  }
  return img;
}

Image line_plot(const std::vector<Series>& series, const std::string& title, const std::string& xlabel, int width,
                int height) {
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  bool x_whole = true;
  for (const Series& s : series) {
    EMBER_CHECK(s.x.size() == s.y.size(), "[line_plot] series '", s.name, "' has ", s.x.size(), " x and ", s.y.size(),
                " y values");
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
      x_whole = x_whole && s.x[i] == std::floor(s.x[i]);
    }
  }
  EMBER_CHECK(std::isfinite(xmin), "[line_plot] '", title, "': no series has a finite point to plot");
  if (xmax == xmin) xmax = xmin + 1;
  double ypad = ymax > ymin ? 0.05 * (ymax - ymin) : std::max(std::abs(ymin) * 0.05, 1e-6);
  ymin -= ypad;
  ymax += ypad;

  const uint8_t white[3] = {255, 255, 255}, black[3] = {0, 0, 0}, grid[3] = {225, 225, 225};
  Image img(width, height, 3, {255, 255, 255});
  const int left = 78, right = width - 20, top = 34, bottom = height - 46;
  const int inset = 12;  // keeps the first and last points off the axes
  auto px = [&](double x) {
    return left + inset + static_cast<int>(std::lround((x - xmin) / (xmax - xmin) * (right - left - 2 * inset)));
  };
  auto py = [&](double y) { return bottom - static_cast<int>(std::lround((y - ymin) / (ymax - ymin) * (bottom - top))); };

  // grid lines and tick labels at round values: up to 6 on y, up to 10 on x (whole numbers there
  // when every x is one, as epochs are)
  const Ticks yticks = nice_ticks(ymin, ymax, 6);
  for (size_t i = 0; i < yticks.values.size(); ++i) {
    int y = py(yticks.values[i]);
    for (int x = left; x <= right; ++x) img.set(x, y, grid);
    draw_text(img, left - 6 - text_width(yticks.labels[i]), y - 3, yticks.labels[i], black);
  }
  const Ticks xticks = nice_ticks(xmin, xmax, 10, x_whole);
  for (size_t i = 0; i < xticks.values.size(); ++i) {
    int x = px(xticks.values[i]);
    for (int y = top; y <= bottom; ++y) img.set(x, y, grid);
    draw_text(img, x - text_width(xticks.labels[i]) / 2, bottom + 6, xticks.labels[i], black);
  }
  draw_line(img, left, top, left, bottom, black);
  draw_line(img, left, bottom, right, bottom, black);
  draw_text(img, (left + right - text_width(title, 2)) / 2, 8, title, black, 2);
  draw_text(img, (left + right - text_width(xlabel)) / 2, height - 18, xlabel, black);

  for (const Series& s : series) {
    const uint8_t* c = s.color.data();
    bool have_prev = false;
    int prev_x = 0, prev_y = 0;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      int x = px(s.x[i]), y = py(s.y[i]);
      if (have_prev) draw_line(img, prev_x, prev_y, x, y, c);
      fill_rect(img, x - 3, y - 3, x + 3, y + 3, c);
      prev_x = x;
      prev_y = y;
      have_prev = true;
    }
  }
  // legend, top right, on a white box
  int lw = 0;
  for (const Series& s : series) lw = std::max(lw, text_width(s.name));
  int lx = right - lw - 40, ly = top + 8;
  fill_rect(img, lx - 6, ly - 6, right - 4, ly + 14 * static_cast<int>(series.size()), white);
  for (const Series& s : series) {
    draw_line(img, lx, ly + 3, lx + 20, ly + 3, s.color.data());
    draw_text(img, lx + 28, ly, s.name, black);
    ly += 14;
  }
  return img;
}

}  // namespace ember::examples
