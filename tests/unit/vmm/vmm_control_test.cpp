// The VMM's control interface, driven from another thread as the API does. No guest is booted
// (the kernel path does not exist), so no /dev/kvm is needed: keel opens it at the first boot.

#include <atomic>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "base/version.hpp"
#include "vmm/vmm.hpp"

namespace keel::vmm {
namespace {

TEST_CASE("VmmControl state machine, called from another thread") {
  auto vmm = Vmm::create(Vmm::Options{.serve_api = true, .seccomp = SeccompMode::kOff, .events = nullptr});
  REQUIRE(vmm.ok());
  int exit_code = -1;
  std::thread loop([&] { exit_code = (*vmm)->run(); });
  VmmControl& control = **vmm;

  auto ping = control.ping();
  REQUIRE(ping.ok());
  CHECK(ping->version == kVersion);

  CHECK(control.vm_info().error().kind() == ErrorKind::kNotFound);
  CHECK(control.boot_vm().error().kind() == ErrorKind::kNotFound);

  VmConfig config;
  CHECK(control.create_vm(config).error().kind() == ErrorKind::kInvalid);  // no kernel
  config.kernel = "/nonexistent/vmlinuz";
  config.boot_vcpus = 2;
  REQUIRE(control.create_vm(config).ok());
  CHECK(control.create_vm(config).error().kind() == ErrorKind::kWrongState);

  DeviceConfig dev{"/sys/bus/pci/devices/0000:00:01.0", "edu0", vfio::MappingMode::kAuto};
  auto added = control.add_device(dev);
  REQUIRE(added.ok());
  CHECK(added->id == "edu0");
  CHECK(control.add_device(dev).error().kind() == ErrorKind::kExists);
  CHECK(control.remove_device("nope").error().kind() == ErrorKind::kNotFound);

  auto info = control.vm_info();
  REQUIRE(info.ok());
  CHECK((*info)->state == VmmControl::VmState::kCreated);
  CHECK((*info)->config.boot_vcpus == 2);
  REQUIRE((*info)->devices.size() == 1);
  CHECK((*info)->devices[0].id == "edu0");
  CHECK((*info)->dma.empty());
  REQUIRE(control.remove_device("edu0").ok());
  // vm.info comes from a snapshot, but never from one older than a change the caller made.
  CHECK((*control.vm_info())->devices.empty());
  std::vector<std::thread> readers;
  std::atomic<int> answered = 0;
  for (int i = 0; i < 16; ++i) {
    readers.emplace_back([&] {
      for (int n = 0; n < 200; ++n) {
        auto read = control.vm_info();
        answered += read.ok() && (*read)->state == VmmControl::VmState::kCreated ? 1 : 0;
      }
    });
  }
  REQUIRE(control.add_device(dev).ok());  // while they read
  for (std::thread& t : readers) {
    t.join();
  }
  CHECK(answered == 16 * 200);
  REQUIRE((*control.vm_info())->devices.size() == 1);
  REQUIRE(control.remove_device("edu0").ok());
  CHECK((*control.vm_info())->devices.empty());

  CHECK(control.pause_vm().error().kind() == ErrorKind::kWrongState);
  CHECK(control.resume_vm().error().kind() == ErrorKind::kWrongState);
  CHECK(control.shutdown_vm().error().kind() == ErrorKind::kWrongState);

  // Booting fails on the missing kernel: a clear error, and the VM is not left half-built.
  Status booted = control.boot_vm();
  REQUIRE_FALSE(booted.ok());
  CHECK(booted.error().message().find("/nonexistent/vmlinuz") != std::string::npos);
  CHECK(booted.error().kind() == ErrorKind::kInvalid);  // a request error (400), not "no VM"
  CHECK((*control.vm_info())->state == VmmControl::VmState::kShutdown);

  REQUIRE(control.delete_vm().ok());
  CHECK(control.vm_info().error().kind() == ErrorKind::kNotFound);

  REQUIRE(control.shutdown_vmm().ok());
  loop.join();
  CHECK(exit_code == 0);
  CHECK(control.vm_info().error().errno_value() == ESHUTDOWN);
}

}  // namespace
}  // namespace keel::vmm
