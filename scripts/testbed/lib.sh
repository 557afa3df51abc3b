# shellcheck shell=bash
# Helpers shared by the testbed scripts (on top of scripts/lib/keel.sh: say, die, need_tools,
# markers). Sourced, never run.

# shellcheck source=../lib/keel.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/../lib/keel.sh"
KEEL_LOG_PREFIX=testbed

# Where everything the testbed downloads or builds is kept between runs.
testbed_cache() {
  printf '%s\n' "${KEEL_CACHE:-${HOME:-/tmp}/.cache/keel}/testbed"
}

# Seconds since the epoch with millisecond resolution, for timing steps.
now_ms() {
  date +%s%3N
}

elapsed_since() {
  local start=$1
  local ms=$(($(now_ms) - start))
  printf '%d.%01ds' $((ms / 1000)) $(((ms % 1000) / 100))
}

# Hash of a list of files (content and the name each is stored under), read from stdin as
# "name<TAB>path" lines. Used as a cache key.
hash_inputs() {
  local name path
  while IFS=$'\t' read -r name path; do
    printf '%s\t%s\n' "$name" "$(sha256sum <"$path" | cut -d' ' -f1)"
  done | sha256sum | cut -c1-16
}

# Runs "$@" with an exclusive lock on a file, so that concurrent runs do not build the same
# cache entry twice. The lock is bounded: a stuck holder makes us fail, not hang.
with_lock() {
  local lock=$1
  shift
  mkdir -p -- "$(dirname -- "$lock")"
  (
    flock -w 900 9 || die "timed out waiting for the lock $lock"
    "$@"
  ) 9>"$lock"
}

# Downloads one Debian package (pinned version) into a directory, unless it is already there.
# Prints the path of the .deb.
apt_download() {
  local pkg=$1 version=$2 dir=$3
  local arch deb
  arch=$(dpkg --print-architecture)
  # Debian encodes the epoch colon as %3a in file names.
  deb="$dir/${pkg}_${version//:/%3a}_${arch}.deb"
  if [[ ! -s $deb ]]; then
    mkdir -p -- "$dir"
    local tmp
    tmp=$(mktemp -d "$dir/.download.XXXXXX")
    # apt drops privileges to _apt for downloads; let it write into the temporary directory.
    chmod 0777 "$tmp"
    (cd "$tmp" && apt-get download -qq "$pkg=$version" 2>&1 | grep -v 'unsandboxed' >&2) || true
    local got
    got=$(find "$tmp" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)
    [[ -n $got ]] || { rm -rf -- "$tmp"; die "apt-get download $pkg=$version failed (has 'apt-get update' run?)"; }
    mv -- "$got" "$deb"
    rm -rf -- "$tmp"
  fi
  printf '%s\n' "$deb"
}

# Newest version of a Debian package that apt knows about, or nothing.
apt_candidate() {
  apt-cache show --no-all-versions "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -n1
}
