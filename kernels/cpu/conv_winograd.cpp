// Winograd F(m x m, 3 x 3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks") for float32 3x3 stride-1 convolutions with many channels. The output is cut into
// m x m tiles; each tile's (m+2) x (m+2) input patch d and each filter g are transformed
// (V = B^T d B, U = G g G^T) and the tile's output is A^T (sum over c of U_kc .* V_c) A. Batched
// over tiles, the sum over channels at each of the (m+2)^2 transform points is one
// (K x C) @ (C x tiles) GEMM. The input gradient is the same forward convolution of dy with the
// flipped, transposed filters and padding 2 - p. The weight gradient is the exact gradient of the
// transformed forward: dU = sum over tiles of (A dY A^T) .* V, one (K x tiles) @ (tiles x C) GEMM
// per point, then dw = G^T dU G.
//
// Tiles are walked in chunks of "bands" (the row of tiles of one image at one tile row) fixed by
// the shapes: forward chunks write disjoint outputs, and the weight gradient's GEMMs (one per
// transform point, each on one thread) accumulate chunk after chunk in order, so results do not
// depend on the thread count. Transforms work on one channel of a chunk at a time with its tiles
// side by side as vector lanes, compiled for the widest ISA.
// Rounding differs from the direct kernel (the transforms scale values by up to 8 and 1/24): the
// error measured against float64, max |error| / max |value|, is 2e-6 to 7e-6 at 16-48 channels and
// 1e-5 to 1.5e-5 at 64-256 channels for y, dx and dw, where the direct float32 kernel gives ~3e-7.
#include "kernels/cpu/conv_winograd.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa.h"
#include "ember/runtime/parallel.h"

namespace ember::kernels {
namespace {

// Transform matrices of F(m x m, 3 x 3). Only m = 4 (points 0, +-1, +-2, as in Lavin & Gray) is
// defined: F(2x2, 3x3) is ~20 times more accurate but measured 20% slower at 256 channels on 8x8
// and slower at 64 and 128 channels too; the kernels below work for either.
template <int M>
struct Wino;

template <>
struct Wino<4> {
  static constexpr int A = 6;
  static constexpr float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                     {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr float G[6][3] = {{1.0f / 4, 0, 0},
                                    {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                                    {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                                    {1.0f / 24, 1.0f / 12, 1.0f / 6},
                                    {1.0f / 24, -1.0f / 12, 1.0f / 6},
                                    {0, 0, 1}};
  static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

// A grow-only per-thread buffer (no allocation once grown); `slot` tells apart the buffers used at
// the same time. Slots 0-2 are used inside parallel regions, 3-5 by the calling thread.
float* thread_buffer(int slot, int64_t n) {
  thread_local std::vector<float> buffers[6];
  std::vector<float>& b = buffers[slot];
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

// out[i][l] = sum_j coef(i, j) * in[j][l] for l < n: a constant R x C matrix applied to C rows of
// n lanes. The matrix loops unroll, so zero coefficients drop out at compile time and +-1 become
// additions; each lane's outputs are computed in registers and stored once. Rows of out never
// alias rows of in.
template <int R, int C, typename Coef>
[[gnu::always_inline]] inline void apply(Coef coef, const float* const* in, float* const* out, int64_t n) {
  const float* p[C];
  float* o[R];
  for (int j = 0; j < C; ++j) p[j] = in[j];
  for (int i = 0; i < R; ++i) o[i] = out[i];
#pragma GCC ivdep
  for (int64_t l = 0; l < n; ++l) {
    float v[C];
#pragma GCC unroll 16
    for (int j = 0; j < C; ++j) v[j] = p[j][l];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      float acc = 0.0f;
      bool first = true;
#pragma GCC unroll 16
      for (int j = 0; j < C; ++j) {
        const float k = coef(i, j);
        if (k == 0.0f) continue;
        const float t = k == 1.0f ? v[j] : k == -1.0f ? -v[j] : k * v[j];
        acc = first ? t : acc + t;
        first = false;
      }
      o[i][l] = acc;
    }
  }
}

// One forward convolution as the kernels see it (the input gradient is one too).
struct Shape {
  int64_t N, C, H, W;  // input
  int64_t K, OH, OW;   // output
  int64_t ph, pw;      // padding
};

// The bands of a convolution's output tiles, cut into chunks of per_chunk bands.
template <int M>
struct Tiling {
  int64_t tH, tW, bands, per_chunk, chunks;
  // About target_tiles tiles per chunk (at least one band), the chunks evened out. The chunking
  // depends on the shapes only.
  Tiling(const Shape& s, int64_t target_tiles)
      : tH((s.OH + M - 1) / M), tW((s.OW + M - 1) / M), bands(s.N * tH) {
    per_chunk = std::clamp<int64_t>(target_tiles / tW, 1, bands);
    chunks = (bands + per_chunk - 1) / per_chunk;
    if (chunks % 2 == 1 && chunks < bands) ++chunks;  // an even count keeps two threads equally busy
    per_chunk = (bands + chunks - 1) / chunks;
    chunks = (bands + per_chunk - 1) / per_chunk;
  }
  int64_t capacity() const { return per_chunk * tW; }  // tiles of the largest chunk
  int64_t staging() const { return 2 * Wino<M>::A * Wino<M>::A * capacity(); }
};

// Transforms work on one channel of a whole chunk at a time, the chunk's tiles side by side as
// vector lanes: a tile's patch is first gathered into staging rows st[r][j][t] (the patch's (r, j)
// value of tile t), so both passes of B^T d B (and of the output transforms) are row operations
// over tc contiguous lanes, whatever the image width.

// V[xi][c0..c1][t] (row stride tc) = B^T d B of channel c's (m+2) x (m+2) input patches for the
// tiles of bands [b0, b0 + tc / tW).
template <int M>
[[gnu::always_inline]] inline void input_transform(const Shape& s, const Tiling<M>& tl, const float* x, int64_t b0,
                                                   int64_t tc, int64_t c0, int64_t c1, float* V, float* st) {
  using Wn = Wino<M>;
  constexpr int A = Wn::A;
  const int64_t tW = tl.tW, nb = tc / tW;
  float* D = st;               // D[r][j][t]: the patches
  float* E = st + A * A * tc;  // E[i][j][t] = sum over r of BT[i][r] * D[r][j][t]
  auto bt = [](int i, int j) { return Wn::BT[i][j]; };
  const float* drows[A];
  float* erows[A];
  for (int r = 0; r < A; ++r) {
    drows[r] = D + r * A * tc;
    erows[r] = E + r * A * tc;
  }
  // Tiles [0, full) read columns M*tw + j - pw inside the image for every j; the rest are checked.
  const int64_t lo_full = (s.pw + M - 1) / M;
  const int64_t hi_full = std::max<int64_t>(lo_full, s.W + s.pw - A >= 0 ? (s.W + s.pw - A) / M + 1 : 0);
  const int64_t full_lo = std::min(lo_full, tW), full_hi = std::min(hi_full, tW);
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t bi = 0; bi < nb; ++bi) {
      const int64_t b = b0 + bi, n = b / tl.tH, th = b % tl.tH;
      const float* xc = x + (n * s.C + c) * s.H * s.W;
      for (int r = 0; r < A; ++r) {
        const int64_t row = M * th + r - s.ph;
        float* d = D + r * A * tc + bi * tW;
        if (row < 0 || row >= s.H) {
          for (int j = 0; j < A; ++j) std::fill(d + j * tc, d + j * tc + tW, 0.0f);
          continue;
        }
        const float* xr = xc + row * s.W - s.pw;
        auto edge = [&](int64_t tw) {
          for (int j = 0; j < A; ++j) {
            const int64_t col = M * tw + j - s.pw;
            d[j * tc + tw] = col >= 0 && col < s.W ? xr[M * tw + j] : 0.0f;
          }
        };
        for (int64_t tw = 0; tw < full_lo; ++tw) edge(tw);
        for (int j = 0; j < A; ++j) {
          float* dj = d + j * tc;
          for (int64_t tw = full_lo; tw < full_hi; ++tw) dj[tw] = xr[M * tw + j];
        }
        for (int64_t tw = std::max(full_lo, full_hi); tw < tW; ++tw) edge(tw);
      }
    }
    apply<A, A>(bt, drows, erows, A * tc);  // E = B^T D
    for (int i = 0; i < A; ++i) {
      const float* in[A];
      float* out[A];
      for (int j = 0; j < A; ++j) in[j] = E + (i * A + j) * tc;
      for (int j = 0; j < A; ++j) out[j] = V + ((i * A + j) * s.C + c) * tc;
      apply<A, A>(bt, in, out, tc);  // V = E B
    }
  }
}

// y (N, K, OH, OW) for the tiles of bands [b0, b0 + tc / tW) from the GEMM results Mo[xi][k][t]
// (row stride tc): A^T Mo A, channels k0..k1.
template <int M>
[[gnu::always_inline]] inline void output_transform(const Shape& s, const Tiling<M>& tl, const float* Mo, int64_t b0,
                                                    int64_t tc, int64_t k0, int64_t k1, float* y, float* st) {
  using Wn = Wino<M>;
  constexpr int A = Wn::A;
  const int64_t tW = tl.tW, nb = tc / tW;
  float* F = st;               // F[i][q][t] = sum over j of AT[q][j] * Mo[i][j][t]
  float* O = st + A * M * tc;  // O[r][q][t]: the tiles' outputs
  auto at = [](int i, int j) { return Wn::AT[i][j]; };
  const float* frows[A];
  float* orows[M];
  for (int i = 0; i < A; ++i) frows[i] = F + i * M * tc;
  for (int r = 0; r < M; ++r) orows[r] = O + r * M * tc;
  const int64_t full = s.OW / M;  // tiles whose M columns all lie inside the output
  for (int64_t k = k0; k < k1; ++k) {
    for (int i = 0; i < A; ++i) {
      const float* in[A];
      float* out[M];
      for (int j = 0; j < A; ++j) in[j] = Mo + ((i * A + j) * s.K + k) * tc;
      for (int q = 0; q < M; ++q) out[q] = F + (i * M + q) * tc;
      apply<M, A>(at, in, out, tc);
    }
    apply<M, A>(at, frows, orows, M * tc);
    for (int64_t bi = 0; bi < nb; ++bi) {
      const int64_t b = b0 + bi, n = b / tl.tH, th = b % tl.tH;
      float* yk = y + (n * s.K + k) * s.OH * s.OW;
      for (int r = 0; r < M && M * th + r < s.OH; ++r) {
        float* yr = yk + (M * th + r) * s.OW;
        const float* o = O + r * M * tc + bi * tW;
        for (int64_t tw = 0; tw < full; ++tw)
          for (int q = 0; q < M; ++q) yr[M * tw + q] = o[q * tc + tw];
        for (int q = 0; M * full + q < s.OW; ++q) yr[M * full + q] = o[q * tc + full];
      }
    }
  }
}

// dM[xi][k][t] (row stride tc) = A dY A^T of dy's m x m tiles (zeros past the output's edge) for
// the tiles of bands [b0, b0 + tc / tW), channels k0..k1.
template <int M>
[[gnu::always_inline]] inline void grad_output_transform(const Shape& s, const Tiling<M>& tl, const float* dy,
                                                         int64_t b0, int64_t tc, int64_t k0, int64_t k1, float* dM,
                                                         float* st) {
  using Wn = Wino<M>;
  constexpr int A = Wn::A;
  const int64_t tW = tl.tW, nb = tc / tW;
  float* Y = st;               // Y[r][q][t]: the tiles of dy
  float* P = st + M * M * tc;  // P[i][q][t] = sum over r of AT[r][i] * Y[r][q][t]
  auto a = [](int i, int j) { return Wn::AT[j][i]; };
  const float* yrows[M];
  float* prows[A];
  for (int r = 0; r < M; ++r) yrows[r] = Y + r * M * tc;
  for (int i = 0; i < A; ++i) prows[i] = P + i * M * tc;
  const int64_t full = s.OW / M;
  for (int64_t k = k0; k < k1; ++k) {
    for (int64_t bi = 0; bi < nb; ++bi) {
      const int64_t b = b0 + bi, n = b / tl.tH, th = b % tl.tH;
      const float* dyk = dy + (n * s.K + k) * s.OH * s.OW;
      for (int r = 0; r < M; ++r) {
        float* yr = Y + r * M * tc + bi * tW;
        if (M * th + r >= s.OH) {
          for (int q = 0; q < M; ++q) std::fill(yr + q * tc, yr + q * tc + tW, 0.0f);
          continue;
        }
        const float* src = dyk + (M * th + r) * s.OW;
        for (int64_t tw = 0; tw < full; ++tw)
          for (int q = 0; q < M; ++q) yr[q * tc + tw] = src[M * tw + q];
        for (int q = 0; full < tW && q < M; ++q) yr[q * tc + full] = M * full + q < s.OW ? src[M * full + q] : 0.0f;
      }
    }
    apply<A, M>(a, yrows, prows, M * tc);
    for (int i = 0; i < A; ++i) {
      const float* in[M];
      float* out[A];
      for (int q = 0; q < M; ++q) in[q] = P + (i * M + q) * tc;
      for (int j = 0; j < A; ++j) out[j] = dM + ((i * A + j) * s.K + k) * tc;
      apply<A, M>(a, in, out, tc);
    }
  }
}

// U[xi][o][i] = G g G^T for the O x I filters g(o, i)(r, c) = w[o*so + i*si + r*sr + c*sc]. For each
// o, the I filters are staged as rows of I lanes, so the products with G run across i and each
// point's row U[xi][o][.] is written whole.
template <int M>
void transform_filters(int64_t O, int64_t I, const float* w, int64_t so, int64_t si, int64_t sr, int64_t sc,
                       float* U) {
  using Wn = Wino<M>;
  constexpr int A = Wn::A;
  parallel_for(0, O, std::max<int64_t>(1, 4096 / std::max<int64_t>(I, 1)), [&](int64_t o0, int64_t o1) {
    float* st = thread_buffer(2, (9 + 3 * A) * I);
    float* gs = st;          // gs[r][c][i]
    float* t = st + 9 * I;   // t[a][c][i] = sum over r of G[a][r] * gs[r][c][i]
    run_best_isa([&] EMBER_INLINE_LAMBDA {
      auto gm = [](int a, int r) { return Wn::G[a][r]; };
      const float* grows[3] = {gs, gs + 3 * I, gs + 6 * I};
      float* trows[A];
      for (int a = 0; a < A; ++a) trows[a] = t + a * 3 * I;
      for (int64_t o = o0; o < o1; ++o) {
        for (int r = 0; r < 3; ++r)
          for (int c = 0; c < 3; ++c) {
            const float* f = w + o * so + r * sr + c * sc;
            float* d = gs + (r * 3 + c) * I;
            for (int64_t i = 0; i < I; ++i) d[i] = f[i * si];
          }
        apply<A, 3>(gm, grows, trows, 3 * I);
        for (int a = 0; a < A; ++a) {
          const float* in[3] = {t + a * 3 * I, t + a * 3 * I + I, t + a * 3 * I + 2 * I};
          float* out[A];
          for (int b = 0; b < A; ++b) out[b] = U + ((a * A + b) * O + o) * I;
          apply<A, 3>(gm, in, out, I);
        }
      }
    });
  });
}

// Tiles per chunk: the chunk's transformed inputs and GEMM outputs (A^2 (C + K) floats a tile)
// within about 4 MiB (measured: larger GEMMs win over L2-sized chunks), at least one GEMM panel.
template <int M>
int64_t forward_chunk_tiles(const Shape& s) {
  constexpr int64_t A = Wino<M>::A;
  return std::max<int64_t>(32, (int64_t{1} << 20) / (A * A * (s.C + s.K)));
}

// y = conv(x, filters transformed into U), one thread per chunk of bands.
template <int M>
void forward(const Shape& s, const float* x, const float* U, float* y) {
  constexpr int64_t A = Wino<M>::A, A2 = A * A;
  const Tiling<M> tl(s, forward_chunk_tiles<M>(s));
  parallel_for(0, tl.chunks, 1, [&](int64_t ch0, int64_t ch1) {
    float* V = thread_buffer(0, A2 * s.C * tl.capacity());
    float* Mo = thread_buffer(1, A2 * s.K * tl.capacity());
    float* st = thread_buffer(2, tl.staging());
    for (int64_t ch = ch0; ch < ch1; ++ch) {
      const int64_t b0 = ch * tl.per_chunk, b1 = std::min(tl.bands, b0 + tl.per_chunk), tc = (b1 - b0) * tl.tW;
      run_best_isa([&] EMBER_INLINE_LAMBDA { input_transform<M>(s, tl, x, b0, tc, 0, s.C, V, st); });
      for (int64_t xi = 0; xi < A2; ++xi)  // Mo[xi] (K, tc) = U[xi] (K, C) @ V[xi] (C, tc)
        gemm_cpu(s.K, tc, s.C, 1.0f, GemmOperand<float>::strided(U + xi * s.K * s.C, s.C, false),
                 GemmOperand<float>::strided(V + xi * s.C * tc, tc, false), 0.0f, Mo + xi * s.K * tc, tc);
      run_best_isa([&] EMBER_INLINE_LAMBDA { output_transform<M>(s, tl, Mo, b0, tc, 0, s.K, y, st); });
    }
  });
}

template <int M>
void conv_forward(const ConvGeom& g, const float* x, const float* w, float* y) {
  constexpr int64_t A = Wino<M>::A;
  float* U = thread_buffer(3, A * A * g.K * g.C);
  transform_filters<M>(g.K, g.C, w, g.C * 9, 9, 3, 1, U);
  forward<M>({g.N, g.C, g.H, g.W, g.K, g.OH, g.OW, g.ph, g.pw}, x, U, y);
}

// dx is the stride-1 convolution of dy, padded by 2 - p, with the filters flipped and transposed:
// filter (c, k) at (r, s) is w[k][c][2 - r][2 - s].
template <int M>
void conv_input_grad(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  constexpr int64_t A = Wino<M>::A;
  float* U = thread_buffer(3, A * A * g.K * g.C);
  transform_filters<M>(g.C, g.K, w + 8, 9, g.C * 9, -3, -1, U);
  forward<M>({g.N, g.K, g.OH, g.OW, g.C, g.H, g.W, 2 - g.ph, 2 - g.pw}, dy, U, dx);
}

template <int M>
void conv_weight_grad(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  using Wn = Wino<M>;
  constexpr int64_t A = Wn::A, A2 = A * A;
  const Shape s{g.N, g.C, g.H, g.W, g.K, g.OH, g.OW, g.ph, g.pw};
  // Larger chunks than the forward's: they are the GEMMs' inner dimension, and shared by all
  // threads. About 4 MiB of transformed x and dy.
  const Tiling<M> tl(s, std::max<int64_t>(64, (int64_t{1} << 20) / (A2 * (s.C + s.K))));
  float* V = thread_buffer(3, A2 * s.C * tl.capacity());
  float* dM = thread_buffer(4, A2 * s.K * tl.capacity());
  float* dU = thread_buffer(5, A2 * s.K * s.C);
  for (int64_t ch = 0; ch < tl.chunks; ++ch) {
    const int64_t b0 = ch * tl.per_chunk, b1 = std::min(tl.bands, b0 + tl.per_chunk), tc = (b1 - b0) * tl.tW;
    // Channels of x, then channels of dy.
    parallel_for(0, s.C + s.K, 1, [&](int64_t c0, int64_t c1) {
      float* st = thread_buffer(2, tl.staging());
      run_best_isa([&] EMBER_INLINE_LAMBDA {
        if (c0 < s.C) input_transform<M>(s, tl, x, b0, tc, c0, std::min(c1, s.C), V, st);
        if (c1 > s.C) grad_output_transform<M>(s, tl, dy, b0, tc, std::max(c0, s.C) - s.C, c1 - s.C, dM, st);
      });
    });
    // dU[xi] (K, C) (+)= dM[xi] (K, tc) @ V[xi]^T (tc, C), one thread per point
    parallel_for(0, A2, 1, [&](int64_t x0, int64_t x1) {
      for (int64_t xi = x0; xi < x1; ++xi)
        gemm_cpu(s.K, s.C, tc, 1.0f, GemmOperand<float>::strided(dM + xi * s.K * tc, tc, false),
                 GemmOperand<float>::strided(V + xi * s.C * tc, tc, true), ch == 0 ? 0.0f : 1.0f,
                 dU + xi * s.K * s.C, s.C);
    });
  }
  // dw (K, C, 3, 3) = G^T dU G, across c as vector lanes.
  parallel_for(0, g.K, std::max<int64_t>(1, 4096 / g.C), [&](int64_t k0, int64_t k1) {
    float* st = thread_buffer(2, (3 * A + 9) * g.C);
    float* T = st;                // T[a][j][c] = sum over b of dU[a][b][k][c] * G[b][j]
    float* R = st + 3 * A * g.C;  // R[i][j][c] = sum over a of G[a][i] * T[a][j][c]
    run_best_isa([&] EMBER_INLINE_LAMBDA {
      auto gt = [](int i, int a) { return Wn::G[a][i]; };
      const float* trows[A];
      for (int a = 0; a < A; ++a) trows[a] = T + a * 3 * g.C;
      float* rrows[3] = {R, R + 3 * g.C, R + 6 * g.C};
      for (int64_t k = k0; k < k1; ++k) {
        for (int a = 0; a < A; ++a) {
          const float* in[A];
          for (int b = 0; b < A; ++b) in[b] = dU + ((a * A + b) * g.K + k) * g.C;
          float* out[3] = {T + a * 3 * g.C, T + a * 3 * g.C + g.C, T + a * 3 * g.C + 2 * g.C};
          apply<3, A>(gt, in, out, g.C);
        }
        apply<3, A>(gt, trows, rrows, 3 * g.C);
        float* f = dw + k * g.C * 9;
        for (int64_t c = 0; c < g.C; ++c)
          for (int e = 0; e < 9; ++e) f[c * 9 + e] = R[e * g.C + c];
      }
    });
  });
}

}  // namespace

bool winograd_conv_applies(const ConvGeom& g, ConvPass pass) {
  (void)pass;
  if (!conv_winograd_enabled().load(std::memory_order_relaxed)) return false;
  if (g.kh != 3 || g.kw != 3 || g.sh != 1 || g.sw != 1 || g.dh != 1 || g.dw != 1 || g.groups != 1) return false;
  if (g.ph < 0 || g.ph > 2 || g.pw < 0 || g.pw > 2 || g.OH < 1 || g.OW < 1 || g.N < 1) return false;
  // Few channels: the transforms cost more than the GEMMs save (measured: even at 8 channels,
  // ahead from 16).
  return std::min(g.C, g.K) >= 16;
}

void conv2d_winograd(const ConvGeom& g, const float* x, const float* w, float* y) {
  conv_forward<4>(g, x, w, y);
}

void conv2d_backward_input_winograd(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  conv_input_grad<4>(g, dy, w, dx);
}

void conv2d_backward_weight_winograd(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  conv_weight_grad<4>(g, x, dy, dw);
}

}  // namespace ember::kernels
