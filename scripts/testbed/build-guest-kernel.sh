#!/usr/bin/env bash
# Builds the guest kernel that Keel boots inside the emulated host: Debian's linux-source-6.1,
# tinyconfig plus the options below (virtio, virtio-iommu, VFIO, ACPI for SMP, PVH entry note,
# and the drivers of the passed-through NVMe controller and e1000e NIC, with IPv4 and POSIX timers for the tools that drive the latter).
# Cached by a hash of the source version, the option list and this script; prints the output
# directory on stdout:
#   bzImage   the compressed kernel
#   vmlinux   the ELF kernel with the PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)
#   config    the resolved .config
# Takes about 3 minutes on two cores the first time; the build log is kept next to the output.
#
# usage: build-guest-kernel.sh [--jobs N]
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

# Enabled on top of tinyconfig (DESIGN.md §5). Each must still be "=y" after olddefconfig.
options=(
  64BIT PCI PCI_MSI ACPI SMP TTY PRINTK SERIAL_8250 SERIAL_8250_CONSOLE
  BLK_DEV_INITRD RD_GZIP DEVTMPFS DEVTMPFS_MOUNT VIRTIO_MENU VIRTIO_PCI VIRTIO_BLK VIRTIO_CONSOLE
  IOMMU_SUPPORT VIRTIO_IOMMU VFIO VFIO_PCI MEMORY_HOTPLUG MEMORY_HOTREMOVE MIGRATION COMPACTION
  VIRTIO_MEM HYPERVISOR_GUEST PARAVIRT KVM_GUEST PVH PROC_FS SYSFS BINFMT_ELF BINFMT_SCRIPT BLOCK
  BLK_DEV HW_RANDOM HW_RANDOM_VIRTIO
  BLK_DEV_NVME NET INET NETDEVICES ETHERNET NET_VENDOR_INTEL E1000E POSIX_TIMERS
)
build_timeout=${KEEL_GUEST_KERNEL_TIMEOUT:-2400}

jobs=$(nproc)
while (($#)); do
  case $1 in
    --jobs) jobs=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
need_tools make gcc flex bison bc dpkg-deb xz readelf sha256sum flock timeout

cache=$(testbed_cache)
pkg=linux-source-6.1
version=$(apt_candidate "$pkg")
if [[ -z $version ]]; then
  version=$(find "$cache/src" -mindepth 1 -maxdepth 1 -name "$pkg-*" -printf '%f\n' 2>/dev/null |
    sed "s/^$pkg-//" | sort -V | tail -n1)
  [[ -n $version ]] || die "apt-cache knows no $pkg: run 'apt-get update'"
  say "apt-cache found no $pkg; using the cached source $version"
fi
key=$(printf '%s\n' "$pkg $version" "${options[*]}" "$(sha256sum <"${BASH_SOURCE[0]}")" | sha256sum | cut -c1-16)
dest="$cache/guest-kernel/$key"
src="$cache/src/$pkg-$version"

unpack_source() {
  [[ -f $src/.keel-unpacked ]] && return 0
  local start deb tmp tarball
  start=$(now_ms)
  say "downloading $pkg $version …"
  deb=$(apt_download "$pkg" "$version" "$cache/debs")
  tmp=$(mktemp -d "$cache/src/.unpack.XXXXXX")
  unpack_tmp=$tmp
  trap 'rm -rf -- "$unpack_tmp"' EXIT
  dpkg-deb -x "$deb" "$tmp/deb"
  tarball=$(find "$tmp/deb/usr/src" -maxdepth 1 -name 'linux-source-*.tar.*' -print -quit)
  [[ -n $tarball ]] || die "$deb carries no source tarball"
  say "unpacking $(basename -- "$tarball") …"
  mkdir -p "$tmp/src"
  tar -xf "$tarball" -C "$tmp/src" --strip-components=1
  touch "$tmp/src/.keel-unpacked"
  rm -rf -- "$src"
  mv -- "$tmp/src" "$src"
  rm -f -- "$deb"
  say "source ready in $(elapsed_since "$start")"
}

build() {
  if [[ -s $dest/bzImage && -s $dest/vmlinux ]]; then
    say "reusing cached guest kernel $key"
    return 0
  fi
  with_lock "$cache/src/.lock" unpack_source
  local obj="$cache/guest-kernel/.build-$key" log start
  log="$cache/guest-kernel/build-$key.log"
  mkdir -p "$obj"
  start=$(now_ms)
  say "configuring guest kernel (tinyconfig + ${#options[@]} options) …"
  local args=() opt
  for opt in "${options[@]}"; do args+=(-e "$opt"); done
  { make -C "$src" O="$obj" tinyconfig &&
    "$src/scripts/config" --file "$obj/.config" "${args[@]}" &&
    make -C "$src" O="$obj" olddefconfig; } >"$log" 2>&1 ||
    { tail -n 40 "$log" >&2; die "configuring the guest kernel failed (log: $log)"; }
  local missing=()
  for opt in "${options[@]}"; do
    grep -qx "CONFIG_$opt=y" "$obj/.config" || missing+=("$opt")
  done
  ((${#missing[@]} == 0)) || die "olddefconfig dropped: ${missing[*]} (a dependency is missing from the option list)"
  say "compiling guest kernel with $jobs jobs (about 3 minutes on 2 cores; log: $log) …"
  timeout "$build_timeout" make -C "$src" O="$obj" -j"$jobs" bzImage vmlinux >>"$log" 2>&1 ||
    { tail -n 40 "$log" >&2; die "compiling the guest kernel failed or took over ${build_timeout}s (log: $log)"; }
  # PVH boot needs the Xen PHYS32_ENTRY ELF note (type 0x12).
  readelf -n "$obj/vmlinux" | grep -qE 'Xen[[:space:]]+0x[0-9a-f]+[[:space:]]+(Unknown note type: \(0x00000012\)|.*PHYS32_ENTRY)' ||
    die "vmlinux has no PVH entry note"
  local tmp
  tmp=$(mktemp -d "$cache/guest-kernel/.out.XXXXXX")
  chmod 0755 "$tmp"
  cp -- "$obj/arch/x86/boot/bzImage" "$tmp/bzImage"
  cp -- "$obj/vmlinux" "$tmp/vmlinux"
  cp -- "$obj/.config" "$tmp/config"
  rm -rf -- "$dest"
  mv -- "$tmp" "$dest"
  say "guest kernel $key: bzImage $(du -h "$dest/bzImage" | cut -f1), vmlinux $(du -h "$dest/vmlinux" | cut -f1), in $(elapsed_since "$start")"
}

mkdir -p "$cache/src" "$cache/guest-kernel"
with_lock "$cache/guest-kernel/.lock-$key" build
printf '%s\n' "$dest"
