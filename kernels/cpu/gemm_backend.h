// Which implementation kernels::gemm_cpu runs: our blocked AVX2/FMA kernel or Eigen. The library
// picks per dtype (Auto); tests and the runtime benchmark force one to check and time both.
// Private to the library.
#pragma once

namespace ember::kernels {

enum class GemmBackend { Auto, Blocked, Eigen };

// Process-wide override for gemm_cpu (Auto restores the default). Forcing Blocked on a CPU
// without AVX2+FMA throws ember::Error.
void set_gemm_backend(GemmBackend backend);
// Whether this CPU can run the blocked AVX2/FMA kernel.
bool gemm_blocked_available();
// The backend gemm_cpu uses for float (is_double=false) or double under the current setting.
GemmBackend gemm_backend_in_use(bool is_double);
// A short name for reports: "blocked-avx2" or "eigen".
const char* gemm_backend_name(GemmBackend backend);

}  // namespace ember::kernels
