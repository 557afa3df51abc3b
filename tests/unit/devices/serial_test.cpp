#include "devices/serial.hpp"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace keel::devices {
namespace {

struct CountingIrq : InterruptLine {
  int edges = 0;
  void trigger() override { ++edges; }
};

struct Uart {
  std::shared_ptr<CountingIrq> irq = std::make_shared<CountingIrq>();
  std::string out;
  Serial serial{irq, [this](std::span<const std::uint8_t> b) { out.append(b.begin(), b.end()); }};

  std::uint8_t in(std::uint64_t reg) {
    std::uint8_t v = 0;
    serial.read(reg, std::span(&v, 1));
    return v;
  }
  void outb(std::uint64_t reg, std::uint8_t v) { serial.write(reg, std::span<const std::uint8_t>(&v, 1)); }
};

TEST_CASE("UART transmits to the output and reports an empty transmitter") {
  Uart u;
  u.outb(0, 'h');
  u.outb(0, 'i');
  CHECK((u.in(5) & 0x60) == 0x60);  // THRE and TEMT
  CHECK(u.irq->edges == 0);          // no interrupt enabled
  u.serial.flush();
  CHECK(u.out == "hi");
}

TEST_CASE("UART output goes on a line at a time, at an IER write, when the batch is full") {
  Uart u;
  std::vector<std::string> pieces;
  Serial serial{u.irq, [&](std::span<const std::uint8_t> b) { pieces.emplace_back(b.begin(), b.end()); }};
  const auto outb = [&](std::uint64_t reg, std::uint8_t v) { serial.write(reg, std::span<const std::uint8_t>(&v, 1)); };
  for (char c : std::string("one\r\ntw")) {
    outb(0, static_cast<std::uint8_t>(c));
  }
  CHECK(pieces == std::vector<std::string>{"one\r\n"});
  outb(1, 0x00);  // Linux restores IER at the end of each console write: the rest goes
  CHECK(pieces == std::vector<std::string>{"one\r\n", "tw"});
  outb(1, 0x00);  // nothing waiting: nothing passed on
  CHECK(pieces.size() == 2);

  pieces.clear();
  const std::string line(Serial::kOutputBatch + 10, 'x');
  serial.write_data(std::span(reinterpret_cast<const std::uint8_t*>(line.data()), line.size()));
  REQUIRE(pieces.size() == 1);
  CHECK(pieces[0].size() == Serial::kOutputBatch);
  serial.flush();
  REQUIRE(pieces.size() == 2);
  CHECK(pieces[1].size() == 10);
}

TEST_CASE("UART divisor latch shadows data and IER") {
  Uart u;
  u.outb(3, 0x80);  // DLAB
  u.outb(0, 0x01);
  u.outb(1, 0x00);
  CHECK(u.in(0) == 0x01);
  CHECK(u.out.empty());
  u.outb(3, 0x03);
  CHECK(u.in(3) == 0x03);
  u.outb(1, 0x0f);
  CHECK(u.in(1) == 0x0f);
}

TEST_CASE("UART THRE interrupt: raised on enable and after each byte, acknowledged by IIR") {
  Uart u;
  CHECK((u.in(2) & 0x0f) == 0x01);  // nothing pending
  u.outb(1, 0x02);
  CHECK(u.irq->edges == 1);
  CHECK((u.in(2) & 0x0f) == 0x02);
  CHECK((u.in(2) & 0x0f) == 0x01);  // acknowledged by the read
  u.outb(0, 'x');
  CHECK(u.irq->edges == 2);
  CHECK((u.in(2) & 0x0f) == 0x02);
}

TEST_CASE("UART receive: data ready, RDA interrupt, bounded queue") {
  Uart u;
  u.outb(1, 0x01);
  const std::string input = "ab";
  u.serial.enqueue_input(std::span(reinterpret_cast<const std::uint8_t*>(input.data()), input.size()));
  CHECK(u.irq->edges == 1);
  CHECK((u.in(5) & 0x01) == 0x01);
  CHECK((u.in(2) & 0x0f) == 0x04);
  CHECK(u.in(0) == 'a');
  CHECK(u.in(0) == 'b');
  CHECK((u.in(5) & 0x01) == 0x00);
  CHECK(u.in(0) == 0);  // empty reads are harmless

  std::string flood(Serial::kInputLimit + 10, 'z');
  flood[Serial::kInputLimit + 9] = 'e';
  u.serial.enqueue_input(std::span(reinterpret_cast<const std::uint8_t*>(flood.data()), flood.size()));
  int count = 0;
  std::uint8_t last = 0;
  while ((u.in(5) & 0x01) != 0) {
    last = u.in(0);
    ++count;
  }
  CHECK(count == static_cast<int>(Serial::kInputLimit));
  CHECK(last == 'e');
}

TEST_CASE("UART loopback echoes transmitted bytes and wires modem lines for the 8250 probe") {
  Uart u;
  u.outb(4, 0x10 | 0x0a);  // LOOP | OUT2 | RTS
  CHECK((u.in(6) & 0xf0) == 0x90);  // DCD | CTS
  u.outb(0, 0x55);
  CHECK(u.out.empty());
  CHECK(u.in(0) == 0x55);
  u.outb(7, 0xa5);
  CHECK(u.in(7) == 0xa5);
}

TEST_CASE("UART ignores out-of-range offsets and empty accesses") {
  Uart u;
  std::uint8_t v = 0;
  u.serial.read(8, std::span(&v, 1));
  CHECK(v == 0xff);
  u.serial.write(9, std::span<const std::uint8_t>(&v, 1));
  u.serial.read(0, std::span<std::uint8_t>());
  CHECK(u.out.empty());
}

TEST_CASE("UART data replayed from the coalesced ring: the same output and state as byte writes") {
  for (const std::uint8_t ier : {std::uint8_t{0x00}, std::uint8_t{0x02}}) {
    Uart bytes;
    Uart replayed;
    bytes.outb(1, ier);
    replayed.outb(1, ier);
    (void)bytes.in(2);  // acknowledge the THRE raised by enabling it
    (void)replayed.in(2);
    const std::string text = "hello, console\n";
    for (char c : text) {
      bytes.outb(0, static_cast<std::uint8_t>(c));
    }
    replayed.serial.write_data(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
    CHECK(replayed.out == text);
    CHECK(bytes.out == text);
    CHECK(replayed.in(2) == bytes.in(2));  // IIR: THRE pending when enabled, then acknowledged
    CHECK(replayed.in(2) == bytes.in(2));
    CHECK(replayed.in(5) == bytes.in(5));  // LSR
    CHECK((replayed.irq->edges > 1) == (ier != 0));
  }

  // With DLAB set the bytes are the divisor (the last one stays), never output.
  Uart u;
  u.outb(3, 0x80);
  const std::uint8_t divisor[] = {0x0c, 0x01};
  u.serial.write_data(divisor);
  CHECK(u.in(0) == 0x01);
  u.serial.flush();
  CHECK(u.out.empty());

  // In loopback they are input the guest reads back.
  Uart loop;
  loop.outb(4, 0x18);
  const std::uint8_t echo[] = {'o', 'k'};
  loop.serial.write_data(echo);
  CHECK((loop.in(5) & 0x01) == 0x01);
  CHECK(loop.in(0) == 'o');
  CHECK(loop.in(0) == 'k');
  loop.serial.flush();
  CHECK(loop.out.empty());
}

TEST_CASE("UART tells when the guest polls its transmitter: THRE interrupt off and no loopback") {
  Uart u;
  std::vector<bool> calls;
  u.serial.on_transmit_polled([&](bool polled) { calls.push_back(polled); });
  CHECK(calls == std::vector<bool>{true});  // the current state at once
  u.outb(1, 0x01);                           // receive interrupt only: still polled
  CHECK(calls == std::vector<bool>{true});
  u.outb(1, 0x03);  // THRE interrupt on
  CHECK(calls == std::vector<bool>{true, false});
  u.outb(1, 0x00);
  CHECK(calls == std::vector<bool>{true, false, true});
  u.outb(4, 0x18);  // loopback: written bytes become input the guest reads
  CHECK(calls == std::vector<bool>{true, false, true, false});
  u.outb(4, 0x08);
  CHECK(calls == std::vector<bool>{true, false, true, false, true});
  u.outb(3, 0x80);  // DLAB: IER's offset is the divisor's high byte, nothing changes
  u.outb(1, 0x02);
  u.outb(3, 0x03);
  CHECK(calls.size() == 5);
}

}  // namespace
}  // namespace keel::devices
