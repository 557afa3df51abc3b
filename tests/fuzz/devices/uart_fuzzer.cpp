// The 16550 UART driven as a guest might: register reads and writes of any size at any of its
// eight offsets (and past them), with host input arriving in between. Properties:
//   - nothing crashes, overflows or deadlocks (ASan, UBSan);
//   - checked after every single operation: the host never gets more than the guest sent to
//     THR (DLAB clear, outside loopback; loopback and divisor writes, reads and host input send
//     nothing), never less than all of it but one partial batch, and all of it after a newline
//     or an IER write (where Linux ends each console write) and after flush();
//   - a read of RBR while data is ready takes exactly one byte of what was typed or looped back
//     and not yet read: the receiver never reads more than it was given.
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
  std::uint64_t typed = 0, received = 0, sent = 0;
  while (in.remaining_bytes() > 0) {
    bool passes_on = false;  // this operation must leave nothing waiting
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
      } else if (offset == 1) {
        passes_on = true;
      } else if (offset == 0 && (lcr & 0x80) == 0) {
        if ((mcr & 0x10) == 0) {
          ++sent;
          passes_on = bytes[0] == '\n';
        } else {
          ++typed;  // loopback: back to the receiver
        }
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
      if ((mcr & 0x10) == 0) {  // in loopback mode the receiver hears only itself
        typed += bytes.size();
      }
      uart.enqueue_input(bytes);
    }
    KEEL_FUZZ_CHECK(output <= sent);
    KEEL_FUZZ_CHECK(sent - output < keel::devices::Serial::kOutputBatch);
    KEEL_FUZZ_CHECK(!passes_on || output == sent);
    KEEL_FUZZ_CHECK(received <= typed);
  }
  uart.flush();
  KEEL_FUZZ_CHECK(output == sent);
  return 0;
}
