#!/usr/bin/env bash
# Faults of a data-parallel run of the example (ember-mnist-ae fit --strategy ddp, 2 ranks under
# mpirun, MNIST-format files made here): (1) SIGTERM to the launcher stops both ranks at the same
# step, rank 0 alone writes on_exception.ckpt and reports it, and `--resume last` finishes the run;
# (2) a rank killed
# with SIGKILL mid-epoch ends the job non-zero within 60 seconds; (3) an epoch-end checkpoint of 2
# ranks resumes in 1 process and in 3 ranks, saying so, and a mid-epoch one refuses both, naming
# both sizes; (4) a rank that throws from training_step ends the job non-zero within 60 seconds,
# named in the message.
#   usage: faults.sh MPIEXEC EMBER_MNIST_AE EMBER_DDP_FAILING_RANK
set -uo pipefail
mpiexec="$1" prog="$2" failing="$3"
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
# (3) another world size: from an epoch-end checkpoint yes, from a mid-epoch one no
ws_args=(fit --strategy ddp --data "$work/data" --model mlp --batch-size 16 --threads 1 --no-progress
         --every-n-train-steps 16 --save-top-k -1 --default-root-dir "$work/ws")
"$mpiexec" -np 2 "$prog" "${ws_args[@]}" --max-epochs 1 >"$work/ws.log" 2>&1 || fail "the 2-rank epoch failed: $(tail -5 "$work/ws.log")"
ckdir="$work/ws/ember_logs/version_0/checkpoints"
[ -f "$ckdir/epoch=0-step=64.ckpt" ] && [ -f "$ckdir/epoch=0-step=16.ckpt" ] || fail "missing checkpoints: $(ls "$ckdir")"
resume() {  # resume NP CKPT LOG: NP ranks (1: no launcher) resume CKPT for one more epoch
  local np="$1" ck="$2" log="$3"
  if [ "$np" = 1 ]; then "$prog" "${ws_args[@]}" --max-epochs 2 --resume "$ck" >"$log" 2>&1
  else "$mpiexec" -np "$np" "$prog" "${ws_args[@]}" --max-epochs 2 --resume "$ck" >"$log" 2>&1; fi
}
for np in 1 3; do
  what="$([ "$np" = 1 ] && echo "1 process" || echo "$np ranks")"
  resume "$np" "$ckdir/epoch=0-step=64.ckpt" "$work/ws$np.log" || fail "$np rank(s) did not resume the epoch-end checkpoint: $(tail -5 "$work/ws$np.log")"
  grep -q "resuming at the start of epoch 1 with $what; the state was saved by a run of 2 ranks" "$work/ws$np.log" \
    || fail "no world-size notice with $np rank(s): $(head -5 "$work/ws$np.log")"
  grep -q "Restored training state" "$work/ws$np.log" || fail "$np rank(s) did not restore: $(tail -5 "$work/ws$np.log")"
  ! resume "$np" "$ckdir/epoch=0-step=16.ckpt" "$work/wsmid$np.log" || fail "$np rank(s) resumed a mid-epoch checkpoint of 2"
  grep -q "saved mid-epoch (16 batches in) by a run of 2 ranks, but this loader is one of $np rank" "$work/wsmid$np.log" \
    || fail "the mid-epoch refusal does not name both sizes: $(head -5 "$work/wsmid$np.log")"
done
echo "world size: an epoch-end checkpoint of 2 ranks resumed in 1 and in 3, a mid-epoch one refused by both"
# (4) a rank that throws
start=$(date +%s)
timeout 60 "$mpiexec" -np 2 "$failing" "$work/failing" >"$work/failing.log" 2>&1; rc=$?
[ "$rc" -ne 124 ] || fail "the job still ran 60 s after a rank threw: $(tail -5 "$work/failing.log")"
[ "$rc" -ne 0 ] || fail "the job exited 0 after a rank threw: $(tail -5 "$work/failing.log")"
grep -q "\[Trainer\] rank 1 of 2 failed: \[FailingRank\] injected failure at batch 3" "$work/failing.log" \
  || fail "the message does not name the failing rank: $(tail -5 "$work/failing.log")"
! grep -q "finished the fit" "$work/failing.log" || fail "a rank finished the fit: $(cat "$work/failing.log")"
echo "a throwing rank: the job ended with status $rc $(( $(date +%s) - start )) s later, naming rank 1"
echo "1 passed, 0 failed"
