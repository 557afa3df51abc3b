#!/usr/bin/env bash
# Builds an initramfs (gzip-compressed newc cpio) for a guest that Keel boots: static busybox
# with all its applets, /init = the given script, plus optional binaries (with their shared
# libraries, at the same absolute paths) and files. The archive is reproducible (fixed mtimes,
# owners and inode numbers), so identical inputs give identical bytes and the testbed's image
# cache is not invalidated by a rebuild.
#
# usage: build-guest-initramfs.sh --init SCRIPT [--bin FILE]... [--file SRC:/DEST]... -o OUT
#   --init SCRIPT     becomes /init (give it a "#!/bin/sh" line; it runs as PID 1 and should end
#                     with "poweroff -f")
#   --bin FILE        an executable for /bin, with its shared libraries; repeatable
#   --file SRC:/DEST  any file at an absolute path; repeatable
#   -o OUT            the .cpio.gz to write
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

init=
out=
bins=()
files=()
while (($#)); do
  case $1 in
    --init) init=${2:?}; shift 2 ;;
    --bin) bins+=("${2:?}"); shift 2 ;;
    --file) files+=("${2:?}"); shift 2 ;;
    -o | --output) out=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ -n $init && -n $out ]] || usage
[[ -f $init ]] || die "init script $init does not exist"
need_tools busybox cpio gzip ldd
busybox=$(command -v busybox)
[[ $(ldd "$busybox" 2>&1 || true) == *'not a dynamic executable'* ]] ||
  die "$busybox is not static: install busybox-static"

stage=$(mktemp -d)
trap 'rm -rf -- "$stage"' EXIT
root="$stage/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,etc}

put() {
  local src=$1 dest=$2
  [[ -f $src ]] || die "$src does not exist"
  mkdir -p -- "$root$(dirname -- "$dest")"
  cp -L -- "$src" "$root$dest"
}

put "$busybox" /bin/busybox
for applet in $(busybox --list-full); do
  [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done
put "$init" /init
chmod 0755 "$root/init" "$root/bin/busybox"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

for bin in "${bins[@]}"; do
  [[ -f $bin && -x $bin ]] || die "binary $bin does not exist or is not executable"
  put "$bin" "/bin/$(basename -- "$bin")"
  if ldd_out=$(ldd "$bin" 2>/dev/null); then
    while read -r lib; do
      [[ -e $root$lib ]] || put "$lib" "$lib"
    done < <(sed -n -e 's/.*=> \(\/[^ ]*\) (0x.*/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p' <<<"$ldd_out")
  fi
done
for spec in "${files[@]}"; do
  [[ $spec == *:/* ]] || die "--file wants SRC:/absolute/dest, got '$spec'"
  put "${spec%%:*}" "${spec#*:}"
done

find "$root" -exec touch -h -d @0 {} +
mkdir -p -- "$(dirname -- "$out")"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
  cpio -o -H newc -R 0:0 --reproducible --quiet | gzip -n -9) >"$stage/out.cpio.gz"
mv -- "$stage/out.cpio.gz" "$out"
say "guest initramfs $out: $(du -h "$out" | cut -f1)"
