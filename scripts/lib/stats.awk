# Shared by the benchmark scripts' table printers: val[k, 1..cnt[k]] holds the runs of key k.
# stats(k) sets med[k], lo[k] and hi[k] (median, min, max) and returns 1, or "" when k has no runs;
# cell(k, fmt) prints "median (min-max)" in fmt, or "-".
function stats(k,   n, i, j, a, tmp) {
  n = cnt[k]; if (n == 0) return ""
  for (i = 1; i <= n; i++) a[i] = val[k, i]
  for (i = 2; i <= n; i++) { tmp = a[i]; for (j = i - 1; j >= 1 && a[j] > tmp; j--) a[j + 1] = a[j]; a[j + 1] = tmp }
  med[k] = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2; lo[k] = a[1]; hi[k] = a[n]; return 1
}
function cell(k, fmt) { return stats(k) ? sprintf(fmt " (" fmt "-" fmt ")", med[k], lo[k], hi[k]) : "-" }
