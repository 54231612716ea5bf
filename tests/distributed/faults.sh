#!/usr/bin/env bash
# Faults of a data-parallel run of the example (ember-mnist-ae fit --strategy ddp, 2 ranks under
# mpirun, MNIST-format files made here): (1) SIGTERM to the launcher stops both ranks at the same
# step, rank 0 alone writes on_exception.ckpt and reports it, and `--resume last` finishes the run;
# (2) a rank killed
# with SIGKILL mid-epoch ends the job non-zero within 60 seconds.
#   usage: faults.sh MPIEXEC EMBER_MNIST_AE
set -uo pipefail
mpiexec="$1" prog="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAILED: $*" >&2; exit 1; }

# A small MNIST-format data set: 2048 training and 256 test images of noise.
python3 - "$work/data" <<'PY'
import gzip, os, random, struct, sys
d = sys.argv[1]; os.makedirs(d)
rng = random.Random(7)
def images(name, n):
    with gzip.open(os.path.join(d, name), "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28)); f.write(bytes(rng.randrange(256) for _ in range(n * 784)))
def labels(name, n):
    with gzip.open(os.path.join(d, name), "wb") as f:
        f.write(struct.pack(">II", 2049, n)); f.write(bytes(rng.randrange(10) for _ in range(n)))
images("train-images-idx3-ubyte.gz", 2048); labels("train-labels-idx1-ubyte.gz", 2048)
images("t10k-images-idx3-ubyte.gz", 256); labels("t10k-labels-idx1-ubyte.gz", 256)
PY

# The 2-rank fit (60 short epochs: seconds of training).
fit_args=(fit --strategy ddp --data "$work/data" --model mlp --batch-size 16 --max-epochs 60 --threads 1 --no-progress)
run() {  # run DIR: the launcher in the background (its pid in $pid), returning once training is under way
  local dir="$1"
  "$mpiexec" -np 2 "$prog" "${fit_args[@]}" --default-root-dir "$dir" >"$dir.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do
    [ -f "$dir/ember_logs/version_0/hparams.yaml" ] && break  # written when the training loop starts
    kill -0 "$pid" 2>/dev/null || fail "the run ended before training started: $(tail -5 "$dir.log")"
    sleep 0.5
  done
  sleep 1
  kill -0 "$pid" 2>/dev/null || fail "the run ended within a second of training (it should take several)"
}

# (1) SIGTERM to the launcher, then --resume last
mkdir -p "$work/term"
run "$work/term"
kill -TERM "$pid"
wait "$pid"; rc=$?
[ "$rc" -ne 0 ] || fail "the interrupted run exited 0 (log: $(tail -5 "$work/term.log"))"
[ "$(grep -c "interrupted by SIGTERM" "$work/term.log")" = 1 ] || fail "rank 0 alone reports the interruption: $(cat "$work/term.log")"
ckpt="$work/term/checkpoints/on_exception.ckpt"
[ -f "$ckpt" ] || fail "no $ckpt after SIGTERM (rc $rc; log: $(tail -5 "$work/term.log"))"
"$mpiexec" -np 2 "$prog" "${fit_args[@]}" --default-root-dir "$work/term" --resume last >"$work/resume.log" 2>&1 \
  || fail "the resumed run failed: $(tail -5 "$work/resume.log")"
grep -q "Restored training state" "$work/resume.log" || fail "the resumed run did not restore: $(tail -5 "$work/resume.log")"
[ ! -f "$ckpt" ] || fail "on_exception.ckpt is still there after the resumed run completed"
echo "SIGTERM: both ranks stopped (rc $rc), on_exception.ckpt written and resumed to the end"

# (2) SIGKILL of one rank mid-epoch
mkdir -p "$work/kill"
run "$work/kill"
victim="$(pgrep -P "$pid" -f ember-mnist-ae | tail -n 1)"
[ -z "$victim" ] && victim="$(pgrep -f "ember-mnist-ae fit --strategy ddp --data $work/data" | tail -n 1)"
[ -n "$victim" ] || fail "no rank process found to kill"
start=$(date +%s)
kill -KILL "$victim"
for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$pid" 2>/dev/null; then
  pkill -KILL -f "ember-mnist-ae fit --strategy ddp --data $work/data"; kill -KILL "$pid"
  fail "the job still runs 60 s after a rank was killed"
fi
wait "$pid"; rc=$?
[ "$rc" -ne 0 ] || fail "the job exited 0 after a rank was killed"
grep -q "process rank [01]" "$work/kill.log" || fail "the launcher did not name the rank that died: $(tail -5 "$work/kill.log")"
echo "SIGKILL: the job ended with status $rc $(( $(date +%s) - start )) s after a rank was killed"
echo "1 passed, 0 failed"
