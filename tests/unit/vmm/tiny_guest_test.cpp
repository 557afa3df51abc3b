// Runs a hand-written real-mode guest on the real /dev/kvm: proves the vCPU loop, port-I/O and
// MMIO dispatch, and the power-off path without a guest kernel. The binary exits with 77
// (ctest "skipped") where /dev/kvm cannot be opened.

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "base/event_fd.hpp"
#include "base/mapping.hpp"
#include "devices/acpi_pm.hpp"
#include "devices/bus.hpp"
#include "devices/serial.hpp"
#include "memory/layout.hpp"
#include "vmm/kvm.hpp"
#include "vmm/vcpu.hpp"

namespace keel::vmm {
namespace {

namespace layout = keel::memory::layout;

constexpr std::uint64_t kCodeAddr = 0x1000;
constexpr std::uint64_t kMmioAddr = 0x8000;

// Real-mode code: serial "Hi", an MMIO write and read, the read byte echoed to serial, power off.
const std::vector<std::uint8_t> kGuestCode = {
    0xba, 0xf8, 0x03,              // mov dx, 0x3f8
    0xb0, 'H', 0xee,               // mov al, 'H'; out dx, al
    0xb0, 'i', 0xee,               // mov al, 'i'; out dx, al
    0xc6, 0x06, 0x00, 0x80, 0x5a,  // mov byte [0x8000], 0x5a
    0xa0, 0x04, 0x80,              // mov al, [0x8004]
    0xee,                          // out dx, al
    0xec,                          // in al, dx (port 0x3f8: RBR, empty -> 0)
    0xba, 0x00, 0x06,              // mov dx, 0x600 (ACPI sleep control)
    0xb0, 0x34, 0xee,              // mov al, SLP_EN | SLP_TYP(5) << 2; out dx, al
    0xf4, 0xeb, 0xfd,              // hlt; jmp $-3 (never reached)
};

struct MmioProbe : devices::BusDevice {
  std::vector<std::pair<std::uint64_t, std::uint8_t>> writes;
  void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
    for (auto& b : data) {
      b = static_cast<std::uint8_t>(0x40 + offset);
    }
  }
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
    writes.emplace_back(offset, data[0]);
  }
};

// A VM with two pages of RAM holding `code` at kCodeAddr, and one vCPU about to run it in real
// mode (CS and DS based at 0).
struct TinyGuest {
  Kvm kvm;
  KvmVm vm;
  Mapping ram;
  std::optional<KvmVcpu> vcpu;
};

std::unique_ptr<TinyGuest> make_tiny_guest(std::span<const std::uint8_t> code) {
  auto kvm = Kvm::open();
  REQUIRE(kvm.ok());
  auto vm = kvm->create_vm();
  REQUIRE(vm.ok());
  REQUIRE(vm->set_x86_private_pages(0xfffbd000, 0xfffbc000).ok());
  REQUIRE(vm->create_irqchip().ok());
  auto ram = Mapping::anonymous(0x2000, "tiny guest RAM");
  REQUIRE(ram.ok());
  std::copy(code.begin(), code.end(), ram->data() + kCodeAddr);
  REQUIRE(vm->set_memory_region(0, 0, ram->size(), ram->data()).ok());
  auto mmap_size = kvm->vcpu_mmap_size();
  REQUIRE(mmap_size.ok());
  auto vcpu = vm->create_vcpu(0, *mmap_size);
  REQUIRE(vcpu.ok());
  auto sregs = vcpu->sregs();
  REQUIRE(sregs.ok());
  sregs->cs.base = 0;
  sregs->cs.selector = 0;
  sregs->ds.base = 0;
  sregs->ds.selector = 0;
  REQUIRE(vcpu->set_sregs(*sregs).ok());
  kvm_regs regs{};
  regs.rip = kCodeAddr;
  regs.rflags = 2;
  REQUIRE(vcpu->set_regs(regs).ok());
  return std::unique_ptr<TinyGuest>(new TinyGuest{std::move(kvm).value(), std::move(vm).value(),
                                                  std::move(ram).value(), std::move(vcpu).value()});
}

TEST_CASE("a real-mode guest reaches the serial port, an MMIO device and power-off") {
  auto guest = make_tiny_guest(kGuestCode);

  std::string serial_out;
  devices::Bus pio("port I/O");
  devices::Bus mmio("MMIO");
  auto serial = std::make_shared<devices::Serial>(
      nullptr, [&](std::span<const std::uint8_t> b) { serial_out.append(b.begin(), b.end()); });
  REQUIRE(pio.insert(serial, layout::kCom1Port, 8).ok());
  auto exited = EventFd::create(EFD_NONBLOCK);
  REQUIRE(exited.ok());
  std::vector<devices::PowerEvent> events;
  auto on_power = [&](devices::PowerEvent e) {
    events.push_back(e);
    (void)exited->signal();
  };
  REQUIRE(pio.insert(std::make_shared<devices::AcpiPm>(on_power), layout::kAcpiPmPort, layout::kAcpiPmSize).ok());
  auto probe = std::make_shared<MmioProbe>();
  REQUIRE(mmio.insert(probe, kMmioAddr, 0x1000).ok());

  std::vector<Error> errors;
  // The vCPU thread runs under its seccomp filter, as in keel: the exits below must need
  // nothing outside its list (or this process ends with status 159).
  Vcpu vcpu(0, std::move(*guest->vcpu), pio, mmio, on_power,
            [&](const Error& e) {
              errors.push_back(e);
              (void)exited->signal();
            },
            SeccompMode::kEnforce);
  vcpu.start();
  pollfd pfd{exited->fd(), POLLIN, 0};
  const int ready = ::poll(&pfd, 1, 60'000);  // a bound, not a timing assertion
  vcpu.stop();
  serial->flush();  // "Hi" and the echo end without a newline: the rest waits, as Vm::stop flushes

  REQUIRE(ready == 1);
  CHECK(errors.empty());
  CHECK(events == std::vector<devices::PowerEvent>{devices::PowerEvent::kPowerOff});
  CHECK(serial_out == std::string("Hi") + static_cast<char>(0x44));
  REQUIRE(probe->writes.size() == 1);
  CHECK(probe->writes[0] == std::make_pair(std::uint64_t{0}, std::uint8_t{0x5a}));
}

TEST_CASE("stop() kicks a vCPU out of a guest that spins forever") {
  const std::uint8_t spin[] = {0xeb, 0xfe};  // jmp $
  auto guest = make_tiny_guest(spin);
  devices::Bus pio("port I/O");
  devices::Bus mmio("MMIO");
  std::vector<Error> errors;
  Vcpu vcpu(0, std::move(*guest->vcpu), pio, mmio, [](devices::PowerEvent) {},
            [&](const Error& e) { errors.push_back(e); });
  vcpu.start();
  ::usleep(100'000);
  vcpu.stop();  // must return: the test would hang (and ctest time out) otherwise
  CHECK(errors.empty());
}

}  // namespace
}  // namespace keel::vmm

int main(int argc, char** argv) {
  const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    std::printf("skipped: /dev/kvm cannot be opened here (%s)\n", std::strerror(errno));
    return 77;
  }
  ::close(fd);
  return Catch::Session().run(argc, argv);
}
