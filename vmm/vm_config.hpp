#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/size.hpp"

namespace keel::vmm {

enum class SerialMode { kTty, kFile, kOff };

// Everything needed to build one VM. Filled from the command line (cli.hpp) or, later, the API.
struct VmConfig {
  std::uint32_t boot_vcpus = 1;
  std::uint64_t memory_size = 512 * kMiB;
  bool memory_shared = false;
  bool memory_hugepages = false;

  std::string kernel;
  std::optional<std::string> initramfs;
  std::string cmdline = "console=ttyS0";

  SerialMode serial = SerialMode::kTty;
  std::string serial_file;  // with SerialMode::kFile

  bool exit_on_reboot = false;  // --no-reboot: a guest reboot ends keel instead of restarting
};

inline constexpr std::uint32_t kMaxVcpus = 254;  // APIC ids 0..254 in xAPIC mode; 255 is broadcast

}  // namespace keel::vmm
