#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vmm/vmm_control.hpp"

namespace keel::api::test {

// A VmmControl that records every call and answers with canned values, or with `error` when
// set (every method then fails with it). Safe to call from the API thread while a test reads.
class FakeVmmControl : public vmm::VmmControl {
 public:
  Result<VmmPing> ping() override { return answer("ping", ping_value); }
  Status shutdown_vmm() override { return status("shutdown_vmm"); }
  Status create_vm(const vmm::VmConfig& config) override {
    std::lock_guard lock(mutex_);
    created = config;
    return status_locked("create_vm");
  }
  Status boot_vm() override { return status("boot_vm"); }
  Status shutdown_vm() override { return status("shutdown_vm"); }
  Status reboot_vm() override { return status("reboot_vm"); }
  Status pause_vm() override { return status("pause_vm"); }
  Status resume_vm() override { return status("resume_vm"); }
  Status delete_vm() override { return status("delete_vm"); }
  Result<std::shared_ptr<const VmInfo>> vm_info() override {
    KEEL_TRY(VmInfo info, answer("vm_info", info_value));
    return std::make_shared<const VmInfo>(std::move(info));
  }
  Result<Counters> vm_counters() override { return answer("vm_counters", counters_value); }
  Result<DeviceInfo> add_device(const vmm::DeviceConfig& device) override {
    std::lock_guard lock(mutex_);
    added = device;
    calls_.emplace_back("add_device");
    if (error) {
      return *error;
    }
    return DeviceInfo{device.id, added_bdf};
  }
  Result<DeviceInfo> add_net(const vmm::NetConfig& net, UniqueFd tap) override {
    std::lock_guard lock(mutex_);
    added_net = net;
    added_tap = std::move(tap);
    calls_.emplace_back("add_net");
    if (error) {
      return *error;
    }
    return DeviceInfo{net.id.empty() ? "_net0" : net.id, ""};
  }
  Result<DeviceInfo> add_fs(const vmm::FsConfig& fs) override {
    std::lock_guard lock(mutex_);
    added_fs = fs;
    calls_.emplace_back("add_fs");
    if (error) {
      return *error;
    }
    return DeviceInfo{fs.id.empty() ? "_fs0" : fs.id, ""};
  }
  Result<DeviceInfo> add_vsock(const vmm::VsockConfig& vsock) override {
    std::lock_guard lock(mutex_);
    added_vsock = vsock;
    calls_.emplace_back("add_vsock");
    if (error) {
      return *error;
    }
    return DeviceInfo{vsock.id, ""};
  }
  Result<DeviceInfo> add_disk(const vmm::DiskConfig& disk) override {
    std::lock_guard lock(mutex_);
    added_disk = disk;
    calls_.emplace_back("add_disk");
    if (error) {
      return *error;
    }
    return DeviceInfo{disk.id.empty() ? "_disk0" : disk.id, added_bdf};
  }
  Status remove_device(const std::string& id) override {
    std::lock_guard lock(mutex_);
    removed = id;
    return status_locked("remove_device");
  }
  Status power_button() override { return status("power_button"); }
  Status nmi() override { return status("nmi"); }
  Status resize(const vmm::ResizeConfig& r) override {
    std::lock_guard lock(mutex_);
    resized = r;
    return status_locked("resize");
  }

  std::vector<std::string> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  void fail_with(Error e) {
    std::lock_guard lock(mutex_);
    error = std::move(e);
  }

  std::optional<Error> error;
  VmmPing ping_value{"0.1.0", 4242};
  VmInfo info_value{vmm::VmConfig{}, VmState::kCreated, 512ULL << 20, {}, {}};
  Counters counters_value;
  std::string added_bdf;  // "" until "boot"
  std::optional<vmm::VmConfig> created;
  std::optional<vmm::DeviceConfig> added;
  std::optional<vmm::DiskConfig> added_disk;
  std::optional<vmm::VsockConfig> added_vsock;
  std::optional<vmm::FsConfig> added_fs;
  std::optional<vmm::NetConfig> added_net;
  UniqueFd added_tap;
  std::string removed;
  vmm::ResizeConfig resized;

 private:
  template <typename T>
  Result<T> answer(const char* name, const T& value) {
    std::lock_guard lock(mutex_);
    calls_.emplace_back(name);
    if (error) {
      return *error;
    }
    return value;
  }
  Status status(const char* name) {
    std::lock_guard lock(mutex_);
    return status_locked(name);
  }
  Status status_locked(const char* name) {
    calls_.emplace_back(name);
    if (error) {
      return *error;
    }
    return ok_status();
  }

  mutable std::mutex mutex_;
  std::vector<std::string> calls_;
};

}  // namespace keel::api::test
