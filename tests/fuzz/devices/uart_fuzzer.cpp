// The 16550 UART driven as a guest might: register reads and writes of any size at any of its
// eight offsets (and past them), with host input arriving in between. Properties:
//   - nothing crashes, overflows or deadlocks (ASan, UBSan);
//   - the host sees output only from writes to THR (DLAB clear), one byte each, and none in
//     loopback mode;
//   - bytes read through RBR while data is ready are at most what was typed or looped back.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "devices/interrupt.hpp"
#include "devices/serial.hpp"
#include "tests/fuzz/api/fuzz_checks.hpp"

namespace {

class CountingLine final : public keel::devices::InterruptLine {
 public:
  void trigger() override { ++edges; }
  std::uint64_t edges = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  auto line = std::make_shared<CountingLine>();
  std::uint64_t output = 0;
  keel::devices::Serial uart(line,
                             [&](std::span<const std::uint8_t> bytes) { output += bytes.size(); });
  std::uint8_t lcr = 0x03, mcr = 0x08;
  std::uint64_t typed = 0, received = 0, thr_writes = 0;
  while (in.remaining_bytes() > 0) {
    const int op = in.ConsumeIntegralInRange<int>(0, 3);
    const std::uint64_t offset = in.ConsumeIntegralInRange<std::uint64_t>(0, 9);
    const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(1, 4);
    if (op == 0) {  // write
      std::vector<std::uint8_t> bytes = in.ConsumeBytes<std::uint8_t>(n);
      if (bytes.empty()) {
        break;
      }
      if (offset == 3) {
        lcr = bytes[0];
      } else if (offset == 4) {
        mcr = bytes[0];
      } else if (offset == 0 && (lcr & 0x80) == 0) {
        ++((mcr & 0x10) == 0 ? thr_writes : typed);  // loopback: back to the receiver
      }
      uart.write(offset, bytes);
    } else if (op == 1) {  // read
      std::uint8_t b[4] = {};
      std::uint8_t lsr[1] = {};
      uart.read(5, lsr);
      uart.read(offset, std::span(b, n));
      if (offset == 0 && (lcr & 0x80) == 0 && (lsr[0] & 1) != 0) {
        ++received;
      }
    } else {  // host input
      std::vector<std::uint8_t> bytes =
          in.ConsumeBytes<std::uint8_t>(in.ConsumeIntegralInRange<std::size_t>(0, 64));
      typed += bytes.size();
      uart.enqueue_input(bytes);
    }
    KEEL_FUZZ_CHECK(output <= thr_writes);
    KEEL_FUZZ_CHECK(received <= typed);
  }
  return 0;
}
