#!/usr/bin/env bash
# Builds an emulated host's kernel with iommufd (IOMMUFD and the VFIO device cdev), which
# Debian's 6.1 and 6.12 kernels lack: Debian's linux-source-6.12 from bookworm-backports
# (downloaded through a private apt state in the cache; the machine's apt sources are left
# alone), tinyconfig plus the options below, everything built in. Cached by a hash of the source
# version, the option list and this script; prints a kernel directory in host-kernel.sh's shape:
#   vmlinuz             the kernel (bzImage)
#   modules.load        empty (nothing to load), and guest-modules.load, empty
#   config              the resolved .config
#   version             the source package and version (part of the image cache key)
# Takes about 11 minutes on two cores the first time; the build log is kept next to the output.
#
# usage: build-host-kernel.sh [--jobs N]
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

# Enabled on top of tinyconfig. Each must still be "=y" after olddefconfig.
options=(
  # boot from the testbed's initramfs, consoles, the tools host-init runs
  64BIT SMP PRINTK BUG TTY SERIAL_8250 SERIAL_8250_CONSOLE UNIX98_PTYS BLK_DEV_INITRD RD_GZIP
  BINFMT_ELF BINFMT_SCRIPT PROC_FS PROC_SYSCTL SYSFS DEVTMPFS DEVTMPFS_MOUNT TMPFS SHMEM
  # what keel asks of the kernel
  MULTIUSER FUTEX EPOLL SIGNALFD TIMERFD EVENTFD POSIX_TIMERS FILE_LOCKING ADVISE_SYSCALLS AIO
  MEMBARRIER RSEQ IO_URING SECCOMP SECCOMP_FILTER HUGETLBFS HUGETLB_PAGE MEMFD_CREATE
  TRANSPARENT_HUGEPAGE
  # the emulated q35 machine: PCI, its IOMMU (with interrupt remapping), SVM for KVM
  ACPI PCI PCI_MSI PCI_MMCONFIG PCI_QUIRKS HPET_TIMER X86_PM_TIMER
  IOMMU_SUPPORT INTEL_IOMMU IRQ_REMAP X86_X2APIC VIRTUALIZATION KVM KVM_AMD
  # VFIO both ways: type1 containers and groups, and iommufd with the device cdev
  IOMMUFD VFIO VFIO_GROUP VFIO_CONTAINER VFIO_IOMMU_TYPE1 VFIO_VIRQFD VFIO_PCI_CORE VFIO_PCI
  VFIO_DEVICE_CDEV
  # networking of the scenarios (a namespace, the host's virtio-net, TAPs), the NVMe controller
  NET UNIX INET NETDEVICES NET_CORE TUN VIRTIO_MENU VIRTIO_PCI VIRTIO_NET NAMESPACES NET_NS
  BLOCK BLK_DEV BLK_DEV_NVME
)
build_timeout=${KEEL_HOST_KERNEL_TIMEOUT:-3600}
suite=bookworm-backports
pkg=linux-source-6.12

jobs=$(nproc)
while (($#)); do
  case $1 in
    --jobs) jobs=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
need_tools make gcc flex bison bc dpkg-deb xz sha256sum flock timeout apt-get

cache=$(testbed_cache)
apt_state="$cache/apt-$suite"

# apt-get with a private state that knows only $suite.
private_apt() {
  apt-get -o "Dir::Etc::sourcelist=$apt_state/sources.list" -o Dir::Etc::sourceparts=- \
    -o "Dir::State::Lists=$apt_state/lists" -o "Dir::Cache=$apt_state/cache" "$@"
}

# The newest $pkg in $suite; the index is refreshed at most once a day.
resolve_version() {
  mkdir -p "$apt_state/lists/partial" "$apt_state/cache/archives/partial"
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian %s main\n' \
    "$suite" >"$apt_state/sources.list"
  chmod -R a+rwX "$apt_state"
  if [[ -z $(find "$apt_state/lists" -maxdepth 1 -name '*Packages*' -mtime -1 -print -quit) ]]; then
    say "reading $suite's package index …"
    private_apt update -qq >/dev/null 2>&1 || true
  fi
  apt-cache -o "Dir::Etc::sourcelist=$apt_state/sources.list" -o Dir::Etc::sourceparts=- \
    -o "Dir::State::Lists=$apt_state/lists" -o "Dir::Cache=$apt_state/cache" \
    show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n1
}

version=$(resolve_version)
if [[ -z $version ]]; then
  version=$(find "$cache/src" -mindepth 1 -maxdepth 1 -name "$pkg-*" -printf '%f\n' 2>/dev/null |
    sed "s/^$pkg-//" | sort -V | tail -n1)
  [[ -n $version ]] || die "no $pkg in $suite (is deb.debian.org reachable?) and none cached"
  say "$suite's index is out of reach; using the cached source $version"
fi
key=$(printf '%s\n' "$pkg $version" "${options[*]}" "$(sha256sum <"${BASH_SOURCE[0]}")" | sha256sum | cut -c1-16)
dest="$cache/host-kernel/$key"
src="$cache/src/$pkg-$version"

unpack_source() {
  [[ -f $src/.keel-unpacked ]] && return 0
  local start tmp tarball deb
  start=$(now_ms)
  say "downloading $pkg $version from $suite …"
  tmp=$(mktemp -d "$cache/src/.unpack.XXXXXX")
  unpack_tmp=$tmp
  trap 'rm -rf -- "$unpack_tmp"' EXIT
  chmod 0777 "$tmp"  # apt downloads as _apt
  (cd "$tmp" && private_apt download -qq "$pkg=$version" 2>&1 | grep -v 'unsandboxed' >&2) || true
  deb=$(find "$tmp" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)
  [[ -n $deb ]] || die "apt-get download $pkg=$version from $suite failed"
  dpkg-deb -x "$deb" "$tmp/deb"
  tarball=$(find "$tmp/deb/usr/src" -maxdepth 1 -name 'linux-source-*.tar.*' -print -quit)
  [[ -n $tarball ]] || die "$deb carries no source tarball"
  say "unpacking $(basename -- "$tarball") …"
  mkdir -p "$tmp/src"
  tar -xf "$tarball" -C "$tmp/src" --strip-components=1
  touch "$tmp/src/.keel-unpacked"
  rm -rf -- "$src"
  mv -- "$tmp/src" "$src"
  say "source ready in $(elapsed_since "$start")"
}

build() {
  if [[ -s $dest/vmlinuz ]]; then
    say "reusing cached host kernel $key"
    return 0
  fi
  with_lock "$cache/src/.lock" unpack_source
  local obj="$cache/host-kernel/.build-$key" log start
  log="$cache/host-kernel/build-$key.log"
  mkdir -p "$obj"
  start=$(now_ms)
  say "configuring host kernel (tinyconfig + ${#options[@]} options) …"
  local args=() opt
  for opt in "${options[@]}"; do args+=(-e "$opt"); done
  { make -C "$src" O="$obj" tinyconfig &&
    "$src/scripts/config" --file "$obj/.config" "${args[@]}" &&
    make -C "$src" O="$obj" olddefconfig; } >"$log" 2>&1 ||
    { tail -n 40 "$log" >&2; die "configuring the host kernel failed (log: $log)"; }
  local missing=()
  for opt in "${options[@]}"; do
    grep -qx "CONFIG_$opt=y" "$obj/.config" || missing+=("$opt")
  done
  ((${#missing[@]} == 0)) || die "olddefconfig dropped: ${missing[*]} (a dependency is missing from the option list)"
  say "compiling host kernel with $jobs jobs (about 11 minutes on 2 cores; log: $log) …"
  timeout "$build_timeout" make -C "$src" O="$obj" -j"$jobs" bzImage >>"$log" 2>&1 ||
    { tail -n 40 "$log" >&2; die "compiling the host kernel failed or took over ${build_timeout}s (log: $log)"; }
  local tmp
  tmp=$(mktemp -d "$cache/host-kernel/.out.XXXXXX")
  chmod 0755 "$tmp"
  cp -- "$obj/arch/x86/boot/bzImage" "$tmp/vmlinuz"
  cp -- "$obj/.config" "$tmp/config"
  mkdir -p "$tmp/modules"
  : >"$tmp/modules.load"
  : >"$tmp/guest-modules.load"
  printf '%s %s (built: %s)\n' "$pkg" "$version" "$key" >"$tmp/version"
  rm -rf -- "$dest"
  mv -- "$tmp" "$dest"
  rm -rf -- "$obj"
  say "host kernel $key: vmlinuz $(du -h "$dest/vmlinuz" | cut -f1), in $(elapsed_since "$start")"
}

mkdir -p "$cache/src" "$cache/host-kernel"
with_lock "$cache/host-kernel/.lock-$key" build
printf '%s\n' "$dest"
