# shellcheck shell=bash
# qemu_firmware_files ARRAY: appends to the array named ARRAY the scripts/testbed/run options
# that carry QEMU 7.2's firmware into the emulated host at /keel/share/qemu (qemu -L there):
# what -M microvm (qboot, linuxboot_dma) and -M q35 (SeaBIOS, kvmvapic) open, and pvh.bin for a
# PVH kernel. Fails, naming the file, when one is missing.
qemu_firmware_files() {
  local -n into=$1
  local fw dir src
  for fw in bios-microvm.bin linuxboot_dma.bin kvmvapic.bin bios-256k.bin pvh.bin; do
    src=
    for dir in /usr/share/qemu /usr/share/seabios; do
      [[ -e $dir/$fw ]] && { src=$dir/$fw; break; }
    done
    [[ -n $src ]] || { printf 'bench: error: QEMU firmware %s not found in /usr/share/qemu or /usr/share/seabios\n' "$fw" >&2; return 1; }
    into+=(--file "$src:/keel/share/qemu/$fw")
  done
}
