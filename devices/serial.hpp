#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "devices/bus_device.hpp"
#include "devices/interrupt.hpp"

namespace keel::devices {

// A 16550A UART as Linux's 8250 driver uses it: transmit goes to `output` (never blocks the
// guest), receive is fed by `enqueue_input`. FIFOs are emulated as "always ready".
// Output is passed on a line at a time: at a newline, when kOutputBatch bytes wait, when the
// guest writes IER (Linux does at the end of every console write and when its tty buffer runs
// empty, so a prompt without a newline shows at once) and at flush(). A console byte costs the
// guest an exit; passing each on alone also cost a write(2) and a wake-up of the reader.
class Serial : public BusDevice {
 public:
  using Output = std::function<void(std::span<const std::uint8_t>)>;

  Serial(std::shared_ptr<InterruptLine> irq, Output output)
      : irq_(std::move(irq)), output_(std::move(output)) {}
  ~Serial() override;
  Serial(const Serial&) = delete;
  Serial& operator=(const Serial&) = delete;

  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  // Bytes typed on the host side for the guest to read.
  void enqueue_input(std::span<const std::uint8_t> bytes);

  // Bytes the guest wrote to the data register, in order, replayed from KVM's coalesced ring:
  // the same as that many byte writes at offset 0.
  void write_data(std::span<const std::uint8_t> bytes);

  // Passes on the output not passed on yet (a VM that stops, a partial line).
  void flush();

  static constexpr std::size_t kOutputBatch = 1024;

  // Called with true while the guest polls the transmitter (its interrupt off, no loopback):
  // then a data-register write has no effect the guest can see before its next access, and may
  // be coalesced; false when that stops. Called at once with the current state, then on each
  // change, on the thread of the access that changed it (holding the device's lock).
  using PolledHandler = std::function<void(bool polled)>;
  void on_transmit_polled(PolledHandler handler);

  static constexpr std::size_t kInputLimit = 4096;  // older input is dropped beyond this

 private:
  std::uint8_t read_register(std::uint8_t reg);
  void write_register(std::uint8_t reg, std::uint8_t value);
  // Recomputes IIR from state and raises the line when an enabled condition is pending.
  void update_interrupt(bool raise_edge);
  bool loopback() const;
  bool transmit_polled() const;
  // One byte written to the data register: the divisor, loopback input or output.
  void transmit(std::uint8_t value);
  void flush_locked();
  // Tells the handler when transmit_polled() changed from `was`.
  void report_polled(bool was);

  std::shared_ptr<InterruptLine> irq_;
  Output output_;
  PolledHandler polled_handler_;
  std::mutex mutex_;
  std::deque<std::uint8_t> input_;
  std::vector<std::uint8_t> pending_output_;
  std::uint8_t ier_ = 0;
  std::uint8_t lcr_ = 0x03;  // 8N1
  std::uint8_t mcr_ = 0x08;  // OUT2
  std::uint8_t scr_ = 0;
  std::uint8_t dll_ = 0x0c;  // 9600 baud
  std::uint8_t dlh_ = 0;
  std::uint8_t msr_ = 0xb0;  // DCD, DSR, CTS
  bool thr_empty_pending_ = false;
};

}  // namespace keel::devices
