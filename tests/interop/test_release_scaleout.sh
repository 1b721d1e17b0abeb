#!/usr/bin/env bash
# tessera release scale-out (issue 9): the plan's jobs run by real schedulers
# give the files of the single-process release, byte for byte.
#  0. the plan: line 1 prepare, one line per variant, last line collect;
#     bad job numbers, another plan's job line, another tool version: errors;
#  1. GNU parallel (Debian `parallel`) runs the middle lines, then --job N
#     collects: every GGUF and its SHA256SUMS line equal the single run's;
#  2. a real Slurm (Debian slurm-wlm + munge): one controller and one node on
#     localhost, started here as root with state under $TMP; `sbatch --array`
#     runs the middle jobs through `--job env` (SLURM_ARRAY_TASK_ID), a job
#     with --dependency=afterok collects: byte-identical files. When Slurm
#     cannot start (not root, not installed, a daemon fails) this part says
#     why and is left out; the test skips (77) only when neither ran.
# llama-spm-8m, two types, one of them split: well under a minute.
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_tessera
tessera_has release || skip "tessera release not built"
M="$SHARED/models/llama-spm-8m"
[[ -d $M ]] || skip "llama-spm-8m not found in $SHARED/models"
TESSERA=$(readlink -f "$TESSERA")
TEXT="$SHARED/data/wiki.test.raw"
CALIB="$SHARED/data/calibration.txt"
# imatrix auto and --eval: prepare collects the imatrix, collect measures.
# Every release is made in ./rel and moved away after: the imatrix's path
# (rel/imatrix.gguf) is recorded in the files, so it must be the same.
TYPES=Q4_K_M,Q8_0
OPTS=(--types "$TYPES" --split-max-size 4M --imatrix auto --calib "$CALIB" --calib-chunks 2
  --eval "$TEXT" -c 128 --chunks 4 -t 1)
T0=$SECONDS
step() { echo "[$((SECONDS - T0)) s] $*"; }
cd "$TMP" || fail "cd $TMP"

# Daemons this test starts (their pid files under $TMP/slurm): killed by pid
# at exit, then the temp dir goes.
PIDS=()
cleanup() {
  local f p
  for f in "$TMP"/slurm/slurmd.pid "$TMP"/slurm/slurmctld.pid "$TMP"/slurm/munge/pid; do
    if [[ -s $f ]]; then PIDS+=("$(cat "$f")"); fi
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$TMP" 2>/dev/null || { sleep 1; rm -rf "$TMP"; }
}
trap cleanup EXIT

"$TESSERA" release "$M" -o rel "${OPTS[@]}" -q || fail "the single-process release"
mv rel single

# Every GGUF of release folder $1 equals the single run's, and so do their
# SHA256SUMS lines (the card's own lines hold timings and the command).
same_as_single() {
  local d=$1 n=0 f
  for f in single/*.gguf; do # the variants and the imatrix
    cmp "$f" "$d/$(basename "$f")" || fail "$d: $(basename "$f") differs from the single-process release"
    n=$((n + 1))
  done
  [[ $n -ge 4 ]] || fail "expected split parts and the imatrix in single/"
  grep -q "Perplexity\|PPL" "$d/README.md" || fail "$d: the card has no measurements"
  [[ $(find "$d" -maxdepth 1 -name '*.gguf' | wc -l) -eq $n ]] || fail "$d: other GGUF files than the single run's"
  diff <(grep '\.gguf$' single/SHA256SUMS) <(grep '\.gguf$' "$d/SHA256SUMS") || fail "$d: SHA256SUMS differ"
  (cd "$d" && sha256sum -c --quiet SHA256SUMS) || fail "$d: SHA256SUMS does not check"
  [[ -f $d/README.md && -f $d/release.json ]] || fail "$d: no card"
  if find "$d" -name '*.tmp.*' | grep -q .; then fail "$d: temp files left"; fi
}

# -- 0. the plan and its errors --------------------------------------------------
"$TESSERA" release "$M" -o rel "${OPTS[@]}" --plan par.jobs -q || fail "--plan"
N=$(wc -l <par.jobs)
[[ $N -eq 4 ]] || fail "expected 4 jobs (prepare, 2 variants, collect), got $N"
grep -q -- '--step prepare' <(sed -n 1p par.jobs) || fail "line 1 is not prepare"
grep -q -- '--collect' <(sed -n "${N}p" par.jobs) || fail "line $N is not collect"
# bad NEEDLE CMD...: CMD exits 2 with NEEDLE in its message.
bad() {
  local needle=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  [[ $rc -eq 2 && $out == *"$needle"* ]] || fail "$*: expected exit 2 and \"$needle\", got $rc: $out"
}
bad "has 4 jobs (1..4)" "$TESSERA" release --job 9 --plan par.jobs
bad SLURM_ARRAY_TASK_ID env -u SLURM_ARRAY_TASK_ID -u JOB_COMPLETION_INDEX "$TESSERA" release --job env --plan par.jobs
# Kubernetes' index is 0-based: --job-offset maps it onto the lines (3 + 2 = 5 > 4)
JOB_COMPLETION_INDEX=3 bad "job 5: par.jobs has 4 jobs" "$TESSERA" release --job env --job-offset 2 --plan par.jobs
"$TESSERA" release "$M" -o other --types Q8_0 --plan other.jobs -q || fail "--plan (other)"
sed -n 1p par.jobs | sed "s/ 'rel'\$/ 'other'/" >wrong.jobs
grep -q "'other'" wrong.jobs || fail "wrong.jobs: $(cat wrong.jobs)"
bad "belongs to plan" "$TESSERA" release --job 1 --plan wrong.jobs
sed 's/"tessera [0-9.]*"/"tessera 0.0.0-old"/' other/.work/plan.json >p.json && mv p.json other/.work/plan.json
bad "written by tessera 0.0.0-old" "$TESSERA" release --collect other
bad "a type of the plan" "$TESSERA" release --step Q2_K rel
step "plan: $N jobs; bad jobs refused"

# -- 1. GNU parallel -------------------------------------------------------------
ran=0
if command -v parallel >/dev/null; then
  "$TESSERA" release --job 1 --plan par.jobs -q || fail "prepare job"
  sed -n "2,$((N - 1))p" par.jobs | parallel --will-cite --halt now,fail=1 -j 2 || fail "GNU parallel jobs"
  # again: every job is idempotent (the variants are kept)
  sed -n "2,$((N - 1))p" par.jobs | parallel --will-cite --halt now,fail=1 -j 2 2>par.log || fail "GNU parallel rerun"
  grep -q "kept" par.log || fail "rerun did not keep the complete variants"
  "$TESSERA" release --job "$N" --plan par.jobs -q || fail "collect job"
  mv rel par
  same_as_single par
  grep -q "imatrix.gguf" par/SHA256SUMS || fail "par: no imatrix in SHA256SUMS"
  step "GNU parallel: files byte-identical to the single-process release"
  ran=1
else
  echo "GNU parallel not installed (Debian package parallel, scripts/deps.sh): that part left out"
fi

# -- 2. Slurm --------------------------------------------------------------------
# Prints why Slurm cannot run here, or nothing.
slurm_missing() {
  [[ $(id -u) -eq 0 ]] || { echo "not root (slurmd and munged are started as root)"; return; }
  local b
  for b in munged slurmctld slurmd sbatch squeue sinfo; do
    command -v "$b" >/dev/null || [[ -x /usr/sbin/$b ]] || { echo "$b not installed (slurm-wlm, munge)"; return; }
  done
}

start_slurm() {
  local S=$TMP/slurm host cpus mem
  mkdir -p "$S"/{munge,state,spool,log} && chmod 700 "$S/munge"
  dd if=/dev/urandom of="$S/munge/munge.key" bs=1024 count=1 status=none && chmod 400 "$S/munge/munge.key"
  PATH=/usr/sbin:$PATH
  munged --force -S "$S/munge/sock" --key-file="$S/munge/munge.key" --pid-file="$S/munge/pid" \
    --log-file="$S/munge/log" --seed-file="$S/munge/seed" 2>"$S/log/munged.err" ||
    { echo "munged does not start: $(tail -2 "$S/log/munged.err")"; return 1; }
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2))
  local port=$((20000 + RANDOM % 20000))
  cat >"$S/slurm.conf" <<EOF
ClusterName=tstest
SlurmctldHost=$host
SlurmUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$S/munge/sock
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool/%n
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$S/slurm.conf
  slurmctld -i 2>"$S/log/ctld.err" || { echo "slurmctld does not start: $(tail -2 "$S/log/ctld.err")"; return 1; }
  slurmd 2>"$S/log/slurmd.err" || { echo "slurmd does not start: $(tail -2 "$S/log/slurmd.err")"; return 1; }
  local _
  for _ in $(seq 1 40); do
    sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)' && return 0
    sleep 0.5
  done
  echo "the node does not come up: $(sinfo -h 2>&1 | head -1); $(tail -2 "$S/log/slurmd.log" 2>/dev/null)"
  return 1
}

why=$(slurm_missing)
if [[ -z $why ]] && ! start_slurm >"$TMP/slurm-start.log" 2>&1; then
  why=$(tail -1 "$TMP/slurm-start.log")
fi
if [[ -n $why ]]; then
  echo "Slurm part left out: $why"
else
  "$TESSERA" release "$M" -o rel "${OPTS[@]}" --plan slurm.jobs -q || fail "--plan (slurm)"
  N=$(wc -l <slurm.jobs)
  # prepare, then the array, then collect after it: the sbatch script of docs/release.md
  cat >release.sbatch <<EOF
#!/bin/bash
#SBATCH --output=$TMP/slurm-%A_%a.out
exec "$TESSERA" release --job env --plan "$TMP/slurm.jobs"
EOF
  prep=$(sbatch --parsable --array=1 -D "$TMP" release.sbatch) || fail "sbatch prepare"
  arr=$(sbatch --parsable --array=2-$((N - 1)) --dependency=afterok:"$prep" -D "$TMP" release.sbatch) ||
    fail "sbatch --array"
  timeout 300 sbatch --parsable --wait --array="$N" --dependency=afterok:"$arr" -D "$TMP" release.sbatch >/dev/null ||
    { cat "$TMP"/slurm-*.out; tail -5 "$TMP/slurm/log/slurmctld.log"; fail "sbatch collect (--wait)"; }
  grep -l "job 2 of $N" "$TMP"/slurm-*.out >/dev/null || fail "the array job did not run job 2"
  mv rel viaslurm
  same_as_single viaslurm
  step "Slurm (sbatch --array, afterok): files byte-identical to the single-process release"
  ran=1
fi

[[ $ran -eq 1 ]] || skip "neither GNU parallel nor Slurm could run"
echo "PASS"
