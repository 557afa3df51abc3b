#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>

#include "devices/bus_device.hpp"
#include "devices/interrupt.hpp"

namespace keel::devices {

// A 16550A UART as Linux's 8250 driver uses it: transmit goes straight to `output` (never
// blocks the guest), receive is fed by `enqueue_input`. FIFOs are emulated as "always ready".
class Serial : public BusDevice {
 public:
  using Output = std::function<void(std::span<const std::uint8_t>)>;

  Serial(std::shared_ptr<InterruptLine> irq, Output output)
      : irq_(std::move(irq)), output_(std::move(output)) {}

  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  // Bytes typed on the host side for the guest to read.
  void enqueue_input(std::span<const std::uint8_t> bytes);

  static constexpr std::size_t kInputLimit = 4096;  // older input is dropped beyond this

 private:
  std::uint8_t read_register(std::uint8_t reg);
  void write_register(std::uint8_t reg, std::uint8_t value);
  // Recomputes IIR from state and raises the line when an enabled condition is pending.
  void update_interrupt(bool raise_edge);
  bool loopback() const;

  std::shared_ptr<InterruptLine> irq_;
  Output output_;
  std::mutex mutex_;
  std::deque<std::uint8_t> input_;
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
