#include "devices/serial.hpp"

namespace keel::devices {
namespace {

// Register offsets (DLAB selects the divisor latch at 0 and 1).
constexpr std::uint8_t kData = 0;
constexpr std::uint8_t kIer = 1;
constexpr std::uint8_t kIirFcr = 2;
constexpr std::uint8_t kLcr = 3;
constexpr std::uint8_t kMcr = 4;
constexpr std::uint8_t kLsr = 5;
constexpr std::uint8_t kMsr = 6;
constexpr std::uint8_t kScr = 7;

constexpr std::uint8_t kIerRda = 0x01;   // received data available
constexpr std::uint8_t kIerThre = 0x02;  // transmit holding register empty
constexpr std::uint8_t kIerMask = 0x0f;

constexpr std::uint8_t kIirNone = 0x01;
constexpr std::uint8_t kIirThre = 0x02;
constexpr std::uint8_t kIirRda = 0x04;
constexpr std::uint8_t kIirFifo = 0xc0;

constexpr std::uint8_t kLcrDlab = 0x80;
constexpr std::uint8_t kMcrLoop = 0x10;
constexpr std::uint8_t kLsrDataReady = 0x01;
constexpr std::uint8_t kLsrThrEmpty = 0x20;
constexpr std::uint8_t kLsrIdle = 0x40;

}  // namespace

Serial::~Serial() { flush(); }

bool Serial::loopback() const { return (mcr_ & kMcrLoop) != 0; }

bool Serial::transmit_polled() const { return (ier_ & kIerThre) == 0 && !loopback(); }

void Serial::on_transmit_polled(PolledHandler handler) {
  std::lock_guard lock(mutex_);
  polled_handler_ = std::move(handler);
  if (polled_handler_) {
    polled_handler_(transmit_polled());
  }
}

void Serial::report_polled(bool was) {
  if (polled_handler_ && transmit_polled() != was) {
    polled_handler_(!was);
  }
}

void Serial::transmit(std::uint8_t value) {
  if ((lcr_ & kLcrDlab) != 0) {
    dll_ = value;
    return;
  }
  thr_empty_pending_ = true;
  if (loopback()) {
    if (input_.size() < kInputLimit) {
      input_.push_back(value);
    }
    return;
  }
  pending_output_.push_back(value);
  if (value == '\n' || pending_output_.size() >= kOutputBatch) {
    flush_locked();
  }
}

void Serial::flush_locked() {
  if (!pending_output_.empty() && output_) {
    output_(pending_output_);
  }
  pending_output_.clear();
}

void Serial::flush() {
  std::lock_guard lock(mutex_);
  flush_locked();
}

void Serial::write_data(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) {
    return;
  }
  std::lock_guard lock(mutex_);
  for (std::uint8_t b : bytes) {
    transmit(b);
  }
  update_interrupt(/*raise_edge=*/true);
}

void Serial::read(std::uint64_t offset, std::span<std::uint8_t> data) {
  if (data.empty()) {
    return;
  }
  std::lock_guard lock(mutex_);
  // Only byte access is meaningful; wider reads return the register in the low byte.
  std::fill(data.begin(), data.end(), 0);
  data[0] = offset < 8 ? read_register(static_cast<std::uint8_t>(offset)) : 0xff;
}

void Serial::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  if (data.empty() || offset >= 8) {
    return;
  }
  std::lock_guard lock(mutex_);
  write_register(static_cast<std::uint8_t>(offset), data[0]);
}

void Serial::enqueue_input(std::span<const std::uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  if (loopback()) {
    return;
  }
  const bool was_empty = input_.empty();
  for (std::uint8_t b : bytes) {
    if (input_.size() >= kInputLimit) {
      input_.pop_front();
    }
    input_.push_back(b);
  }
  if (was_empty && !input_.empty()) {
    update_interrupt(/*raise_edge=*/true);
  }
}

std::uint8_t Serial::read_register(std::uint8_t reg) {
  switch (reg) {
    case kData: {
      if ((lcr_ & kLcrDlab) != 0) {
        return dll_;
      }
      if (input_.empty()) {
        return 0;
      }
      const std::uint8_t b = input_.front();
      input_.pop_front();
      update_interrupt(/*raise_edge=*/false);
      return b;
    }
    case kIer:
      return (lcr_ & kLcrDlab) != 0 ? dlh_ : ier_;
    case kIirFcr: {
      std::uint8_t iir = kIirNone;
      if ((ier_ & kIerRda) != 0 && !input_.empty()) {
        iir = kIirRda;
      } else if ((ier_ & kIerThre) != 0 && thr_empty_pending_) {
        iir = kIirThre;
        thr_empty_pending_ = false;  // reading IIR acknowledges THRE
      }
      return iir | kIirFifo;
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      return kLsrThrEmpty | kLsrIdle | (input_.empty() ? 0 : kLsrDataReady);
    case kMsr:
      if (loopback()) {
        // Loopback wires OUT2->DCD, OUT1->RI, RTS->CTS, DTR->DSR; the 8250 probe checks this.
        return static_cast<std::uint8_t>(((mcr_ & 0x08) << 4) | ((mcr_ & 0x04) << 4) |
                                         ((mcr_ & 0x02) << 3) | ((mcr_ & 0x01) << 5));
      }
      return msr_;
    case kScr:
      return scr_;
    default:
      return 0xff;
  }
}

void Serial::write_register(std::uint8_t reg, std::uint8_t value) {
  switch (reg) {
    case kData:
      transmit(value);
      update_interrupt(/*raise_edge=*/true);
      return;
    case kIer: {
      flush_locked();
      if ((lcr_ & kLcrDlab) != 0) {
        dlh_ = value;
        return;
      }
      // Enabling THRE with an empty transmitter raises it at once (the 8250 driver relies on it).
      if ((value & kIerThre) != 0 && (ier_ & kIerThre) == 0) {
        thr_empty_pending_ = true;
      }
      const bool was = transmit_polled();
      ier_ = value & kIerMask;
      report_polled(was);
      update_interrupt(/*raise_edge=*/true);
      return;
    }
    case kIirFcr:
      return;  // FIFO control: the emulated FIFOs are always ready
    case kLcr:
      lcr_ = value;
      return;
    case kMcr: {
      const bool was = transmit_polled();
      mcr_ = value & 0x1f;
      report_polled(was);
      return;
    }
    case kScr:
      scr_ = value;
      return;
    default:
      return;  // LSR and MSR are read-only
  }
}

void Serial::update_interrupt(bool raise_edge) {
  const bool pending = ((ier_ & kIerRda) != 0 && !input_.empty()) ||
                       ((ier_ & kIerThre) != 0 && thr_empty_pending_);
  if (pending && raise_edge && irq_) {
    irq_->trigger();
  }
}

}  // namespace keel::devices
