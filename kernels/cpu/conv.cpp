// CPU 2-D convolution (NCHW, contiguous, f32/f64) as GEMMs over "phase planes", without im2col.
// With stride s, input pixel (s*u + a, s*v + b) of the padded image goes to plane (a, b) at (u, v);
// tap (i, j) of output (oh, ow) then reads plane (d*i % s, d*j % s) at (oh + d*i / s, ow + d*j / s),
// so every row of the im2col matrix is a contiguous run of a plane at a fixed shift. Planes are V
// wide (the output width plus the largest shift) and the GEMM computes all V columns of an output
// row; the extra ones are discarded. The GEMM reads the shifted runs through a row table
// (GemmOperand::row_table), for a chunk of images side by side. The input gradient works the same
// way on the zero-padded output gradient, one GEMM per phase of dx.
//
// Chunks hold a number of images fixed by the shapes; the forward and input-gradient chunks write
// disjoint outputs and the weight gradient sums fixed slices of the batch in slice order, so
// results do not depend on the thread count. Scratch buffers are per thread and kept between calls.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/cpu/conv_stride2.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/gemm.h"
#include "kernels/kernels.h"
#include "ember/runtime/parallel.h"

namespace ember::kernels {
namespace {

// A grow-only per-thread buffer (no allocation once grown); `slot` tells apart the buffers one
// kernel uses at the same time. Slots 0-2 are used inside parallel regions, slot 3 by the calling
// thread around them.
template <typename T>
T* thread_buffer(int slot, int64_t n) {
  thread_local std::vector<T> buffers[4];
  std::vector<T>& b = buffers[slot];
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

template <typename T>
const T** thread_row_table(int64_t n) {
  thread_local std::vector<const T*> table;
  if (table.size() < static_cast<size_t>(n)) table.resize(static_cast<size_t>(n));
  return table.data();
}

// Indices v in [0, out) for which v*s - p + off lies inside [0, size), as [lo, hi).
void valid_range(int64_t size, int64_t out, int64_t s, int64_t p, int64_t off, int64_t& lo, int64_t& hi) {
  int64_t shift = p - off;  // need v*s >= shift and v*s < size + shift
  lo = shift <= 0 ? 0 : (shift + s - 1) / s;
  hi = size + shift <= 0 ? 0 : (size + shift - 1) / s + 1;
  lo = std::min(lo, out);
  hi = std::clamp(hi, lo, out);
}

// Copies a rows x len block between row strides. Plane rows are short (OW values), so this is
// written in blocks of four plus a tail, which compilers neither turn into one memcpy call per row
// nor leave scalar.
template <typename T>
void copy_block(T* __restrict dst, int64_t dst_ld, const T* __restrict src, int64_t src_ld, int64_t rows,
                int64_t len) {
  for (int64_t r = 0; r < rows; ++r) {
    T* d = dst + r * dst_ld;
    const T* s = src + r * src_ld;
    int64_t i = 0;
    for (; i + 4 <= len; i += 4) {
      const T a0 = s[i], a1 = s[i + 1], a2 = s[i + 2], a3 = s[i + 3];
      d[i] = a0;
      d[i + 1] = a1;
      d[i + 2] = a2;
      d[i + 3] = a3;
    }
    switch (len - i) {
      case 3: d[i + 2] = s[i + 2]; [[fallthrough]];
      case 2: d[i + 1] = s[i + 1]; [[fallthrough]];
      case 1: d[i] = s[i]; break;
      default: break;
    }
  }
}

// The phase-plane layout of x for the forward pass and the weight gradient: plane (a, b, c) of
// image n holds padded x at (s*u + a, s*v + b) for u < U, v < V; output (oh, ow) is GEMM column
// n*P + oh*V + ow.
struct InputPlanes {
  int64_t U, V, P;  // plane rows, row length, size per image
  int64_t nb;       // images per chunk

  explicit InputPlanes(const ConvGeom& g)
      : U(g.OH + g.dh * (g.kh - 1) / g.sh),
        V(g.OW + g.dw * (g.kw - 1) / g.sw),
        P(U * V),
        nb(std::max<int64_t>(1, kChunkColumns / P)) {}

  int64_t phases(const ConvGeom& g) const { return g.sh * g.sw; }
  // Elements of a chunk's planes for Cg channels, plus a zero tail that shifted reads of the last
  // image's discarded columns may touch. The planes of a channel hold the chunk's n images side by
  // side (stride n*P), so every read lands in data of this chunk or in the tail: the discarded
  // columns, multiplied by zeros in the weight gradient, never see stale values.
  int64_t size(const ConvGeom& g, int64_t Cg) const { return phases(g) * Cg * nb * P + P; }
  // GEMM columns for n images: the rows past OH of the last image are not computed.
  int64_t columns(const ConvGeom& g, int64_t n) const { return (n - 1) * P + g.OH * V; }

  // Fills the planes of channels [c0, c0 + Cg) of images [n0, n0 + n) of x (N, C, H, W).
  template <typename T>
  void fill(const ConvGeom& g, const T* x, int64_t n0, int64_t n, int64_t c0, int64_t Cg, T* planes) const {
    const int64_t stride_c = n * P;
    // One fill of the whole buffer (the padding and the tail), then the rows inside the image.
    std::fill(planes, planes + phases(g) * Cg * stride_c + P, T(0));
    for (int64_t a = 0; a < g.sh; ++a) {
      for (int64_t b = 0; b < g.sw; ++b) {
        int64_t lo, hi;
        valid_range(g.W, V, g.sw, g.pw, b, lo, hi);
        const int64_t off = b - g.pw;  // iw = v*sw + off
        for (int64_t c = 0; c < Cg; ++c) {
          T* plane = planes + ((a * g.sw + b) * Cg + c) * stride_c;
          for (int64_t i = 0; i < n; ++i) {
            const T* xc = x + ((n0 + i) * g.C + c0 + c) * g.H * g.W;
            for (int64_t u = 0; u < U; ++u) {
              const int64_t ih = u * g.sh + a - g.ph;
              if (ih < 0 || ih >= g.H) continue;
              T* r = plane + i * P + u * V;
              const T* xr = xc + ih * g.W;
              if (g.sw == 2) {  // the common case, with a stride the compiler can vectorize
                for (int64_t v = lo; v < hi; ++v) r[v] = xr[v * 2 + off];
              } else {
                for (int64_t v = lo; v < hi; ++v) r[v] = xr[v * g.sw + off];
              }
            }
          }
        }
      }
    }
  }

  // Row (c, i, j) of the implicit im2col matrix of n images: where tap (i, j) of channel c reads.
  template <typename T>
  void row_table(const ConvGeom& g, int64_t n, int64_t Cg, const T* planes, const T** rows) const {
    const int64_t stride_c = n * P;
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t di = i * g.dh, dj = j * g.dw;
          const int64_t phase = (di % g.sh) * g.sw + dj % g.sw;
          *rows++ = planes + (phase * Cg + c) * stride_c + (di / g.sh) * V + dj / g.sw;
        }
  }
};

// Adds bias[c] to every element of plane c of out (N, channels, plane), in place.
template <typename T>
void add_channel_bias(T* out, const T* bias, int64_t N, int64_t channels, int64_t plane) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(plane, 1));
  parallel_for(0, N * channels, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T b = bias[r % channels];
      T* o = out + r * plane;
      for (int64_t i = 0; i < plane; ++i) o[i] += b;
    }
  });
}

// y (N, K, OH, OW) = conv(x (N, C, H, W), w (K, Cg, kh, kw)) + bias (K values; nullptr: none), the
// bias added to the finished sums (by the direct stride-2 kernel as it stores them).
template <typename T>
void conv2d_impl(const ConvGeom& g, const Tensor& xt, const Tensor& wt, const Tensor& yt, const T* bias = nullptr) {
  if constexpr (std::is_same_v<T, float>) {
    if (stride2_conv_applies(g, ConvPass::Forward))
      return conv2d_stride2(g, xt.data_ptr<float>(), wt.data_ptr<float>(), bias, yt.data_ptr<float>());
    if (winograd_conv_applies(g, ConvPass::Forward)) {
      conv2d_winograd(g, xt.data_ptr<float>(), wt.data_ptr<float>(), yt.data_ptr<float>());
      if (bias) add_channel_bias(yt.data_ptr<float>(), bias, g.N, g.K, g.OH * g.OW);
      return;
    }
  }
  const int64_t G = g.groups, Cg = g.C / G, Kg = g.K / G, R = Cg * g.kh * g.kw;
  const T* x = xt.data_ptr<T>();
  const T* w = wt.data_ptr<T>();
  T* y = yt.data_ptr<T>();
  const InputPlanes pl(g);
  const int64_t chunks = (g.N + pl.nb - 1) / pl.nb, OP = g.OH * g.OW;
  parallel_for(0, chunks, 1, [&](int64_t ch0, int64_t ch1) {
    T* planes = thread_buffer<T>(0, pl.size(g, Cg));
    T* out = thread_buffer<T>(1, Kg * pl.nb * pl.P);
    const T** rows = thread_row_table<T>(R);
    for (int64_t ch = ch0; ch < ch1; ++ch) {
      const int64_t n0 = ch * pl.nb, n = std::min(pl.nb, g.N - n0), cols = pl.columns(g, n);
      for (int64_t gi = 0; gi < G; ++gi) {
        pl.fill(g, x, n0, n, gi * Cg, Cg, planes);
        pl.row_table(g, n, Cg, planes, rows);
        // out (Kg, cols) = w[group] (Kg, R) @ im2col (R, cols)
        gemm_cpu(Kg, cols, R, T(1), GemmOperand<T>::strided(w + gi * Kg * R, R, false),
                 GemmOperand<T>::row_table(rows), T(0), out, cols);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t k = 0; k < Kg; ++k) {
            T* yk = y + ((n0 + i) * g.K + gi * Kg + k) * OP;
            const T* o = out + k * cols + i * pl.P;
            copy_block(yk, g.OW, o, pl.V, g.OH, g.OW);
          }
      }
    }
  });
  if (bias) add_channel_bias(y, bias, g.N, g.K, OP);
}

// dx (N, C, H, W) from dy (N, K, OH, OW) and w (K, Cg, kh, kw). Input pixel (h, w) has phase
// ((h + ph) % sh, (w + pw) % sw) and plane position u = (h + ph) / sh, v = (w + pw) / sw; it gets
// the taps (i, j) of that phase, tap i reading dy row u - d*i/s. dy is copied into zero-padded
// planes (margins of the largest shift on the top and left), so those reads are again shifted
// runs.
// (+ bias: C values added to the finished sums, as in conv2d_impl; conv_transpose2d's bias)
template <typename T>
void conv2d_backward_input_impl(const ConvGeom& g, const Tensor& dyt, const Tensor& wt, const Tensor& dxt,
                                const T* bias = nullptr) {
  if constexpr (std::is_same_v<T, float>) {
    if (stride2_conv_applies(g, ConvPass::Input))
      return conv2d_backward_input_stride2(g, dyt.data_ptr<float>(), wt.data_ptr<float>(), bias, dxt.data_ptr<float>());
    if (winograd_conv_applies(g, ConvPass::Input)) {
      conv2d_backward_input_winograd(g, dyt.data_ptr<float>(), wt.data_ptr<float>(), dxt.data_ptr<float>());
      if (bias) add_channel_bias(dxt.data_ptr<float>(), bias, g.N, g.C, g.H * g.W);
      return;
    }
  }
  const int64_t G = g.groups, Cg = g.C / G, Kg = g.K / G;
  const T* dy = dyt.data_ptr<T>();
  const T* w = wt.data_ptr<T>();
  T* dx = dxt.data_ptr<T>();
  const int64_t mh = g.dh * (g.kh - 1) / g.sh, mw = g.dw * (g.kw - 1) / g.sw;  // margins
  const int64_t Ux = (g.H - 1 + g.ph) / g.sh + 1, Vx = (g.W - 1 + g.pw) / g.sw + 1;  // dx plane extent
  // A run read past the end of a row (or plane) lands in the next one's zero margin, so the
  // planes need only be as large as both the padded dy and the dx planes.
  const int64_t U = std::max(Ux, g.OH + mh), V = std::max(Vx, g.OW + mw), P = U * V;
  const int64_t nb = std::max<int64_t>(1, kChunkColumns / P), chunks = (g.N + nb - 1) / nb, OP = g.OH * g.OW;

  // The weights of each phase as (Cg, taps) matrices: phase (a, b) takes taps (k, i, j) with
  // d*i % sh == a and d*j % sw == b, k slowest.
  const int64_t phases = g.sh * g.sw, ntaps = g.kh * g.kw;
  // Taps (i*kw + j) grouped by phase: phase ph's are tap_list[tap_start[ph], tap_start[ph + 1]).
  int64_t* tap_start = thread_buffer<int64_t>(0, 2 * phases + 1);
  int64_t* tap_fill = tap_start + phases + 1;
  int64_t* tap_list = thread_buffer<int64_t>(1, ntaps);
  auto phase_of = [&](int64_t i, int64_t j) { return (i * g.dh % g.sh) * g.sw + j * g.dw % g.sw; };
  std::fill(tap_start, tap_start + phases + 1, int64_t{0});
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j) ++tap_start[phase_of(i, j) + 1];
  for (int64_t ph = 0; ph < phases; ++ph) tap_start[ph + 1] += tap_start[ph];
  std::copy(tap_start, tap_start + phases, tap_fill);
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j) tap_list[tap_fill[phase_of(i, j)]++] = i * g.kw + j;
  // Phase (gi, ph)'s weights, a (Cg, Kg * taps) matrix, start at wp_at(gi, ph).
  T* wp = thread_buffer<T>(3, G * Cg * Kg * ntaps);
  auto wp_at = [&](int64_t gi, int64_t ph) { return wp + gi * Cg * Kg * ntaps + Cg * Kg * tap_start[ph]; };
  for (int64_t gi = 0; gi < G; ++gi)
    for (int64_t ph = 0; ph < phases; ++ph) {
      const int64_t* t = tap_list + tap_start[ph];
      const int64_t nt = tap_start[ph + 1] - tap_start[ph], Rp = Kg * nt;
      T* m = wp_at(gi, ph);
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t k = 0; k < Kg; ++k)
          for (int64_t e = 0; e < nt; ++e) m[c * Rp + k * nt + e] = w[((gi * Kg + k) * Cg + c) * g.kh * g.kw + t[e]];
    }

  parallel_for(0, chunks, 1, [&](int64_t ch0, int64_t ch1) {
    const int64_t stride_k = nb * P;
    T* planes = thread_buffer<T>(0, Kg * stride_k + P);
    T* out = thread_buffer<T>(1, Cg * stride_k);
    const T** rows = thread_row_table<T>(Kg * g.kh * g.kw);
    for (int64_t ch = ch0; ch < ch1; ++ch) {
      const int64_t n0 = ch * nb, n = std::min(nb, g.N - n0), cols = (n - 1) * P + Ux * V;
      for (int64_t gi = 0; gi < G; ++gi) {
        std::fill(planes, planes + Kg * stride_k + P, T(0));
        for (int64_t k = 0; k < Kg; ++k)
          for (int64_t i = 0; i < n; ++i) {
            const T* src = dy + ((n0 + i) * g.K + gi * Kg + k) * OP;
            T* dst = planes + k * stride_k + i * P + mh * V + mw;
            copy_block(dst, V, src, g.OW, g.OH, g.OW);
          }
        for (int64_t a = 0; a < g.sh; ++a)
          for (int64_t b = 0; b < g.sw; ++b) {
            const int64_t ph = a * g.sw + b;
            const int64_t* t = tap_list + tap_start[ph];
            const int64_t nt = tap_start[ph + 1] - tap_start[ph], Rp = Kg * nt;
            if (Rp > 0) {
              for (int64_t k = 0; k < Kg; ++k)
                for (int64_t e = 0; e < nt; ++e) {
                  const int64_t i = t[e] / g.kw, j = t[e] % g.kw;
                  rows[k * nt + e] = planes + k * stride_k + (mh - i * g.dh / g.sh) * V + (mw - j * g.dw / g.sw);
                }
              // out (Cg, cols) = w_phase (Cg, Rp) @ shifted dy runs (Rp, cols)
              gemm_cpu(Cg, cols, Rp, T(1), GemmOperand<T>::strided(wp_at(gi, ph), Rp, false),
                       GemmOperand<T>::row_table(rows), T(0), out, cols);
            }
            int64_t lo, hi;
            valid_range(g.W, Vx, g.sw, g.pw, b, lo, hi);
            for (int64_t i = 0; i < n; ++i)
              for (int64_t c = 0; c < Cg; ++c) {
                T* dxc = dx + ((n0 + i) * g.C + gi * Cg + c) * g.H * g.W;
                const T* o = out + c * cols + i * P;
                for (int64_t u = 0; u < Ux; ++u) {
                  const int64_t h = u * g.sh + a - g.ph;
                  if (h < 0 || h >= g.H) continue;
                  T* xr = dxc + h * g.W;
                  const int64_t off = b - g.pw;  // dx column v*sw + off
                  const T* r = o + u * V;
                  if (Rp == 0) {
                    for (int64_t v = lo; v < hi; ++v) xr[v * g.sw + off] = T(0);
                  } else {
                    for (int64_t v = lo; v < hi; ++v) xr[v * g.sw + off] = r[v];
                  }
                }
              }
          }
      }
    }
  });
  if (bias) add_channel_bias(dx, bias, g.N, g.C, g.H * g.W);
}

// dw (K, Cg, kh, kw) = sum over the batch of dy (x) im2col(x). Computed transposed, as
// (R, Kg) = im2col (R, cols) @ dy^T (cols, Kg) per group, with dy spread over the plane columns
// (zeros in the discarded ones).
template <typename T>
void conv2d_backward_weight_impl(const ConvGeom& g, const Tensor& xt, const Tensor& dyt, const Tensor& dwt) {
  if constexpr (std::is_same_v<T, float>) {
    if (winograd_conv_applies(g, ConvPass::Weight))
      return conv2d_backward_weight_winograd(g, xt.data_ptr<float>(), dyt.data_ptr<float>(), dwt.data_ptr<float>());
    if (stride2_conv_applies(g, ConvPass::Weight))
      return conv2d_backward_weight_stride2(g, xt.data_ptr<float>(), dyt.data_ptr<float>(), dwt.data_ptr<float>());
  }
  const int64_t G = g.groups, Cg = g.C / G, Kg = g.K / G, R = Cg * g.kh * g.kw;
  const int64_t wsize = g.K * R;
  const T* x = xt.data_ptr<T>();
  const T* dy = dyt.data_ptr<T>();
  T* dw = dwt.data_ptr<T>();
  if (g.N == 0) {
    std::fill(dw, dw + wsize, T(0));
    return;
  }
  const InputPlanes pl(g);
  const int64_t OP = g.OH * g.OW;
  // The batch is cut into S slices fixed by the shapes alone, each walked in chunks of pl.nb
  // images; slice s accumulates its (G, R, Kg) partial, and the partials are summed in order.
  const int64_t S = std::clamp<int64_t>(std::min(g.N, kPartialBudget / std::max<int64_t>(wsize, 1)), 1, kMaxSlices);
  T* partials = thread_buffer<T>(3, S * wsize);  // every slice's first GEMM overwrites its part
  parallel_for(0, S, 1, [&](int64_t s0, int64_t s1) {
    const int64_t stride_k = pl.nb * pl.P;
    T* planes = thread_buffer<T>(0, pl.size(g, Cg));
    T* dyw = thread_buffer<T>(1, Kg * stride_k);
    const T** rows = thread_row_table<T>(R);
    for (int64_t s = s0; s < s1; ++s) {
      T* acc = partials + s * wsize;
      const int64_t b0 = g.N * s / S, b1 = g.N * (s + 1) / S;
      for (int64_t n0 = b0; n0 < b1; n0 += pl.nb) {
        const int64_t n = std::min(pl.nb, b1 - n0), cols = pl.columns(g, n);
        for (int64_t gi = 0; gi < G; ++gi) {
          pl.fill(g, x, n0, n, gi * Cg, Cg, planes);
          pl.row_table(g, n, Cg, planes, rows);
          std::fill(dyw, dyw + Kg * cols, T(0));
          for (int64_t k = 0; k < Kg; ++k)
            for (int64_t i = 0; i < n; ++i) {
              const T* src = dy + ((n0 + i) * g.K + gi * Kg + k) * OP;
              T* d = dyw + k * cols + i * pl.P;
              copy_block(d, pl.V, src, g.OW, g.OH, g.OW);
            }
          // acc[group] (R, Kg) (+)= im2col (R, cols) @ dy^T (cols, Kg)
          gemm_cpu(R, Kg, cols, T(1), GemmOperand<T>::row_table(rows), GemmOperand<T>::strided(dyw, cols, true),
                   n0 == b0 ? T(0) : T(1), acc + gi * R * Kg, Kg);
        }
      }
    }
  });
  for (int64_t gi = 0; gi < G; ++gi)
    for (int64_t k = 0; k < Kg; ++k)
      for (int64_t r = 0; r < R; ++r) {
        const int64_t src = gi * R * Kg + r * Kg + k;
        T sum = partials[src];
        for (int64_t s = 1; s < S; ++s) sum += partials[s * wsize + src];
        dw[(gi * Kg + k) * R + r] = sum;
      }
}


bool is_half(DType t) { return t == DType::f16 || t == DType::bf16; }

// f16/bf16 convolutions: the operands widened exactly to float32, the float32 kernel (float32
// accumulation of exact products), and the result rounded once into out.
template <typename Impl>
void via_f32(const Tensor& a, const Tensor& b, const Tensor& out, Impl impl) {
  auto widened = [](const Tensor& t) {
    Tensor f = empty(t.shape(), TensorOptions(DType::f32));
    copy_cpu(t, f);
    return f;
  };
  Tensor o = empty(out.shape(), TensorOptions(DType::f32));
  impl(widened(a), widened(b), o);
  copy_cpu(o, out);
}

}  // namespace

void conv2d_cpu(const ConvGeom& g, const Tensor& x, const Tensor& w, const Tensor& y) {
  if (is_half(x.dtype()))
    return via_f32(x, w, y, [&](const Tensor& a, const Tensor& b, const Tensor& o) { conv2d_impl<float>(g, a, b, o); });
  dispatch_floating(x.dtype(), "conv2d", [&](auto t) { conv2d_impl<decltype(t)>(g, x, w, y); });
}

void conv2d_backward_input_cpu(const ConvGeom& g, const Tensor& dy, const Tensor& w, const Tensor& dx) {
  if (is_half(dy.dtype()))
    return via_f32(dy, w, dx, [&](const Tensor& a, const Tensor& b, const Tensor& o) {
      conv2d_backward_input_impl<float>(g, a, b, o);
    });
  dispatch_floating(dy.dtype(), "conv2d", [&](auto t) { conv2d_backward_input_impl<decltype(t)>(g, dy, w, dx); });
}

void conv2d_bias_cpu(const ConvGeom& g, const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y) {
  dispatch_floating(x.dtype(), "conv2d", [&](auto t) {
    using T = decltype(t);
    conv2d_impl<T>(g, x, w, y, bias.data_ptr<T>());
  });
}

void conv2d_backward_input_bias_cpu(const ConvGeom& g, const Tensor& dy, const Tensor& w, const Tensor& bias,
                                    const Tensor& dx) {
  dispatch_floating(dy.dtype(), "conv2d", [&](auto t) {
    using T = decltype(t);
    conv2d_backward_input_impl<T>(g, dy, w, dx, bias.data_ptr<T>());
  });
}

void conv2d_backward_weight_cpu(const ConvGeom& g, const Tensor& x, const Tensor& dy, const Tensor& dw) {
  if (is_half(x.dtype()))
    return via_f32(x, dy, dw, [&](const Tensor& a, const Tensor& b, const Tensor& o) {
      conv2d_backward_weight_impl<float>(g, a, b, o);
    });
  dispatch_floating(x.dtype(), "conv2d", [&](auto t) { conv2d_backward_weight_impl<decltype(t)>(g, x, dy, dw); });
}

}  // namespace ember::kernels
