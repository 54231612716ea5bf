// Direct float32 kernels for stride-2 convolutions of narrow images (an output row, or a phase row
// of dx, at most 16 wide: the small layers of image autoencoders): forward, input gradient and
// weight gradient. conv.cpp runs these as GEMMs over phase planes whose rows are padded to the
// widest shift, with the padding columns computed and thrown away, the operands packed, and the
// results copied in and out a short row at a time. Here the forward keeps the phase planes (built
// with two permutes per input row) and each vector holds one output row, stored straight into y;
// the input gradient reads rows of zero-margined dy planes, computes dx's four phases of an image
// into a scratch block and writes each dx row with one permute that interleaves its two phases; the
// weight gradient holds 16 or 32 output channels per vector against dy transposed in 16 x 16
// blocks, and skips the padding columns.
//
// Each output is the FMA chain of conv.cpp's GEMM: the rows of its implicit im2col matrix (for the
// weight gradient, its columns: the same slices and chunks of the batch) in the same order, from
// zero, restarted every kGemmKC and the blocks added in order, with the padding's zeros included
// (the weight gradient's skipped columns, where dy is zero, add +0 to sums that are never -0). So
// the results are the GEMM path's bits (on any CPU where that path runs instead; for the weight
// gradient, given finite x), and work is split over images or fixed slices, never over a sum: they
// do not depend on the thread count. AVX-512 only (the lanes past a row's end are masked); other
// CPUs take the GEMMs.
#include "kernels/cpu/conv_stride2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa.h"
#include "ember/runtime/parallel.h"

#if EMBER_HAVE_ISA_VARIANTS
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 on the _mm*_undefined_* of intrinsics
#endif

namespace ember::kernels {
namespace {

// A grow-only per-thread buffer (no allocation once grown); `slot` tells apart the buffers used at
// the same time. Only the calling thread takes them, and hands slices to the parallel parts (see
// for_parts).
template <typename T>
T* thread_buffer(int slot, int64_t n) {
  thread_local std::vector<T> buffers[4];
  std::vector<T>& b = buffers[slot];
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

// for_parts splits [0, n) into count_parts(n, grain) parts (at most one per thread, each of at
// least grain items unless n is smaller) and runs fn(part, begin, end) for each in parallel. A
// part's scratch is its slice of buffers the calling thread owns: the backward pass hands chunks
// to whichever thread claims them first, so per-thread buffers could first be grown (allocated) by
// a thread in a step long after the first ones.
int64_t count_parts(int64_t n, int64_t grain) {
  return std::clamp<int64_t>(n / std::max<int64_t>(grain, 1), 1, get_num_threads());
}

template <typename Fn>
void for_parts(int64_t n, int64_t grain, Fn&& fn) {
  const int64_t parts = count_parts(n, grain);
  parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) fn(p, n * p / parts, n * (p + 1) / parts);
  });
}

// Lanes of the vector holding one row: 8 where the row (with its shifts) fits, else 16.
int row_lanes(int64_t width) { return width <= 8 ? 8 : 16; }

// Rows per tile (at most 8, so that 2 x 8 accumulators, 8 inputs and a weight fit in registers)
// and the number of tiles covering `rows` rows; the last tile is moved back to end at the last row
// (overlapping rows are computed twice, to the same bits).
struct RowTiles {
  int64_t count, rows;
  explicit RowTiles(int64_t n) : count((n + 7) / 8), rows(count > 0 ? (n + count - 1) / count : 1) {}
  int64_t start(int64_t t, int64_t n) const { return std::min(t * rows, n - rows); }
};

#if EMBER_HAVE_ISA_VARIANTS
#define EMBER_S2_OP [[gnu::always_inline]] EMBER_TARGET_AVX512 static inline

template <int L>
struct Lanes;

template <>
struct Lanes<8> {
  using V = __m256;
  EMBER_S2_OP V zero() { return _mm256_setzero_ps(); }
  EMBER_S2_OP V load(const float* p) { return _mm256_loadu_ps(p); }
  EMBER_S2_OP V bcast(const float* p) { return _mm256_broadcast_ss(p); }
  EMBER_S2_OP V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  EMBER_S2_OP V add(V a, V b) { return _mm256_add_ps(a, b); }
  EMBER_S2_OP V load_masked(uint32_t m, const float* p) { return _mm256_maskz_loadu_ps(static_cast<__mmask8>(m), p); }
  EMBER_S2_OP void store_masked(float* p, uint32_t m, V v) { _mm256_mask_storeu_ps(p, static_cast<__mmask8>(m), v); }
  // The first 8 lanes of a 16-lane vector, and a row as the first lanes of one.
  EMBER_S2_OP void store_low(float* p, __m512 v) { _mm256_storeu_ps(p, _mm512_castps512_ps256(v)); }
  EMBER_S2_OP __m512 widen(const float* p) { return _mm512_castps256_ps512(_mm256_loadu_ps(p)); }
};

template <>
struct Lanes<16> {
  using V = __m512;
  EMBER_S2_OP V zero() { return _mm512_setzero_ps(); }
  EMBER_S2_OP V load(const float* p) { return _mm512_loadu_ps(p); }
  EMBER_S2_OP V bcast(const float* p) { return _mm512_set1_ps(*p); }
  EMBER_S2_OP V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  EMBER_S2_OP V add(V a, V b) { return _mm512_add_ps(a, b); }
  EMBER_S2_OP V load_masked(uint32_t m, const float* p) { return _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), p); }
  EMBER_S2_OP void store_masked(float* p, uint32_t m, V v) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>(m), v); }
  EMBER_S2_OP void store_low(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
  EMBER_S2_OP __m512 widen(const float* p) { return _mm512_loadu_ps(p); }
};

// out[m] rows q < NR (row stride ldo, the lanes in mask) = sum over r < R of w[r*ldw + m] times
// the L values at base + off[r] + q*L: per lane one FMA chain in r, restarted every kGemmKC rows
// with the blocks added in order (the GEMM's sums), then bias[m] added when bias is set. out[m] ==
// nullptr: row m is computed, not stored (the padding of an odd channel count).
template <int L, int MR, int NR>
EMBER_TARGET_AVX512 void tile(const float* base, const int64_t* off, int64_t R, const float* w, int64_t ldw,
                              float* const* out, int64_t ldo, uint32_t mask, const float* bias) {
  using S = Lanes<L>;
  using V = typename S::V;
  for (int64_t r0 = 0; r0 < R; r0 += kGemmKC) {
    const int64_t r1 = std::min(R, r0 + kGemmKC);
    V acc[MR][NR];
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
      for (int q = 0; q < NR; ++q) acc[m][q] = S::zero();
    for (int64_t r = r0; r < r1; ++r) {
      const float* p = base + off[r];
      const float* wr = w + r * ldw;
      V xv[NR];
#pragma GCC unroll 8
      for (int q = 0; q < NR; ++q) xv[q] = S::load(p + q * L);
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) {
        const V wv = S::bcast(wr + m);
#pragma GCC unroll 8
        for (int q = 0; q < NR; ++q) acc[m][q] = S::fma(wv, xv[q], acc[m][q]);
      }
    }
    const bool last = r1 == R;
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      if (!out[m]) continue;
#pragma GCC unroll 8
      for (int q = 0; q < NR; ++q) {
        float* o = out[m] + q * ldo;
        V v = r0 == 0 ? acc[m][q] : S::add(acc[m][q], S::load_masked(mask, o));
        if (bias && last) v = S::add(v, S::bcast(bias + m));
        S::store_masked(o, mask, v);
      }
    }
  }
}

using TileFn = void (*)(const float*, const int64_t*, int64_t, const float*, int64_t, float* const*, int64_t, uint32_t,
                        const float*);

template <int L, int MR>
TileFn pick_rows(int64_t nr) {
  switch (nr) {
    case 1: return tile<L, MR, 1>;
    case 2: return tile<L, MR, 2>;
    case 3: return tile<L, MR, 3>;
    case 4: return tile<L, MR, 4>;
    case 5: return tile<L, MR, 5>;
    case 6: return tile<L, MR, 6>;
    case 7: return tile<L, MR, 7>;
    default: return tile<L, MR, 8>;
  }
}

// The tile for L lanes, MR (1 or 2) channels and nr (1-8) rows.
TileFn pick_tile(int L, int MR, int64_t nr) {
  if (L == 8) return MR == 1 ? pick_rows<8, 1>(nr) : pick_rows<8, 2>(nr);
  return MR == 1 ? pick_rows<16, 1>(nr) : pick_rows<16, 2>(nr);
}

// Bits [lo, hi) of a 32-bit mask (both clamped to [0, 32]).
uint32_t bit_range(int64_t lo, int64_t hi) {
  lo = std::clamp<int64_t>(lo, 0, 32);
  hi = std::clamp<int64_t>(hi, lo, 32);
  const uint64_t m = ((uint64_t{1} << hi) - 1) & ~((uint64_t{1} << lo) - 1);
  return static_cast<uint32_t>(m);
}

// dyT (OP, Kp) = the transpose of dy (Kg, OP), zero in columns [Kg, Kp) (Kp a multiple of 16):
// 16 x 16 blocks, each transposed in registers (pairs, then quads, then 128-bit lanes twice).
EMBER_TARGET_AVX512 void transpose_dy(const float* dy, int64_t Kg, int64_t OP, int64_t Kp, float* dyT) {
  for (int64_t k0 = 0; k0 < Kp; k0 += 16)
    for (int64_t q0 = 0; q0 < OP; q0 += 16) {
      const int64_t qn = std::min<int64_t>(16, OP - q0);
      const __mmask16 mq = static_cast<__mmask16>(bit_range(0, qn));
      __m512 r[16], t[16];
      for (int m = 0; m < 16; ++m)
        r[m] = k0 + m < Kg ? _mm512_maskz_loadu_ps(mq, dy + (k0 + m) * OP + q0) : _mm512_setzero_ps();
      for (int m = 0; m < 16; m += 2) {
        t[m] = _mm512_unpacklo_ps(r[m], r[m + 1]);
        t[m + 1] = _mm512_unpackhi_ps(r[m], r[m + 1]);
      }
      for (int m = 0; m < 16; m += 4) {
        r[m] = _mm512_shuffle_ps(t[m], t[m + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[m + 1] = _mm512_shuffle_ps(t[m], t[m + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[m + 2] = _mm512_shuffle_ps(t[m + 1], t[m + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[m + 3] = _mm512_shuffle_ps(t[m + 1], t[m + 3], _MM_SHUFFLE(3, 2, 3, 2));
      }
      for (int m = 0; m < 4; ++m) {
        t[m] = _mm512_shuffle_f32x4(r[m], r[m + 4], 0x88);
        t[m + 4] = _mm512_shuffle_f32x4(r[m], r[m + 4], 0xdd);
        t[m + 8] = _mm512_shuffle_f32x4(r[m + 8], r[m + 12], 0x88);
        t[m + 12] = _mm512_shuffle_f32x4(r[m + 8], r[m + 12], 0xdd);
      }
      for (int m = 0; m < 8; ++m) {
        r[m] = _mm512_shuffle_f32x4(t[m], t[m + 8], 0x88);
        r[m + 8] = _mm512_shuffle_f32x4(t[m], t[m + 8], 0xdd);
      }
      for (int64_t j = 0; j < qn; ++j) _mm512_storeu_ps(dyT + (q0 + j) * Kp + k0, r[j]);
    }
}

// The phase planes of one image's channels [c0, c0 + Cg) for the forward pass: plane (a, b, c)
// (at ((a*2 + b)*Cg + c)*P) row u lane v holds padded x at (2u + a, 2v + b), zero outside x. Each
// input row is loaded as padded columns 0-31 (two masked loads) and split into its even and odd
// columns with two permutes.
template <int L>
EMBER_TARGET_AVX512 void fill_planes(const ConvGeom& g, const float* x, int64_t n, int64_t c0, int64_t Cg, int64_t U,
                                     float* planes) {
  using S = Lanes<L>;
  const int64_t P = U * L;
  const uint32_t cols = bit_range(g.pw, g.pw + g.W);  // padded columns that are in x
  const __mmask16 m_lo = static_cast<__mmask16>(cols), m_hi = static_cast<__mmask16>(cols >> 16);
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t c = 0; c < Cg; ++c) {
    const float* xc = x + (n * g.C + c0 + c) * g.H * g.W;
    for (int64_t a = 0; a < 2; ++a)
      for (int64_t u = 0; u < U; ++u) {
        float* d0 = planes + ((a * 2) * Cg + c) * P + u * L;
        float* d1 = planes + ((a * 2 + 1) * Cg + c) * P + u * L;
        const int64_t ih = 2 * u + a - g.ph;
        if (ih < 0 || ih >= g.H) {
          S::store_low(d0, zero);
          S::store_low(d1, zero);
          continue;
        }
        // Padded column t is x column t - pw; the masks keep the loads inside the row.
        const float* xr = xc + ih * g.W - g.pw;
        const __m512 lo = _mm512_maskz_loadu_ps(m_lo, xr), hi = _mm512_maskz_loadu_ps(m_hi, xr + 16);
        S::store_low(d0, _mm512_permutex2var_ps(lo, even, hi));
        S::store_low(d1, _mm512_permutex2var_ps(lo, odd, hi));
      }
  }
  std::fill(planes + 4 * Cg * P, planes + 4 * Cg * P + L, 0.0f);  // the tail the last rows' shifts read
}

template <int L>
void forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y) {
  const int64_t G = g.groups, Cg = g.C / G, Kg = g.K / G, taps = g.kh * g.kw, R = Cg * taps;
  const int64_t U = g.OH + g.dh * (g.kh - 1) / 2, P = U * L;
  const int MR = Kg >= 2 ? 2 : 1;
  const int64_t Kp = (Kg + 15) / 16 * 16;
  // Weights as (R, Kp) per group, zero columns padding Kg; offsets of im2col row
  // r = (c, i, j): plane (i*dh % 2, j*dw % 2, c) at row shift i*dh / 2, column shift j*dw / 2.
  float* wp = thread_buffer<float>(2, G * R * Kp);
  int64_t* off = thread_buffer<int64_t>(2, R);
  for (int64_t gi = 0; gi < G; ++gi) transpose_dy(w + gi * Kg * R, Kg, R, Kp, wp + gi * R * Kp);
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t di = i * g.dh, dj = j * g.dw, phase = (di % 2) * 2 + dj % 2;
        off[(c * g.kh + i) * g.kw + j] = (phase * Cg + c) * P + (di / 2) * L + dj / 2;
      }
  const RowTiles rt(g.OH);
  const TileFn fn = pick_tile(L, MR, rt.rows);
  const uint32_t mask = bit_range(0, g.OW);
  const int64_t OP = g.OH * g.OW;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, g.K * OP * R));
  const int64_t part_size = 4 * Cg * P + L;
  float* all_planes = thread_buffer<float>(0, count_parts(g.N, grain) * part_size);
  for_parts(g.N, grain, [&](int64_t part, int64_t n0, int64_t n1) {
    float* planes = all_planes + part * part_size;
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t gi = 0; gi < G; ++gi) {
        fill_planes<L>(g, x, n, gi * Cg, Cg, U, planes);
        for (int64_t k0 = 0; k0 < Kg; k0 += MR)
          for (int64_t t = 0; t < rt.count; ++t) {
            const int64_t oh0 = rt.start(t, g.OH);
            float* out[2];
            for (int m = 0; m < 2; ++m)
              out[m] = k0 + m < Kg ? y + (n * g.K + gi * Kg + k0 + m) * OP + oh0 * g.OW : nullptr;
            fn(planes + oh0 * L, off, R, wp + gi * R * Kp + k0, Kp, out, g.OW, mask,
               bias ? bias + gi * Kg + k0 : nullptr);
          }
      }
  });
}

// The input gradient's tables: taps grouped by phase in conv.cpp's order (i, then j), phase ph's
// being tap_list[tap_start[ph], tap_start[ph + 1]) with im2col rows (k, e), k slowest; the weights
// of phase ph (and group gi) as (Kg * nt, Cp) at wp + (gi * taps + tap_start[ph]) * Kg * Cp, and
// the offsets of its rows into the dy planes at off + tap_start[ph] * Kg.
struct InputGradPlan {
  int64_t G, Cg, Kg, taps, mh, mw, Ux, Up, DP, SP, MR, Cp;  // MR: channels per tile, Cp: Cg padded to it
  const int64_t* tap_start;
  const int64_t* off;
  const float* wp;
  // Phase rows a = 0, 1: the plane rows [u_lo, u_lo + u_count) that hold dx rows, in tiles.
  int64_t u_lo[2], u_count[2];
  RowTiles rt[2];
  TileFn fn[2];
  int32_t ix[32];  // dx row lane q < 32 takes lane ix[q] of the pair (phase b = 0 row, b = 1 row)
};

// dx of image n: dy into the zero-margined planes, the four phase blocks into scratch, then the dx
// rows, each one permute of its two phase rows.
template <int L>
EMBER_TARGET_AVX512 void input_grad_image(const ConvGeom& g, const InputGradPlan& pl, const float* dy,
                                          const float* bias, float* dx, int64_t n, float* planes, float* scratch) {
  using S = Lanes<L>;
  const int64_t Cg = pl.Cg, Kg = pl.Kg, DP = pl.DP, SP = pl.SP, OP = g.OH * g.OW, XP = g.H * g.W;
  const uint32_t all = bit_range(0, L), dy_cols = bit_range(0, g.OW);
  const __m512i idx_lo = _mm512_loadu_si512(pl.ix), idx_hi = _mm512_loadu_si512(pl.ix + 16);
  const __mmask16 st_lo = static_cast<__mmask16>(bit_range(0, g.W));
  const __mmask16 st_hi = static_cast<__mmask16>(bit_range(16, g.W) >> 16);
  for (int64_t gi = 0; gi < pl.G; ++gi) {
    std::fill(planes, planes + Kg * DP + L, 0.0f);
    for (int64_t k = 0; k < Kg; ++k) {
      const float* src = dy + (n * g.K + gi * Kg + k) * OP;
      float* dst = planes + k * DP + pl.mh * L + pl.mw;
      for (int64_t oh = 0; oh < g.OH; ++oh)
        S::store_masked(dst + oh * L, dy_cols, S::load_masked(dy_cols, src + oh * g.OW));
    }
    for (int64_t ph = 0; ph < 4; ++ph) {
      const int64_t Rp = (pl.tap_start[ph + 1] - pl.tap_start[ph]) * Kg;
      float* sp = scratch + ph * Cg * SP;
      if (Rp == 0) {  // no tap has this phase: those dx pixels are zero
        std::fill(sp, sp + Cg * SP, 0.0f);
        continue;
      }
      const float* wph = pl.wp + (gi * pl.taps + pl.tap_start[ph]) * Kg * pl.Cp;
      const int64_t* off = pl.off + pl.tap_start[ph] * Kg;
      const int64_t a = ph >> 1;
      for (int64_t c0 = 0; c0 < Cg; c0 += pl.MR)
        for (int64_t t = 0; t < pl.rt[a].count; ++t) {
          const int64_t u0 = pl.u_lo[a] + pl.rt[a].start(t, pl.u_count[a]);
          float* out[2];
          for (int64_t m = 0; m < 2; ++m) out[m] = c0 + m < Cg ? sp + (c0 + m) * SP + u0 * L : nullptr;
          pl.fn[a](planes + u0 * L, off, Rp, wph + c0, pl.Cp, out, L, all, nullptr);
        }
    }
    for (int64_t c = 0; c < Cg; ++c) {
      float* dxc = dx + (n * g.C + gi * Cg + c) * XP;
      const __m512 b = _mm512_set1_ps(bias ? bias[gi * Cg + c] : 0.0f);
      for (int64_t h = 0; h < g.H; ++h) {
        const int64_t a = (h + g.ph) & 1, u = (h + g.ph) >> 1;
        const __m512 r0 = S::widen(scratch + (a * 2 * Cg + c) * SP + u * L);
        const __m512 r1 = S::widen(scratch + ((a * 2 + 1) * Cg + c) * SP + u * L);
        float* xr = dxc + h * g.W;
        __m512 lo = _mm512_permutex2var_ps(r0, idx_lo, r1), hi = _mm512_permutex2var_ps(r0, idx_hi, r1);
        if (bias) {
          lo = _mm512_add_ps(lo, b);
          hi = _mm512_add_ps(hi, b);
        }
        _mm512_mask_storeu_ps(xr, st_lo, lo);
        if (st_hi) _mm512_mask_storeu_ps(xr + 16, st_hi, hi);
      }
    }
  }
}

// dx = conv2d's input gradient. dx pixel (h, w) has phase (a, b) = ((h + ph) % 2, (w + pw) % 2) and
// plane position (u, v) = ((h + ph) / 2, (w + pw) / 2); it sums over k and the taps (i, j) of its
// phase w[k, c, i, j] * dy[k, u - i*dh/2, v - j*dw/2]. dy goes into planes with mh zero rows on top
// and mw zero columns on the left of each L-wide row, so a tap reads a row of them at a fixed shift;
// a row read past its end lands in the next row's zero margin (Vx <= L), where dy is zero too.
template <int L>
void input_grad(const ConvGeom& g, const float* dy, const float* w, const float* bias, float* dx) {
  const int64_t G = g.groups, Cg = g.C / G, Kg = g.K / G, taps = g.kh * g.kw;
  const int64_t mh = g.dh * (g.kh - 1) / 2, mw = g.dw * (g.kw - 1) / 2;
  const int64_t Ux = (g.H - 1 + g.ph) / 2 + 1;
  const int64_t Up = std::max(Ux, g.OH) + mh;  // dy plane rows
  const int MR = Cg >= 2 ? 2 : 1;
  const int64_t Cp = (Cg + MR - 1) / MR * MR;
  int64_t* tap_start = thread_buffer<int64_t>(2, 5 + taps + Kg * taps);
  int64_t* tap_list = tap_start + 5;
  int64_t* off = tap_list + taps;
  std::fill(tap_start, tap_start + 5, int64_t{0});
  for (int64_t ph = 0, e = 0; ph < 4; ++ph) {
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j)
        if ((i * g.dh % 2) * 2 + j * g.dw % 2 == ph) tap_list[e++] = i * g.kw + j;
    tap_start[ph + 1] = e;
  }
  const int64_t DP = Up * L;
  for (int64_t ph = 0; ph < 4; ++ph) {
    const int64_t* t = tap_list + tap_start[ph];
    const int64_t nt = tap_start[ph + 1] - tap_start[ph];
    for (int64_t k = 0; k < Kg; ++k)
      for (int64_t e = 0; e < nt; ++e) {
        const int64_t i = t[e] / g.kw, j = t[e] % g.kw;
        off[tap_start[ph] * Kg + k * nt + e] = k * DP + (mh - i * g.dh / 2) * L + (mw - j * g.dw / 2);
      }
  }
  // Each w[k] (Cg, taps) transposed to (taps, C16), its rows dealt to the phases' matrices.
  const int64_t C16 = (Cg + 15) / 16 * 16;
  float* wp = thread_buffer<float>(3, G * taps * Kg * Cp);
  float* wk = thread_buffer<float>(2, taps * C16);
  for (int64_t gi = 0; gi < G; ++gi)
    for (int64_t k = 0; k < Kg; ++k) {
      transpose_dy(w + (gi * Kg + k) * Cg * taps, Cg, taps, C16, wk);
      for (int64_t ph = 0; ph < 4; ++ph) {
        const int64_t* t = tap_list + tap_start[ph];
        const int64_t nt = tap_start[ph + 1] - tap_start[ph];
        float* m = wp + (gi * taps + tap_start[ph]) * Kg * Cp + k * nt * Cp;
        for (int64_t e = 0; e < nt; ++e) std::copy(wk + t[e] * C16, wk + t[e] * C16 + Cp, m + e * Cp);
      }
    }
  // dx row h = 2u + a - ph: phase row a's rows u in [u_lo, u_hi) are inside dx.
  int64_t u_lo[2], u_count[2];
  for (int64_t a = 0; a < 2; ++a) {
    u_lo[a] = g.ph > a ? (g.ph - a + 1) / 2 : 0;
    const int64_t last = g.H - 1 + g.ph - a;  // 2 * u_hi - 2 at most
    const int64_t u_hi = last < 0 ? 0 : std::min(Ux, last / 2 + 1);
    u_count[a] = std::max<int64_t>(0, u_hi - u_lo[a]);
  }
  const RowTiles rt0(u_count[0]), rt1(u_count[1]);
  InputGradPlan pl{G,  Cg, Kg, taps, mh, mw, Ux, Up, DP, Ux * L, MR, Cp, tap_start, off, wp,
                   {u_lo[0], u_lo[1]}, {u_count[0], u_count[1]}, {rt0, rt1},
                   {pick_tile(L, MR, rt0.rows), pick_tile(L, MR, rt1.rows)}, {}};
  for (int64_t q = 0; q < 32; ++q) pl.ix[q] = static_cast<int32_t>((((q + g.pw) & 1) << 4) | (((q + g.pw) >> 1) & 15));
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, g.C * g.H * g.W * Kg * taps / 4));
  const int64_t parts = count_parts(g.N, grain), planes_size = Kg * DP + L, scratch_size = 4 * Cg * pl.SP;
  float* all_planes = thread_buffer<float>(0, parts * planes_size);
  float* all_scratch = thread_buffer<float>(1, parts * scratch_size);
  for_parts(g.N, grain, [&](int64_t part, int64_t n0, int64_t n1) {
    float* planes = all_planes + part * planes_size;
    float* scratch = all_scratch + part * scratch_size;
    for (int64_t n = n0; n < n1; ++n) input_grad_image<L>(g, pl, dy, bias, dx, n, planes, scratch);
  });
}

// acc (R, Kg) (+)= the chunk's im2col rows @ its dy^T: element (r, k) sums planes[off[r] + pos[t]]
// * dyT[t * Kp + k] over the chunk's columns t, one FMA chain per GEMM K block (columns
// [bstart[b], bstart[b + 1])), the blocks added in order; block 0 overwrites acc when `overwrite`.
// NV vectors of 16 output channels, MR rows r (the last tile repeats row R - 1, not stored).
template <int NV>
EMBER_TARGET_AVX512 void weight_chunk(const float* planes, const int64_t* off, int64_t R, const int64_t* pos,
                                      const int64_t* bstart, int64_t nblocks, const float* dyT, int64_t Kp, int64_t Kg,
                                      bool overwrite, float* acc) {
  constexpr int MR = 6;
  for (int64_t kv0 = 0; kv0 * 16 < Kp; kv0 += NV)
    for (int64_t r0 = 0; r0 < R; r0 += MR) {
      const float* rp[MR];
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) rp[m] = planes + off[std::min<int64_t>(r0 + m, R - 1)];
      for (int64_t b = 0; b < nblocks; ++b) {
        __m512 a[MR][NV];
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m)
#pragma GCC unroll 2
          for (int v = 0; v < NV; ++v) a[m][v] = _mm512_setzero_ps();
        for (int64_t t = bstart[b]; t < bstart[b + 1]; ++t) {
          const int64_t p = pos[t];
          __m512 d[NV];
#pragma GCC unroll 2
          for (int v = 0; v < NV; ++v) d[v] = _mm512_loadu_ps(dyT + t * Kp + (kv0 + v) * 16);
#pragma GCC unroll 8
          for (int m = 0; m < MR; ++m) {
            const __m512 xm = _mm512_set1_ps(rp[m][p]);
#pragma GCC unroll 2
            for (int v = 0; v < NV; ++v) a[m][v] = _mm512_fmadd_ps(xm, d[v], a[m][v]);
          }
        }
        const bool first = overwrite && b == 0;
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m) {
          if (r0 + m >= R) break;
#pragma GCC unroll 2
          for (int v = 0; v < NV; ++v) {
            const int64_t k = (kv0 + v) * 16;
            if (k >= Kg) break;
            const __mmask16 mask = static_cast<__mmask16>(bit_range(0, Kg - k));
            float* c = acc + (r0 + m) * Kg + k;
            _mm512_mask_storeu_ps(c, mask, first ? a[m][v] : _mm512_add_ps(a[m][v], _mm512_maskz_loadu_ps(mask, c)));
          }
        }
      }
    }
}

// dw = sum over the batch of dy (x) im2col(x), in the order of conv.cpp's GEMMs: the batch cut
// into the same slices, each walked in the same chunks of images, whose columns (image i, row oh,
// column ow at i*Pg + oh*V + ow, V = OW + the column shift, Pg = U*V) the GEMM takes in K blocks
// of kGemmKC; the columns past OW, where dy is zero, add nothing and are skipped. The planes are
// the forward's, one image after another.
template <int L>
void weight_grad(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  const int64_t G = g.groups, Cg = g.C / G, Kg = g.K / G, taps = g.kh * g.kw, R = Cg * taps, wsize = g.K * R;
  const int64_t U = g.OH + g.dh * (g.kh - 1) / 2, P = U * L, img = 4 * Cg * P + L;
  const int64_t V = g.OW + g.dw * (g.kw - 1) / 2, Pg = U * V, nb = std::max<int64_t>(1, kChunkColumns / Pg);
  const int64_t S = std::clamp<int64_t>(std::min(g.N, kPartialBudget / std::max<int64_t>(wsize, 1)), 1, kMaxSlices);
  const int64_t OP = g.OH * g.OW;
  const int NV = Kg > 16 ? 2 : 1;
  const int64_t Kp = (Kg + 16 * NV - 1) / (16 * NV) * (16 * NV);
  float* partials = thread_buffer<float>(2, S * wsize);  // (G, R, Kg) per slice
  int64_t* off = thread_buffer<int64_t>(2, R);
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t di = i * g.dh, dj = j * g.dw, phase = (di % 2) * 2 + dj % 2;
        off[(c * g.kh + i) * g.kw + j] = (phase * Cg + c) * P + (di / 2) * L + dj / 2;
      }
  const int64_t parts = count_parts(S, 1), planes_size = nb * img, dyT_size = nb * OP * Kp;
  const int64_t pos_size = nb * OP + nb * Pg / kGemmKC + 2;
  float* all_planes = thread_buffer<float>(0, parts * planes_size);
  float* all_dyT = thread_buffer<float>(1, parts * dyT_size);
  int64_t* all_pos = thread_buffer<int64_t>(0, parts * pos_size);
  for_parts(S, 1, [&](int64_t part, int64_t s0, int64_t s1) {
    float* planes = all_planes + part * planes_size;
    float* dyT = all_dyT + part * dyT_size;
    int64_t* pos = all_pos + part * pos_size;
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t b0 = g.N * s / S, b1 = g.N * (s + 1) / S;
      for (int64_t n0 = b0; n0 < b1; n0 += nb) {
        const int64_t n = std::min(nb, b1 - n0), cols = n * OP;
        // Column t = (i, oh, ow) of the chunk: its plane position and its GEMM K block.
        int64_t* bstart = pos + cols;
        int64_t nblocks = 0;
        for (int64_t i = 0, t = 0; i < n; ++i)
          for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow, ++t) {
              pos[t] = i * img + oh * L + ow;
              const int64_t blk = (i * Pg + oh * V + ow) / kGemmKC;
              while (nblocks <= blk) bstart[nblocks++] = t;  // empty blocks (never the first) add nothing
            }
        bstart[nblocks] = cols;
        for (int64_t gi = 0; gi < G; ++gi) {
          for (int64_t i = 0; i < n; ++i) fill_planes<L>(g, x, n0 + i, gi * Cg, Cg, U, planes + i * img);
          for (int64_t i = 0; i < n; ++i)
            transpose_dy(dy + ((n0 + i) * g.K + gi * Kg) * OP, Kg, OP, Kp, dyT + i * OP * Kp);
          float* acc = partials + s * wsize + gi * R * Kg;
          if (NV == 2) {
            weight_chunk<2>(planes, off, R, pos, bstart, nblocks, dyT, Kp, Kg, n0 == b0, acc);
          } else {
            weight_chunk<1>(planes, off, R, pos, bstart, nblocks, dyT, Kp, Kg, n0 == b0, acc);
          }
        }
      }
    }
  });
  for (int64_t gi = 0; gi < G; ++gi)
    for (int64_t k = 0; k < Kg; ++k)
      for (int64_t r = 0; r < R; ++r) {
        const int64_t src = gi * R * Kg + r * Kg + k;
        float sum = partials[src];
        for (int64_t s = 1; s < S; ++s) sum += partials[s * wsize + src];
        dw[(gi * Kg + k) * R + r] = sum;
      }
}
#endif

}  // namespace

bool stride2_conv_applies(const ConvGeom& g, ConvPass pass) {
#if EMBER_HAVE_ISA_VARIANTS
  if (!conv_stride2_enabled().load(std::memory_order_relaxed) || cpu_isa() != CpuIsa::Avx512) return false;
  if (g.sh != 2 || g.sw != 2 || g.N < 1 || g.OH < 1 || g.OW < 1 || g.H < 1 || g.W < 1) return false;
  if (g.ph < 0 || g.ph > 16 || g.pw < 0 || g.pw > 16) return false;
  const int64_t mw = g.dw * (g.kw - 1) / 2;
  if (pass == ConvPass::Forward || pass == ConvPass::Weight) return g.OW + mw <= 16;
  return (g.W - 1 + g.pw) / 2 + 1 <= 16 && g.OW + mw <= 16;
#else
  (void)g;
  (void)pass;
  return false;
#endif
}

void conv2d_stride2(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y) {
#if EMBER_HAVE_ISA_VARIANTS
  if (row_lanes(g.OW + g.dw * (g.kw - 1) / 2) == 8) return forward<8>(g, x, w, bias, y);
  return forward<16>(g, x, w, bias, y);
#else
  (void)g, (void)x, (void)w, (void)bias, (void)y;
#endif
}

void conv2d_backward_input_stride2(const ConvGeom& g, const float* dy, const float* w, const float* bias, float* dx) {
#if EMBER_HAVE_ISA_VARIANTS
  const int64_t Vx = (g.W - 1 + g.pw) / 2 + 1, mw = g.dw * (g.kw - 1) / 2;
  if (row_lanes(std::max(Vx, g.OW + mw)) == 8) return input_grad<8>(g, dy, w, bias, dx);
  return input_grad<16>(g, dy, w, bias, dx);
#else
  (void)g, (void)dy, (void)w, (void)bias, (void)dx;
#endif
}

void conv2d_backward_weight_stride2(const ConvGeom& g, const float* x, const float* dy, float* dw) {
#if EMBER_HAVE_ISA_VARIANTS
  if (row_lanes(g.OW + g.dw * (g.kw - 1) / 2) == 8) return weight_grad<8>(g, x, dy, dw);
  return weight_grad<16>(g, x, dy, dw);
#else
  (void)g, (void)x, (void)dy, (void)dw;
#endif
}

}  // namespace ember::kernels
