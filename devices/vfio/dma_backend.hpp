#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.hpp"
#include "devices/vfio/dma_access.hpp"
#include "devices/vfio/iommu_info.hpp"
#include "devices/vfio/iommufd.hpp"
#include "devices/vfio/vfio_sys.hpp"

namespace keel::vfio {

// Which kernel interface holds a container's DMA mappings.
enum class BackendKind {
  kType1,    // a VFIO container (/dev/vfio/vfio) with the type1v2 IOMMU: entries are counted
  kIommufd,  // an iommufd IO address space (/dev/iommu): no count, only pinned memory binds
};
std::string_view to_string(BackendKind kind);  // "vfio-type1v2", "iommufd"

// What a memlock message adds when iommufd charges the user rather than Keel.
inline constexpr std::string_view kUserChargeNote =
    "iommufd charges the locked memory of Keel's user, shared by all its processes; with "
    "CAP_SYS_RESOURCE Keel is charged alone";

// Which backend a device asks for (--device ...,backend=): iommufd where the host offers it
// (/dev/iommu and the device's cdev), else type1 (auto); or one of them, with an error naming
// the fix when the host lacks it.
enum class BackendChoice { kAuto, kType1, kIommufd };
std::string_view to_string(BackendChoice choice);  // "auto", "type1", "iommufd"
// The one parser, for the command line and the API alike.
Result<BackendChoice> parse_backend_choice(std::string_view text);

// The kernel side of one DMA address space: the calls that map, unmap and count, and nothing
// else (the table of what is held, the accounting and the explanations live in DmaMapper). Each
// error keeps the kernel's errno and names the call and range in `what`.
class DmaBackend {
 public:
  virtual ~DmaBackend() = default;
  virtual BackendKind kind() const = 0;
  // The MAP call's name for messages: "VFIO_IOMMU_MAP_DMA", "IOMMU_IOAS_MAP".
  virtual std::string_view map_call() const = 0;
  virtual std::string_view unmap_call() const = 0;

  // Pins and maps [host, host + size) at [iova, iova + size).
  virtual Status map(std::uint64_t iova, std::uint64_t size, std::uint64_t host, DmaAccess access,
                     const std::string& what) = 0;
  // Unmaps the one mapping that is exactly [iova, iova + size); returns the bytes the kernel
  // says it unmapped (the caller compares).
  virtual Result<std::uint64_t> unmap(std::uint64_t iova, std::uint64_t size,
                                      const std::string& what) = 0;
  // Whether unmap_all is one call (type1: the VFIO_UNMAP_ALL extension; iommufd: always).
  virtual bool unmap_all_supported() const = 0;
  // Unmaps every mapping in one call; returns the bytes unmapped.
  virtual Result<std::uint64_t> unmap_all(const std::string& what) = 0;
  // The entry budget as the kernel says now: type1 re-reads DMA_AVAIL; iommufd has none
  // (AvailSource::kIommufd).
  virtual Result<DmaBudget> budget() = 0;
  // Whether pinned memory is charged to this process's locked memory (type1; iommufd with
  // RLIMIT_MODE 1) rather than to its user's (iommufd's default: kUserChargeNote).
  virtual bool charged_per_process() const { return true; }
};

// A type1v2 container's calls. Borrows the container fd (the container outlives it).
class Type1DmaBackend final : public DmaBackend {
 public:
  Type1DmaBackend(std::shared_ptr<VfioSys> sys, int container_fd, bool unmap_all_supported)
      : sys_(std::move(sys)), fd_(container_fd), unmap_all_(unmap_all_supported) {}
  BackendKind kind() const override { return BackendKind::kType1; }
  std::string_view map_call() const override { return "VFIO_IOMMU_MAP_DMA"; }
  std::string_view unmap_call() const override { return "VFIO_IOMMU_UNMAP_DMA"; }
  Status map(std::uint64_t iova, std::uint64_t size, std::uint64_t host, DmaAccess access,
             const std::string& what) override;
  Result<std::uint64_t> unmap(std::uint64_t iova, std::uint64_t size,
                              const std::string& what) override;
  bool unmap_all_supported() const override { return unmap_all_; }
  Result<std::uint64_t> unmap_all(const std::string& what) override;
  Result<DmaBudget> budget() override { return reread_avail(*sys_, fd_); }

 private:
  std::shared_ptr<VfioSys> sys_;
  int fd_;
  bool unmap_all_;
};

// An iommufd IO address space's calls. Borrows the iommufd (it outlives this).
class IommufdDmaBackend final : public DmaBackend {
 public:
  // charged_per_process: RLIMIT_MODE 1 (Keel's own locked memory pays), else the user's.
  IommufdDmaBackend(Iommufd& iommufd, std::uint32_t ioas, bool charged_per_process)
      : iommufd_(iommufd), ioas_(ioas), per_process_(charged_per_process) {}
  BackendKind kind() const override { return BackendKind::kIommufd; }
  std::string_view map_call() const override { return "IOMMU_IOAS_MAP"; }
  std::string_view unmap_call() const override { return "IOMMU_IOAS_UNMAP"; }
  Status map(std::uint64_t iova, std::uint64_t size, std::uint64_t host, DmaAccess access,
             const std::string& what) override {
    return iommufd_.map(ioas_, iova, size, host, access, what);
  }
  Result<std::uint64_t> unmap(std::uint64_t iova, std::uint64_t size,
                              const std::string& what) override {
    return iommufd_.unmap(ioas_, iova, size, what);
  }
  bool unmap_all_supported() const override { return true; }
  Result<std::uint64_t> unmap_all(const std::string& what) override {
    return iommufd_.unmap_all(ioas_, what);
  }
  Result<DmaBudget> budget() override { return DmaBudget{AvailSource::kIommufd, 0}; }
  bool charged_per_process() const override { return per_process_; }

 private:
  Iommufd& iommufd_;
  std::uint32_t ioas_;
  bool per_process_;
};

}  // namespace keel::vfio
