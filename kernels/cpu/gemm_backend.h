// Which implementation kernels::gemm_cpu runs: our blocked kernel (AVX-512 or AVX2+FMA, picked at
// run time) or Eigen. Auto takes the fastest the CPU supports; tests and the runtime benchmark
// force one to check and time each. Private to the library.
#pragma once

namespace ember::kernels {

enum class GemmBackend { Auto, Avx512, Avx2, Eigen };

// Process-wide override for gemm_cpu (Auto restores the default). Forcing a backend the CPU
// cannot run throws ember::Error.
void set_gemm_backend(GemmBackend backend);
// Whether this CPU can run the backend (Auto and Eigen: always).
bool gemm_backend_available(GemmBackend backend);
// The backend gemm_cpu uses under the current setting (never Auto).
GemmBackend gemm_backend_in_use();
// A short name for reports: "blocked-avx512", "blocked-avx2", "eigen" or "auto".
const char* gemm_backend_name(GemmBackend backend);

}  // namespace ember::kernels
