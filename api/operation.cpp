#include "api/operation.hpp"

namespace keel::api {
namespace {

struct NameOf {
  std::string_view operator()(const PingVmm&) const { return "vmm.ping"; }
  std::string_view operator()(const ShutdownVmm&) const { return "vmm.shutdown"; }
  std::string_view operator()(const CreateVm&) const { return "vm.create"; }
  std::string_view operator()(const BootVm&) const { return "vm.boot"; }
  std::string_view operator()(const ShutdownVm&) const { return "vm.shutdown"; }
  std::string_view operator()(const RebootVm&) const { return "vm.reboot"; }
  std::string_view operator()(const PauseVm&) const { return "vm.pause"; }
  std::string_view operator()(const ResumeVm&) const { return "vm.resume"; }
  std::string_view operator()(const DeleteVm&) const { return "vm.delete"; }
  std::string_view operator()(const GetVmInfo&) const { return "vm.info"; }
  std::string_view operator()(const GetVmCounters&) const { return "vm.counters"; }
  std::string_view operator()(const AddDevice&) const { return "vm.add-device"; }
  std::string_view operator()(const AddDisk&) const { return "vm.add-disk"; }
  std::string_view operator()(const AddNet&) const { return "vm.add-net"; }
  std::string_view operator()(const AddVsock&) const { return "vm.add-vsock"; }
  std::string_view operator()(const AddFs&) const { return "vm.add-fs"; }
  std::string_view operator()(const RemoveDevice&) const { return "vm.remove-device"; }
  std::string_view operator()(const ResizeVm&) const { return "vm.resize"; }
  std::string_view operator()(const PowerButton&) const { return "vm.power-button"; }
  std::string_view operator()(const InjectNmi&) const { return "vm.nmi"; }
};

}  // namespace

std::string_view operation_name(const Operation& operation) {
  return std::visit(NameOf{}, operation);
}

}  // namespace keel::api
