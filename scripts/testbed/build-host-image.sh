#!/usr/bin/env bash
# Builds the emulated host's initramfs: static busybox, /init (host-init), the kernel modules,
# Keel's binaries with the shared libraries they need, the scenario, and any extra files (a guest
# kernel and initramfs for Keel to boot). Cached by a hash of every input; prints the path of the
# initramfs on stdout.
#
# usage: build-host-image.sh --kernel-dir DIR --scenario FILE [--bin FILE]... [--file SRC:DEST]...
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

kernel_dir=
scenario=
bins=()
files=()
while (($#)); do
  case $1 in
    --kernel-dir) kernel_dir=${2:?}; shift 2 ;;
    --scenario) scenario=${2:?}; shift 2 ;;
    --bin) bins+=("${2:?}"); shift 2 ;;
    --file) files+=("${2:?}"); shift 2 ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ -n $kernel_dir && -n $scenario ]] || usage
[[ -f $kernel_dir/modules.load ]] || die "$kernel_dir is not a kernel directory from host-kernel.sh"
[[ -f $scenario ]] || die "scenario $scenario does not exist"
need_tools busybox cpio ldd sha256sum flock

busybox=$(command -v busybox)
[[ $(ldd "$busybox" 2>&1 || true) == *'not a dynamic executable'* ]] ||
  die "$busybox is not static: install busybox-static"

# Every file of the image as "destination<TAB>source", the manifest that is hashed and copied.
manifest=$(mktemp)
trap 'rm -f -- "$manifest"' EXIT
add() {
  [[ -f $2 ]] || die "$2 does not exist"
  printf '%s\t%s\n' "$1" "$(readlink -f -- "$2")" >>"$manifest"
}

add /bin/busybox "$busybox"
add /init "$here/host-init"
add /keel/testbed.sh "$here/scenario-lib.sh"
add /keel/scenario.sh "$scenario"
# The testbed scripts themselves are part of the key: a change to the driver rebuilds the image.
for f in "$here"/run "$here"/*.sh; do
  add "/keel/testbed-src/$(basename -- "$f")" "$f"
done
add /keel/kernel-version "$kernel_dir/version"
add /lib/modules/modules.load "$kernel_dir/modules.load"
while read -r ko _; do
  add "/lib/modules/$ko" "$kernel_dir/modules/$ko"
done <"$kernel_dir/modules.load"

declare -A libs=()
for bin in "${bins[@]}"; do
  [[ -f $bin && -x $bin ]] || die "binary $bin does not exist or is not executable"
  add "/keel/bin/$(basename -- "$bin")" "$bin"
  # Shared libraries keep their absolute paths so the dynamic loader finds them as on this machine.
  if ldd_out=$(ldd "$bin" 2>/dev/null); then
    while read -r lib; do
      libs[$lib]=1
    done < <(sed -n -e 's/.*=> \(\/[^ ]*\) (0x.*/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p' <<<"$ldd_out")
  fi
done
for lib in "${!libs[@]}"; do
  add "$lib" "$lib"
done
for spec in "${files[@]}"; do
  [[ $spec == *:/* ]] || die "--file wants SRC:/absolute/dest, got '$spec'"
  add "${spec#*:}" "${spec%%:*}"
done

sort -o "$manifest" "$manifest"
key=$(hash_inputs <"$manifest")
cache=$(testbed_cache)
image="$cache/images/$key"

build() {
  if [[ -s $image/initramfs.cpio ]]; then
    touch "$image"
    say "reusing cached image $key"
    return 0
  fi
  local start tmp count
  start=$(now_ms)
  count=$(wc -l <"$manifest")
  say "building host initramfs ($count files) …"
  tmp=$(mktemp -d "$cache/images/.build.XXXXXX")
  build_tmp=$tmp
  trap 'rm -rf -- "$build_tmp"' EXIT
  mkdir -p "$tmp/root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,etc,keel/bin,keel/guest}
  local dest src
  while IFS=$'\t' read -r dest src; do
    mkdir -p -- "$tmp/root$(dirname -- "$dest")"
    cp -- "$src" "$tmp/root$dest"
  done <"$manifest"
  chmod 0755 "$tmp/root/init" "$tmp/root/bin/busybox"
  local applet
  for applet in $(busybox --list-full); do
    [[ -e $tmp/root/$applet ]] || ln -s /bin/busybox "$tmp/root/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$tmp/root/etc/passwd"
  printf 'root:x:0:\n' >"$tmp/root/etc/group"
  # An uncompressed archive: QEMU loads it as is and the emulated kernel need not inflate it,
  # which is slow under TCG.
  (cd "$tmp/root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet >"$tmp/initramfs.cpio")
  cp -- "$manifest" "$tmp/manifest"
  mkdir -p "$tmp/image"
  mv -- "$tmp/initramfs.cpio" "$tmp/manifest" "$tmp/image/"
  rm -rf -- "$image"
  mv -- "$tmp/image" "$image"
  say "host initramfs $key: $(du -h "$image/initramfs.cpio" | cut -f1) in $(elapsed_since "$start")"
  # Keep the cache bounded: the ten most recently used images stay.
  find "$cache/images" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%T@ %p\n' |
    sort -rn | tail -n +11 | cut -d' ' -f2- | while read -r old; do rm -rf -- "$old"; done
}

mkdir -p "$cache/images"
with_lock "$cache/images/.lock" build
printf '%s\n' "$image/initramfs.cpio"
