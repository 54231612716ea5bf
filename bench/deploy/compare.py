"""Deploying one image through the example autoencoders: ember-run against ONNX Runtime's Python API
(bench/deploy/ort_one.py), side by side in one run, interleaved.

For each repetition, thread setting and model it runs `ember-run M.ckpt --input M.input.npy --output
...` and `python ort_one.py M.onnx ...` as separate processes, alternating which goes first, plus
`python -c 'import numpy'` (the interpreter's own share) and `true` (the harness's spawn cost) once
per repetition and thread setting. Each child is timed from just before posix_spawn to its exit
(os.wait4); ort_one.py's CLOCK_MONOTONIC stamps split its time into interpreter start, imports,
session creation, run and save. The peak RSS comes from a few more interleaved runs under GNU time
(see spawn()). Before timing, each pair of outputs is checked: ember-run's against ORT's within
1e-5 (both also against PyTorch's, from export_models.py). Deploy size: ember-run stripped (and the
shared libraries it links), ONNX Runtime's native libraries in site-packages and what an ORT
process maps.

Usage (with the Python that has onnxruntime; scripts/bench-deploy.sh sets it up):
  python bench/deploy/compare.py --ember-run build/bin/ember-run --dir build-bench/deploy
         [--reps 15] [--models lit mlp conv] [--threads 1 0]    (0: each runtime's default)
  python bench/deploy/compare.py --table build-bench/deploy/results.txt   # re-print a run's table
Writes one RESULT line per measurement to DIR/results.txt, then prints a table of medians with
min-max; exits 1 (before timing anything) when the outputs disagree.
"""
import argparse
import glob
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOLERANCE = 1e-5
TIME = "/usr/bin/time"  # GNU time (Debian package `time`)
TRUE = shutil.which("true") or "/bin/true"

# Run by a child: the ORT process of ort_one.py, then the on-disk size of its executable and of
# every distinct file it maps (its deployment footprint).
FOOTPRINT = r"""
import os, sys
import numpy as np
import onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
s.run(None, {s.get_inputs()[0].name: np.load(sys.argv[2])})
exe = os.path.realpath("/proc/self/exe")
print("EXE %s %d" % (exe, os.path.getsize(exe)))
seen = set()
for line in open("/proc/self/maps"):
    i = line.find("/")
    if i < 0:
        continue
    p = line[i:].strip()
    if p == exe or ".so" not in p or p in seen or not os.path.exists(p):
        continue
    seen.add(p)
    print("MAP %s %d" % (p, os.path.getsize(p)))
"""


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def result(out, **kv):
    line = "RESULT " + " ".join("%s=%s" % (k, v) for k, v in kv.items())
    print(line, file=out, flush=True)
    return line


def spawn(argv, env, stdout_path, rss=False):
    """Runs argv to its exit with stdout to stdout_path; returns (spawn time ns, wall ns, peak RSS
    KiB or None). Raises with the child's stderr when it fails. rss: run it under GNU time, which
    reports the peak RSS; a child of this (large) Python process would report at least this
    process's RSS, which the kernel carries into ru_maxrss across exec, while GNU time's own child
    starts from ~1 MiB. The wrapper's fork and exec add to the wall time, so timed runs go without."""
    err_path, rss_path = stdout_path + ".err", stdout_path + ".rss"
    actions = [(os.POSIX_SPAWN_OPEN, 1, stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
               (os.POSIX_SPAWN_OPEN, 2, err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
    if rss:
        argv = [TIME, "-f", "%M", "-o", rss_path] + argv
    t0 = time.monotonic_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, _ = os.wait4(pid, 0)
    t1 = time.monotonic_ns()
    if os.waitstatus_to_exitcode(status) != 0:
        with open(err_path) as f:
            raise RuntimeError("[compare] %s exited with %d: %s" % (" ".join(argv), os.waitstatus_to_exitcode(status),
                                                                   f.read().strip()))
    if not rss:
        return t0, t1 - t0, None
    with open(rss_path) as f:
        return t0, t1 - t0, int(f.read().split()[-1])


class Runner:
    """Spawns the measured programs. Each call returns (output path, {key: value}): with rss=False
    the wall time (and ORT's own stamps), with rss=True the peak RSS only."""

    def __init__(self, args, tmp):
        self.args, self.tmp = args, tmp
        self.stdout = os.path.join(tmp, "stdout")

    def env(self, threads):
        env = dict(os.environ)
        if threads > 0:  # numpy's BLAS pool too, so that "1 thread" holds for the whole process
            env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(threads)
        return env

    def paths(self, model, fw):
        out = os.path.join(self.tmp, "%s.%s.npy" % (model, fw))
        if os.path.exists(out):  # a run that writes nothing must not pass on an older file
            os.unlink(out)
        return os.path.join(self.args.dir, model + ".input.npy"), out

    def ember(self, model, threads, rss=False):
        inp, out = self.paths(model, "ember")
        argv = [self.args.ember_run, os.path.join(self.args.dir, model + ".ckpt"), "--input", inp, "--output", out]
        if threads > 0:
            argv += ["--threads", str(threads)]
        _, wall, kib = spawn(argv, self.env(threads), self.stdout, rss)
        return out, {"peak_rss_kib": kib} if rss else {"wall_us": wall // 1000}

    def ort(self, model, threads, rss=False):
        inp, out = self.paths(model, "ort")
        argv = [sys.executable, os.path.join(HERE, "ort_one.py"), os.path.join(self.args.dir, model + ".onnx"), inp, out,
                str(threads)]
        t0, wall, kib = spawn(argv, self.env(threads), self.stdout, rss)
        if rss:
            return out, {"peak_rss_kib": kib}
        with open(self.stdout) as f:
            ns = {k: int(v) for k, v in (kv.split("=") for kv in f.read().split()[1:])}
        us = lambda a, b: (ns[b] - (t0 if a is None else ns[a])) // 1000  # noqa: E731
        return out, {"wall_us": wall // 1000, "output_us": us(None, "saved_ns"), "interp_us": us(None, "start_ns"),
                     "import_us": us("start_ns", "import_ns"), "session_us": us("import_ns", "session_ns"),
                     "run_us": us("session_ns", "run_ns"), "session_run_us": us("import_ns", "run_ns")}

    def numpy(self, threads, rss=False):
        _, wall, kib = spawn([sys.executable, "-c", "import numpy"], self.env(threads), self.stdout, rss)
        return None, {"peak_rss_kib": kib} if rss else {"wall_us": wall // 1000}

    def true(self, threads, rss=False):
        _, wall, kib = spawn([TRUE], self.env(threads), self.stdout, rss)
        return None, {"peak_rss_kib": kib} if rss else {"wall_us": wall // 1000}


def ldd_libs(path):
    """The shared libraries `path` links, as ldd resolves them (real paths)."""
    try:
        text = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return set()
    files = set()
    for line in text.splitlines():
        parts = line.split()
        lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts else ""
        if lib.startswith("/") and os.path.exists(lib):
            files.add(os.path.realpath(lib))
    return files


def sizes(args, tmp, out):
    """RESULT lines for what each runtime needs on disk."""
    exe = os.path.realpath(args.ember_run)
    stripped = os.path.join(tmp, "ember-run.stripped")
    shutil.copy(exe, stripped)
    strip = subprocess.run(["strip", stripped], stderr=subprocess.PIPE, text=True)
    if strip.returncode != 0:
        print("compare: strip %s failed: %s" % (exe, strip.stderr.strip()), file=sys.stderr)
    libs = ldd_libs(exe)
    # a CUDA build's ember-run links cudart, cuBLAS, cuDNN: loaded (and initialised) on every start
    cuda = sorted(os.path.basename(f).split(".so")[0] for f in libs if os.path.basename(f).startswith("libcu"))
    result(out, fw="ember", model="size", threads="-", exe_bytes=os.path.getsize(exe),
           stripped_bytes=os.path.getsize(stripped) if strip.returncode == 0 else "-",
           libs_bytes=sum(os.path.getsize(f) for f in libs), libs=len(libs), cuda_libs=",".join(cuda) or "-")

    import onnxruntime as ort
    pkg = os.path.dirname(ort.__file__)
    total = 0
    for root, _, files in os.walk(pkg):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    capi = sorted(glob.glob(os.path.join(pkg, "capi", "*.so*")))
    for f in capi:
        result(out, fw="ort", model="size", threads="-", file=os.path.basename(f), bytes=os.path.getsize(f))
    text = subprocess.run([sys.executable, "-c", FOOTPRINT, os.path.join(args.dir, args.models[0] + ".onnx"),
                           os.path.join(args.dir, args.models[0] + ".input.npy")],
                          capture_output=True, text=True, check=True).stdout
    mapped, mapped_ort, mapped_numpy, exe_bytes = [], 0, 0, 0
    for line in text.splitlines():
        kind, path, size = line.split()
        if kind == "EXE":
            exe_bytes = int(size)
            continue
        mapped.append(int(size))
        if os.path.realpath(path).startswith(os.path.realpath(pkg)):
            mapped_ort += int(size)
        elif "numpy" in path:
            mapped_numpy += int(size)
    result(out, fw="ort", model="size", threads="-", version=ort.__version__, capi_so_bytes=sum(map(os.path.getsize, capi)),
           package_bytes=total, python_exe_bytes=exe_bytes, python="%s" % platform.python_version(),
           numpy=np.__version__, mapped_libs_bytes=sum(mapped), mapped_libs=len(mapped), mapped_ort_bytes=mapped_ort,
           mapped_numpy_bytes=mapped_numpy)


def check(runner, out):
    """Runs each model once with each runtime (also a warm-up of the page cache) and compares the
    outputs; returns False when ember-run and ORT differ by more than TOLERANCE anywhere."""
    ok = True
    for threads in runner.args.threads:
        for model in runner.args.models:
            e, _ = runner.ember(model, threads)
            o, _ = runner.ort(model, threads)
            ye, yo = np.load(e), np.load(o)
            yt = np.load(os.path.join(runner.args.dir, model + ".torch.npy"))
            if ye.shape != yo.shape:
                print("compare: %s: ember-run output %s, ORT output %s" % (model, ye.shape, yo.shape), file=sys.stderr)
                ok = False
                continue
            d = float(np.abs(ye.astype(np.float64) - yo).max())
            result(out, fw="check", model=model, threads=threads, shape="x".join(map(str, ye.shape)),
                   max_abs_ember_ort="%.3g" % d, max_abs_ember_torch="%.3g" % float(np.abs(ye - yt).max()),
                   max_abs_ort_torch="%.3g" % float(np.abs(yo - yt).max()))
            if not d <= TOLERANCE:
                print("compare: %s, threads %s: ember-run and ORT differ by %.3g > %g" % (model, threads, d, TOLERANCE),
                      file=sys.stderr)
                ok = False
    return ok


def measure(args):
    os.makedirs(args.dir, exist_ok=True)
    path = args.results or os.path.join(args.dir, "results.txt")
    with open(path, "w") as out, tempfile.TemporaryDirectory(prefix="ember-bench-deploy-") as tmp:
        print("# %s, %d CPUs, %s, load: %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.cpu_count(),
                                             cpu_model(), loadavg()), file=out, flush=True)
        runner = Runner(args, tmp)
        sizes(args, tmp, out)
        if not check(runner, out):
            return 1, path
        # Timed runs, then (fewer) runs under GNU time for the peak RSS; same interleaving.
        for phase, reps in (("time", args.reps), ("rss", args.rss_reps)):
            for r in range(reps):
                for threads in args.threads:
                    for fw, model in (("numpy", "import-numpy"), ("true", "true")):
                        _, kv = getattr(runner, fw)(threads, rss=phase == "rss")
                        result(out, fw="python" if fw == "numpy" else "spawn", model=model, threads=threads, **kv)
                    for i, model in enumerate(args.models):
                        for fw in ("ember", "ort") if (r + i) % 2 == 0 else ("ort", "ember"):
                            _, kv = getattr(runner, fw)(model, threads, rss=phase == "rss")
                            result(out, fw=fw, model=model, threads=threads, **kv)
                print("# %s rep %d/%d done, load: %s" % (phase, r + 1, reps, loadavg()), file=sys.stderr, flush=True)
    return 0, path


def parse(path):
    header, rows = [], []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                header.append(line.rstrip())
            elif line.startswith("RESULT "):
                rows.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
    return header, rows


def table(path):
    header, rows = parse(path)
    vals = {}
    for r in rows:
        for k, v in r.items():
            if k not in ("fw", "model", "threads"):
                vals.setdefault((r["fw"], r["model"], r["threads"], k), []).append(v)

    def stat(fw, m, t, k):
        v = [float(x) for x in vals.get((fw, m, t, k), [])]
        return (statistics.median(v), min(v), max(v)) if v else None

    def cell(fw, m, t, k, scale, fmt):
        s = stat(fw, m, t, k)
        return "-" if s is None else ("%s (%s-%s)" % ((fmt,) * 3)) % tuple(x / scale for x in s)

    def ratio(m, t, k):
        e, o = stat("ember", m, t, k), stat("ort", m, t, k)
        return "-" if not e or not o or o[0] == 0 else "%.3fx" % (e[0] / o[0])

    models = [m for m in ("lit", "mlp", "conv") if any(k[1] == m for k in vals)]
    threads = sorted({k[2] for k in vals if k[1] in models}, key=lambda t: (t == "0", t))
    tname = lambda t: "default threads" if t == "0" else "%sT" % t  # noqa: E731
    for h in header:
        print(h)
    print("| metric | model | ember-run median (min-max) | ONNX Runtime, Python median (min-max) | ember/ORT |")
    print("|---|---|---:|---:|---:|")
    for label, k in (("start to exit (ms)", "wall_us"), ("start to output written (ms)", "output_us")):
        for t in threads:
            for m in models:
                ke = "wall_us" if k == "output_us" else k  # ember-run exits right after writing
                e = cell("ember", m, t, ke, 1000, "%.1f")
                o = cell("ort", m, t, k, 1000, "%.1f")
                es, os_ = stat("ember", m, t, ke), stat("ort", m, t, k)
                rr = "-" if not es or not os_ else "%.3fx" % (es[0] / os_[0])
                print("| %s | %s %s | %s | %s | %s |" % (label, m, tname(t), e, o, rr))
    for label, k in (("ORT: interpreter start (ms)", "interp_us"), ("ORT: import numpy + onnxruntime (ms)", "import_us"),
                     ("ORT: session create (ms)", "session_us"), ("ORT: run one image (ms)", "run_us"),
                     ("ORT: session create + run, in process (ms)", "session_run_us")):
        for t in threads:
            for m in models:
                print("| %s | %s %s | | %s | |" % (label, m, tname(t), cell("ort", m, t, k, 1000, "%.2f")))
    for t in threads:
        print("| `python3 -c 'import numpy'` start to exit (ms) | %s | | %s | |"
              % (tname(t), cell("python", "import-numpy", t, "wall_us", 1000, "%.1f")))
    for t in threads:
        c = cell("spawn", "true", t, "wall_us", 1000, "%.2f")
        print("| spawning `true` from the harness, start to exit (ms) | %s | %s | %s | |" % (tname(t), c, c))
    for t in threads:
        for m in models:
            print("| peak RSS (MiB) | %s %s | %s | %s | %s |" % (m, tname(t), cell("ember", m, t, "peak_rss_kib", 1024, "%.1f"),
                                                             cell("ort", m, t, "peak_rss_kib", 1024, "%.1f"),
                                                             ratio(m, t, "peak_rss_kib")))
    for t in threads:
        print("| `python3 -c 'import numpy'` peak RSS (MiB) | %s | | %s | |"
              % (tname(t), cell("python", "import-numpy", t, "peak_rss_kib", 1024, "%.1f")))
    one = lambda fw, k: (vals.get((fw, "size", "-", k)) or ["-"])[0]  # noqa: E731
    mb = lambda v: "-" if v == "-" else "%.2f" % (float(v) / 1e6)  # noqa: E731
    print("| deploy: ember-run stripped / ORT native libraries in site-packages (MB) | all | %s | %s | |"
          % (mb(one("ember", "stripped_bytes")), mb(one("ort", "capi_so_bytes"))))
    print("| deploy: ember-run unstripped / whole onnxruntime package (MB) | all | %s | %s | |"
          % (mb(one("ember", "exe_bytes")), mb(one("ort", "package_bytes"))))
    print("| deploy: shared libraries linked (ldd) / mapped by the ORT process (MB) | all | %s (%s) | %s (%s) | |"
          % (mb(one("ember", "libs_bytes")), one("ember", "libs"), mb(one("ort", "mapped_libs_bytes")),
             one("ort", "mapped_libs")))
    print("| deploy: ORT process maps: onnxruntime / numpy / python executable (MB) | all | | %s / %s / %s | |"
          % (mb(one("ort", "mapped_ort_bytes")), mb(one("ort", "mapped_numpy_bytes")), mb(one("ort", "python_exe_bytes"))))
    if one("ember", "cuda_libs") not in ("-", None):
        print("note: this ember-run is a CUDA build; it links %s, which load on every start, GPU or not "
              "(a CPU deployment uses a -DEMBER_CUDA=OFF build)" % one("ember", "cuda_libs"))
    for r in rows:
        if r["fw"] == "check":
            print("check %s threads=%s: output %s, max |ember-ort| %s, max |ember-torch| %s, max |ort-torch| %s"
                  % (r["model"], r["threads"], r["shape"], r["max_abs_ember_ort"], r["max_abs_ember_torch"],
                     r["max_abs_ort_torch"]))
    for r in rows:
        if r["fw"] == "ort" and r["model"] == "size" and "file" in r:
            print("onnxruntime/capi/%s: %s bytes" % (r["file"], r["bytes"]))
    for r in rows:
        if r["fw"] == "ort" and r["model"] == "size" and "version" in r:
            print("onnxruntime %s, Python %s, numpy %s" % (r["version"], r["python"], r["numpy"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ember-run", help="the ember-run binary")
    ap.add_argument("--dir", help="export_models.py's output folder (M.ckpt, M.onnx, M.input.npy, M.torch.npy)")
    ap.add_argument("--reps", type=int, default=15, help="timed runs per model, runtime and thread count")
    ap.add_argument("--rss-reps", type=int, default=3, help="runs under GNU time for the peak RSS")
    ap.add_argument("--models", nargs="+", default=["lit", "mlp", "conv"], choices=["lit", "mlp", "conv"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 0], help="thread counts; 0: each runtime's default")
    ap.add_argument("--results", help="raw RESULT lines (default DIR/results.txt)")
    ap.add_argument("--table", metavar="FILE", help="only print the table of a previous run's results")
    args = ap.parse_args()
    if args.table:
        table(args.table)
        return 0
    if not args.ember_run or not args.dir:
        ap.error("--ember-run and --dir are required (or --table)")
    rc, path = measure(args)
    print("# raw results: %s" % path, file=sys.stderr)
    table(path)
    return rc


if __name__ == "__main__":
    sys.exit(main())
