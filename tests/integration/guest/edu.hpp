#pragma once
// QEMU's edu device (1234:11e8) as the guest test programs drive it: BAR0 registers and limits
// (QEMU's docs/specs/edu.rst; the transfer limit is QEMU 7.2's).

#include <cstddef>
#include <cstdint>

namespace edu {

inline constexpr std::uint32_t kId = 0x010000ed;  // register 0 of a QEMU 7.2 edu
inline constexpr std::uint64_t kRegId = 0x00;
inline constexpr std::uint64_t kRegRaiseIrq = 0x60;
inline constexpr std::uint64_t kRegAckIrq = 0x64;
inline constexpr std::uint64_t kRegDmaSrc = 0x80;
inline constexpr std::uint64_t kRegDmaDst = 0x88;
inline constexpr std::uint64_t kRegDmaCount = 0x90;
inline constexpr std::uint64_t kRegDmaCmd = 0x98;
inline constexpr std::uint32_t kDmaStart = 1;
inline constexpr std::uint32_t kDmaToRam = 2;
inline constexpr std::uint64_t kBuffer = 0x40000;       // the device's own DMA buffer
inline constexpr std::uint64_t kDmaLimit = 1ULL << 28;  // its DMA mask
inline constexpr std::size_t kTransfer = 4000;          // shorter than 4096: a QEMU 7.2 limit
inline constexpr std::size_t kPage = 4096;

}  // namespace edu
