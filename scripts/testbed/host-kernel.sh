#!/usr/bin/env bash
# Provides the emulated host's kernel: Debian's newest linux-image-6.1.0-*-cloud-amd64-unsigned,
# downloaded with apt-get and reduced to vmlinuz plus the modules the testbed loads (with their
# dependencies, in load order). Cached; prints the kernel directory on stdout:
#   vmlinuz          the kernel
#   modules/*.ko     the modules, uncompressed
#   modules.load     "file.ko module_name" lines in dependency order
#   guest-modules.load  the same for the modules a Keel guest running this kernel loads from
#                    its initramfs (virtio disk, network and vsock drivers; see guest_modules)
#   version          package name and version (part of the image cache key)
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

# The modules the testbed needs; their dependencies are added from each module's .modinfo.
wanted_modules=(
  irqbypass kvm kvm-amd
  vfio vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci
  uio uio_pci_generic
  virtio_pci virtio_blk
  tun  # TAPs for keel's virtio-net (/dev/net/tun)
  virtio_net  # the emulated host's own NIC beside a passed-through e1000e (run --nic)
)
# What a guest booted by Keel with this kernel loads (tests/integration/guest/devices-init).
guest_modules=(
  virtio_pci virtio_blk virtio_net vmw_vsock_virtio_transport virtio_rng virtio_mem
  button evdev  # the ACPI power button as an input device (vm.power-button)
  fuse virtiofs  # virtio-fs shares (--fs, vm.add-fs)
)

resolve_package() {
  apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' 2>/dev/null |
    cut -d' ' -f1 | sort -V | tail -n1
}

# Prints one field of a module's .modinfo section (e.g. depends) without needing kmod.
modinfo_field() {
  local ko=$1 field=$2 tmp
  tmp=$(mktemp)
  objcopy -O binary --only-section=.modinfo "$ko" "$tmp"
  tr '\0' '\n' <"$tmp" | sed -n "s/^$field=//p" | head -n1
  rm -f -- "$tmp"
}

extract() {
  local pkg=$1 version=$2 dest=$3
  local lists
  lists=$(printf '%s\n' "${wanted_modules[*]}" "${guest_modules[*]}")
  [[ -s $dest/vmlinuz && -s $dest/modules.load && -s $dest/guest-modules.load &&
    $(cat "$dest/module-lists" 2>/dev/null) == "$lists" ]] && return 0
  local cache deb tmp start
  cache=$(testbed_cache)
  start=$(now_ms)
  say "downloading kernel package $pkg $version …"
  deb=$(apt_download "$pkg" "$version" "$cache/debs")
  tmp=$(mktemp -d "$cache/kernel/.extract.XXXXXX")
  # extract runs in with_lock's subshell: this trap fires when that subshell ends.
  extract_tmp=$tmp
  trap 'rm -rf -- "$extract_tmp"' EXIT
  dpkg-deb -x "$deb" "$tmp/root"
  local moddir
  moddir=$(find "$tmp/root/lib/modules" -mindepth 1 -maxdepth 1 -type d -print -quit)
  [[ -n $moddir ]] || die "$deb has no /lib/modules"

  # Index every module by its canonical name (dashes become underscores, as the kernel does).
  declare -A path_of=()
  local ko name
  while IFS= read -r ko; do
    name=$(basename -- "$ko")
    name=${name%%.ko*}
    path_of[${name//-/_}]=$ko
  done < <(find "$moddir/kernel" -name '*.ko*')

  mkdir -p "$tmp/out/modules"
  declare -A state=()
  local order=()
  visit() {
    local mod=${1//-/_} dep deps file
    [[ ${state[$mod]:-} == visited ]] && return 0
    [[ ${state[$mod]:-} == active ]] && die "module dependency cycle at $mod"
    file=${path_of[$mod]:-}
    [[ -n $file ]] || die "module $mod is not in $pkg"
    case $file in
      *.ko) ;;
      *.ko.xz) xz -dc -- "$file" >"$tmp/out/modules/$mod.ko"; file="$tmp/out/modules/$mod.ko" ;;
      *.ko.zst) zstd -qdc -- "$file" >"$tmp/out/modules/$mod.ko"; file="$tmp/out/modules/$mod.ko" ;;
      *.ko.gz) gzip -dc -- "$file" >"$tmp/out/modules/$mod.ko"; file="$tmp/out/modules/$mod.ko" ;;
      *) die "unknown module format: $file" ;;
    esac
    path_of[$mod]=$file
    state[$mod]=active
    deps=$(modinfo_field "$file" depends)
    for dep in ${deps//,/ }; do
      visit "$dep"
    done
    state[$mod]=visited
    order+=("$mod")
  }
  # resolve LIST_FILE MODULE...: each module after its dependencies, into LIST_FILE.
  resolve() {
    local list=$1 mod
    shift
    state=()
    order=()
    for mod in "$@"; do
      visit "$mod"
    done
    for mod in "${order[@]}"; do
      [[ -e $tmp/out/modules/$mod.ko ]] || cp -- "${path_of[$mod]}" "$tmp/out/modules/$mod.ko"
      printf '%s.ko %s\n' "$mod" "$mod" >>"$list"
    done
  }
  resolve "$tmp/out/modules.load" "${wanted_modules[@]}"
  local host_count=${#order[@]}
  resolve "$tmp/out/guest-modules.load" "${guest_modules[@]}"
  printf '%s\n' "$lists" >"$tmp/out/module-lists"
  cp -- "$(find "$tmp/root/boot" -name 'vmlinuz-*' -print -quit)" "$tmp/out/vmlinuz"
  printf '%s %s %s\n' "$pkg" "$version" "$(basename -- "$moddir")" >"$tmp/out/version"
  rm -rf -- "$dest"
  mv -- "$tmp/out" "$dest"
  # The extracted kernel is the cache; the package is not needed again.
  rm -f -- "$deb"
  say "kernel $pkg $version ready ($host_count host modules, ${#order[@]} guest modules) in $(elapsed_since "$start")"
}

main() {
  need_tools apt-cache apt-get dpkg-deb objcopy sha256sum flock
  local cache pkg version dest
  cache=$(testbed_cache)
  pkg=${KEEL_TESTBED_KERNEL_PACKAGE:-$(resolve_package)}
  if [[ -z $pkg ]]; then
    # No package lists (apt-get update never ran, or no network): use the newest cached kernel.
    dest=$(find "$cache/kernel" -mindepth 2 -maxdepth 2 -name modules.load -printf '%h\n' 2>/dev/null | sort -V | tail -n1)
    [[ -n $dest ]] || die "apt-cache knows no linux-image-6.1.0-*-cloud-amd64-unsigned: run 'apt-get update'"
    say "apt-cache found no kernel package; using the cached $(cat "$dest/version")"
    printf '%s\n' "$dest"
    return 0
  fi
  version=$(apt_candidate "$pkg")
  [[ -n $version ]] || die "apt-cache has no version of $pkg"
  dest="$cache/kernel/${pkg}_${version//:/_}"
  mkdir -p "$cache/kernel"
  with_lock "$cache/kernel/.lock" extract "$pkg" "$version" "$dest"
  printf '%s\n' "$dest"
}

main "$@"
