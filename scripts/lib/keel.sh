# shellcheck shell=bash
# What Keel's host-side scripts share (bash): messages, usage, tools, and reading the marker lines
# scripts/testbed/run prints (KEEL-TESTBED key=value ...). Sourced, never run. Set
# KEEL_LOG_PREFIX before sourcing (or any time) to name the messages; the script's name otherwise.
# The scripts that run inside the emulated host and the guests are busybox sh and use
# scripts/testbed/scenario-lib.sh instead.

# Progress and errors go to stderr, so that stdout stays machine-readable.
say() { printf '%s: %s\n' "${KEEL_LOG_PREFIX:-${0##*/}}" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "${KEEL_LOG_PREFIX:-${0##*/}}" "$*" >&2
  exit 1
}

# Prints the running script's header (the comment block from line 2 to the first line that is
# not a comment), without the '# ', and exits 2.
usage() {
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0" >&2
  exit 2
}

need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing: run scripts/setup.sh"
  done
}

# ---- markers ----

# The marker lines of a run's raw marker file (the serial port's bytes), one per line.
markers_from() {
  tr -d '\r' 2>/dev/null <"$1" | grep -a '^KEEL-TESTBED ' || true
}

# The value of KEY in a marker line, "" if absent (the first KEY= wins).
field() {
  local line=$1 key=$2 tok
  local -a toks
  read -r -a toks <<<"$line"
  for tok in "${toks[@]}"; do
    if [[ $tok == "$key="* ]]; then
      printf '%s\n' "${tok#*=}"
      return 0
    fi
  done
  return 0
}

# follow_markers PID RAW HANDLER [STALL_SECONDS STALL_FLAG]: while PID lives (and once after),
# calls HANDLER with each new marker line of RAW. With STALL_SECONDS, a silence that long means
# the emulated host hung: PID is killed (its own clean-up ends QEMU) and STALL_FLAG created.
follow_markers() {
  local pid=$1 raw=$2 handler=$3 stall=${4:-0} flag=${5:-} seen=0 i alive=1 last=$SECONDS
  local -a lines
  while ((alive)); do
    sleep 2
    kill -0 "$pid" 2>/dev/null || alive=0
    mapfile -t lines < <(markers_from "$raw")
    if ((${#lines[@]} > seen)); then
      last=$SECONDS
    elif ((stall > 0 && alive && SECONDS - last > stall)); then
      say "no result for $((SECONDS - last)) s: the emulated host looks hung; stopping it"
      [[ -z $flag ]] || : >"$flag"
      kill "$pid" 2>/dev/null || true
      last=$SECONDS
    fi
    for ((i = seen; i < ${#lines[@]}; i++)); do
      "$handler" "${lines[i]}"
    done
    seen=${#lines[@]}
  done
}

# ---- builds ----

# The Release tree scripts/build.sh --release builds, for the C++ compiler $1 (CMake's choice
# when empty).
release_dir() {
  local repo
  repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
  printf '%s\n' "$repo/build-release${1:+-${1##*/}}"
}

# release_build CXX LOG TARGET...: builds TARGETs of the Release tree (output to LOG, its tail
# shown on failure) and prints the tree's directory.
release_build() {
  local cxx=$1 log=$2 repo
  shift 2
  repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
  say "building $* (Release, no sanitizers) in $(release_dir "$cxx") …"
  KEEL_CXX=$cxx timeout 1800 "$repo/scripts/build.sh" --release "$@" >"$log" 2>&1 ||
    { tail -n 40 "$log" >&2; die "building $* failed"; }
  release_dir "$cxx"
}
