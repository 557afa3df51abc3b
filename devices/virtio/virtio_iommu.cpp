#include "devices/virtio/virtio_iommu.hpp"

#include <endian.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>

#include "base/hex.hpp"
#include "base/log.hpp"

namespace keel::virtio {
namespace {

constexpr std::string_view kLog = "virtio-iommu";
constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
constexpr std::size_t kTailSize = sizeof(virtio_iommu_req_tail);
constexpr std::size_t kHeadSize = sizeof(virtio_iommu_req_head);
constexpr std::uint32_t kMaxProbeSize = 64 * 1024;  // a sane bound on the driver's allocation
// The largest status value the guest may be told (VIRTIO_IOMMU_S_NOMEM).

// The device-readable part of a request: the struct up to its tail.
template <typename Request>
constexpr std::size_t readable_size() {
  return offsetof(Request, tail);
}

// Copies the readable part of `in` into `req`; false if `in` is too short for it.
template <typename Request>
bool parse(std::span<const std::uint8_t> in, Request& req) {
  constexpr std::size_t kSize = readable_size<Request>();
  if (in.size() < kSize) {
    return false;
  }
  std::memcpy(&req, in.data(), kSize);
  return true;
}

bool all_zero(std::span<const std::uint8_t> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

void write_tail(std::span<std::uint8_t> at, IommuStatus status) {
  virtio_iommu_req_tail tail{};
  tail.status = static_cast<std::uint8_t>(status);
  std::memcpy(at.data(), &tail, sizeof tail);
}

// The guest's flags are the backend's access bits: the neutral interface took virtio's values.
static_assert(devices::kDmaRead == VIRTIO_IOMMU_MAP_F_READ && devices::kDmaWrite == VIRTIO_IOMMU_MAP_F_WRITE &&
              devices::kDmaMmio == VIRTIO_IOMMU_MAP_F_MMIO);

// A backend's answer as the guest sees it.
IommuStatus status_of(devices::DmaStatus status) {
  switch (status) {
    case devices::DmaStatus::kOk:
      return IommuStatus::kOk;
    case devices::DmaStatus::kInvalid:
      return IommuStatus::kInvalid;
    case devices::DmaStatus::kUnsupported:
      return IommuStatus::kUnsupported;
    case devices::DmaStatus::kRange:
      return IommuStatus::kRange;
    case devices::DmaStatus::kNoEntry:
      return IommuStatus::kNoEntry;
    case devices::DmaStatus::kNoMemory:
      return IommuStatus::kNoMemory;
    case devices::DmaStatus::kIoError:
      return IommuStatus::kIoErr;
  }
  return IommuStatus::kDevErr;
}

std::string_view type_name(std::uint8_t type) {
  switch (type) {
    case VIRTIO_IOMMU_T_ATTACH:
      return "attach";
    case VIRTIO_IOMMU_T_DETACH:
      return "detach";
    case VIRTIO_IOMMU_T_MAP:
      return "map";
    case VIRTIO_IOMMU_T_UNMAP:
      return "unmap";
    case VIRTIO_IOMMU_T_PROBE:
      return "probe";
    default:
      return "unknown";
  }
}

constexpr std::string_view kStatusNames[] = {"ok",    "ioerr", "unsupp", "deverr", "inval",
                                             "range", "noent", "fault",  "nomem"};

std::string describe(const devices::DmaMapping& m) {
  return "iova " + hex(m.iova) + " size " + hex(m.size) + " gpa " + hex(m.gpa);
}

std::string describe(const ReservedRegion& r) { return hex(r.start) + "-" + hex(r.end); }

// Sorted and disjoint: RESERVED regions merged, the (single) MSI region cut out of them, so no
// two properties of one endpoint overlap (the spec's SHOULD NOT).
Result<std::vector<ReservedRegion>> normalize(const std::vector<ReservedRegion>& regions,
                                              std::uint32_t probe_size, const std::string& what) {
  std::optional<ReservedRegion> msi;
  std::vector<ReservedRegion> reserved;
  for (const ReservedRegion& r : regions) {
    if (r.start > r.end) {
      return Error::invalid(what + ": reserved region " + describe(r) + " ends before it starts");
    }
    if (r.subtype == VIRTIO_IOMMU_RESV_MEM_T_MSI) {
      if (msi && (msi->start != r.start || msi->end != r.end)) {
        return Error::invalid(what + ": two MSI regions (" + describe(*msi) + " and " +
                              describe(r) + "); an endpoint has one MSI doorbell window");
      }
      msi = r;
    } else if (r.subtype == VIRTIO_IOMMU_RESV_MEM_T_RESERVED) {
      reserved.push_back(r);
    } else {
      return Error::invalid(what + ": reserved region " + describe(r) + " has unknown subtype " +
                            std::to_string(r.subtype));
    }
  }
  std::sort(reserved.begin(), reserved.end(),
            [](const ReservedRegion& a, const ReservedRegion& b) { return a.start < b.start; });
  std::vector<ReservedRegion> merged;
  for (const ReservedRegion& r : reserved) {
    if (!merged.empty() && (r.start <= merged.back().end ||
                            (merged.back().end != kMax && r.start == merged.back().end + 1))) {
      merged.back().end = std::max(merged.back().end, r.end);
    } else {
      merged.push_back(r);
    }
  }
  std::vector<ReservedRegion> out;
  for (const ReservedRegion& r : merged) {
    if (!msi || r.end < msi->start || r.start > msi->end) {
      out.push_back(r);
      continue;
    }
    if (r.start < msi->start) {
      out.push_back({r.start, msi->start - 1, VIRTIO_IOMMU_RESV_MEM_T_RESERVED});
    }
    if (r.end > msi->end) {
      out.push_back({msi->end + 1, r.end, VIRTIO_IOMMU_RESV_MEM_T_RESERVED});
    }
  }
  if (msi) {
    out.push_back(*msi);
  }
  std::sort(out.begin(), out.end(),
            [](const ReservedRegion& a, const ReservedRegion& b) { return a.start < b.start; });
  const std::size_t bytes = out.size() * sizeof(virtio_iommu_probe_resv_mem);
  if (bytes > probe_size) {
    return Error::invalid(what + ": " + std::to_string(out.size()) + " reserved regions need " +
                          std::to_string(bytes) + " bytes of PROBE properties but probe_size is " +
                          std::to_string(probe_size) + "; raise probe_size");
  }
  return out;
}

}  // namespace

std::vector<ReservedRegion> iova_holes(std::span<const AddressRange> valid) {
  std::vector<AddressRange> ranges;
  for (const AddressRange& r : valid) {
    if (r.start <= r.end) {
      ranges.push_back(r);
    }
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const AddressRange& a, const AddressRange& b) { return a.start < b.start; });
  std::vector<ReservedRegion> holes;
  std::uint64_t next = 0;  // the first address not yet known valid or reported as a hole
  for (const AddressRange& r : ranges) {
    if (r.start > next) {
      holes.push_back({next, r.start - 1, VIRTIO_IOMMU_RESV_MEM_T_RESERVED});
    }
    if (r.end == kMax) {
      return holes;  // valid up to the top: no hole after it
    }
    next = std::max(next, r.end + 1);
  }
  holes.push_back({next, kMax, VIRTIO_IOMMU_RESV_MEM_T_RESERVED});
  return holes;
}

Result<std::unique_ptr<VirtioIommu>> VirtioIommu::create(VirtioIommuConfig config,
                                                         devices::DmaMappingBackend& backend) {
  if (config.page_size_mask == 0) {
    return Error::invalid("virtio-iommu: page_size_mask is 0; it needs at least the granule bit");
  }
  if (config.input_range.start > config.input_range.end) {
    return Error::invalid("virtio-iommu: input range " + hex(config.input_range.start) + "-" +
                          hex(config.input_range.end) + " ends before it starts");
  }
  if (config.domain_first > config.domain_last) {
    return Error::invalid("virtio-iommu: domain range " + std::to_string(config.domain_first) +
                          "-" + std::to_string(config.domain_last) + " ends before it starts");
  }
  if (config.probe_size == 0 || config.probe_size > kMaxProbeSize) {
    return Error::invalid("virtio-iommu: probe_size " + std::to_string(config.probe_size) +
                          " is outside 1-" + std::to_string(kMaxProbeSize));
  }
  KEEL_TRY(auto defaults, normalize(config.reserved, config.probe_size, "virtio-iommu"));
  std::map<std::uint32_t, std::vector<ReservedRegion>> per_endpoint;
  for (const auto& [endpoint, extra] : config.endpoint_reserved) {
    std::vector<ReservedRegion> all = config.reserved;
    all.insert(all.end(), extra.begin(), extra.end());
    KEEL_TRY(auto regions,
             normalize(all, config.probe_size, "virtio-iommu endpoint " + hex(endpoint)));
    per_endpoint.emplace(endpoint, std::move(regions));
  }
  return std::unique_ptr<VirtioIommu>(
      new VirtioIommu(std::move(config), backend, std::move(defaults), std::move(per_endpoint)));
}

VirtioIommu::VirtioIommu(VirtioIommuConfig config, devices::DmaMappingBackend& backend,
                         std::vector<ReservedRegion> default_regions,
                         std::map<std::uint32_t, std::vector<ReservedRegion>> endpoint_regions)
    : config_(std::move(config)),
      backend_(backend),
      granule_(config_.page_size_mask & (~config_.page_size_mask + 1)),
      default_regions_(std::move(default_regions)),
      endpoint_regions_(std::move(endpoint_regions)) {}

std::uint64_t VirtioIommu::device_features() const {
  return (std::uint64_t{1} << VIRTIO_IOMMU_F_INPUT_RANGE) |
         (std::uint64_t{1} << VIRTIO_IOMMU_F_DOMAIN_RANGE) |
         (std::uint64_t{1} << VIRTIO_IOMMU_F_MAP_UNMAP) |
         (std::uint64_t{1} << VIRTIO_IOMMU_F_PROBE);
}

void VirtioIommu::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const {
  virtio_iommu_config config{};
  config.page_size_mask = htole64(config_.page_size_mask);
  config.input_range.start = htole64(config_.input_range.start);
  config.input_range.end = htole64(config_.input_range.end);
  config.domain_range.start = htole32(config_.domain_first);
  config.domain_range.end = htole32(config_.domain_last);
  config.probe_size = htole32(config_.probe_size);
  config.bypass = 0;  // no BYPASS_CONFIG: unattached endpoints are blocked
  std::array<std::uint8_t, kConfigSize> bytes{};
  std::memcpy(bytes.data(), &config, kConfigSize);

  std::fill(data.begin(), data.end(), std::uint8_t{0});
  if (offset >= kConfigSize || data.empty()) {
    return;
  }
  const std::size_t n = std::min<std::size_t>(data.size(), kConfigSize - offset);
  std::memcpy(data.data(), bytes.data() + offset, n);
}

void VirtioIommu::write_config(std::uint64_t offset, std::span<const std::uint8_t> data) {
  // Every field is read-only without BYPASS_CONFIG (the spec forbids the driver to write them).
  log::debug(kLog, "config write ignored", {{"offset", offset}, {"size", data.size()}});
}

std::size_t VirtioIommu::handle(std::span<const std::uint8_t> in, std::span<std::uint8_t> out) {
  if (in.size() < kHeadSize) {
    ++counters_.requests[0];
    if (out.size() < kTailSize) {
      ++counters_.unanswered;
      return 0;
    }
    log::debug(kLog, "request without a complete head", {{"readable", in.size()}});
    write_tail(out, IommuStatus::kDevErr);
    count_answer(IommuStatus::kDevErr);
    return kTailSize;
  }
  const std::uint8_t type = in[0];
  if (type < VIRTIO_IOMMU_T_ATTACH || type > VIRTIO_IOMMU_T_PROBE) {
    // The spec: an unrecognized type is returned unwritten, used length 0 (its tail could be
    // anywhere in the writable part).
    ++counters_.requests[0];
    ++counters_.unanswered;
    log::debug(kLog, "unknown request type", {{"type", type}});
    return 0;
  }
  ++counters_.requests[type];
  if (out.size() < kTailSize) {
    // No room for the tail: the request is not carried out, since its answer could not be told.
    ++counters_.unanswered;
    log::debug(kLog, "request without room for its tail",
               {{"type", type_name(type)}, {"writable", out.size()}});
    return 0;
  }

  IommuStatus status = IommuStatus::kOk;
  std::size_t used = kTailSize;
  std::span<std::uint8_t> tail = out.first(kTailSize);
  if (type == VIRTIO_IOMMU_T_PROBE) {
    const std::size_t probe_size = config_.probe_size;
    if (out.size() < probe_size + kTailSize) {
      // Properties smaller than probe_size: no property is written (the spec), the answer goes
      // where the driver looks for it, the last 4 bytes of its buffer.
      std::fill(out.begin(), out.end() - kTailSize, std::uint8_t{0});
      status = IommuStatus::kInvalid;
      used = out.size();
      tail = out.last(kTailSize);
    } else {
      std::span<std::uint8_t> properties = out.first(probe_size);
      std::fill(properties.begin(), properties.end(), std::uint8_t{0});
      status = probe(in, properties);
      used = probe_size + kTailSize;
      tail = out.subspan(probe_size, kTailSize);
    }
  } else {
    switch (type) {
      case VIRTIO_IOMMU_T_ATTACH:
        status = attach(in);
        break;
      case VIRTIO_IOMMU_T_DETACH:
        status = detach(in);
        break;
      case VIRTIO_IOMMU_T_MAP:
        status = map(in);
        break;
      default:
        status = unmap(in);
        break;
    }
  }
  write_tail(tail, status);
  count_answer(status);
  if (status != IommuStatus::kOk) {
    log::debug(
        kLog, "request refused",
        {{"type", type_name(type)}, {"status", kStatusNames[static_cast<std::uint8_t>(status)]}});
  }
  return used;
}

void VirtioIommu::count_answer(IommuStatus status) {
  ++counters_.answers[static_cast<std::uint8_t>(status)];
}

IommuStatus VirtioIommu::attach(std::span<const std::uint8_t> in) {
  virtio_iommu_req_attach req{};
  if (!parse(in, req)) {
    return IommuStatus::kInvalid;
  }
  const std::uint32_t domain = le32toh(req.domain);
  const std::uint32_t endpoint = le32toh(req.endpoint);
  const std::uint32_t flags = le32toh(req.flags);
  // ATTACH_F_BYPASS is an unknown flag without BYPASS_CONFIG: S_INVAL, as for any other.
  if (!all_zero(req.reserved) || flags != 0) {
    return IommuStatus::kInvalid;
  }
  if (!backend_.has_endpoint(endpoint)) {
    return IommuStatus::kNoEntry;
  }
  if (domain < config_.domain_first || domain > config_.domain_last) {
    return IommuStatus::kRange;
  }
  if (auto it = domains_.find(domain); it != domains_.end()) {
    // An endpoint whose reserved regions hold a mapping of the domain is incompatible with it.
    for (const auto& [iova, m] : it->second.mappings) {
      if (overlaps_reserved(endpoint, iova, m.last)) {
        return IommuStatus::kUnsupported;
      }
    }
  }
  // Already attached (here or elsewhere): the spec's DETACH, then ATTACH. A domain left empty
  // goes with its mappings.
  if (!leave_domain(endpoint)) {
    log::warn(kLog, "endpoint's old mappings not all released on re-attach",
              {{"endpoint", hex(endpoint)}});
  }
  Domain& d = domains_[domain];
  std::vector<devices::DmaMapping> replayed;
  for (const auto& [iova, m] : d.mappings) {
    const devices::DmaMapping mapping{iova, m.last - iova + 1, m.phys, m.flags};
    const IommuStatus st = status_of(backend_.map(endpoint, mapping));
    if (st != IommuStatus::kOk) {
      ++counters_.backend_map_failures;
      log::debug(kLog, "attach: replaying the domain's mapping failed; endpoint left detached",
                 {{"endpoint", hex(endpoint)}, {"domain", domain}, {"mapping", describe(mapping)}});
      bool ok = true;
      for (auto r = replayed.rbegin(); r != replayed.rend(); ++r) {
        unmap_for(endpoint, *r, true, ok);
      }
      if (d.endpoints.empty()) {
        domains_.erase(domain);
      }
      return st;
    }
    replayed.push_back(mapping);
  }
  d.endpoints.insert(endpoint);
  endpoint_domain_[endpoint] = domain;
  log::debug(kLog, "endpoint attached",
             {{"endpoint", hex(endpoint)}, {"domain", domain}, {"mappings", d.mappings.size()}});
  return IommuStatus::kOk;
}

IommuStatus VirtioIommu::detach(std::span<const std::uint8_t> in) {
  virtio_iommu_req_detach req{};
  if (!parse(in, req)) {
    return IommuStatus::kInvalid;
  }
  const std::uint32_t domain = le32toh(req.domain);
  const std::uint32_t endpoint = le32toh(req.endpoint);
  // `reserved` is ignored (the spec's MUST).
  if (!backend_.has_endpoint(endpoint)) {
    return IommuStatus::kNoEntry;
  }
  auto it = endpoint_domain_.find(endpoint);
  if (it == endpoint_domain_.end() || it->second != domain) {
    return IommuStatus::kInvalid;  // not attached to that domain (the spec's MAY)
  }
  // The endpoint is detached even if the host failed to unmap some of its mappings; the guest is
  // told the device failed.
  return leave_domain(endpoint) ? IommuStatus::kOk : IommuStatus::kDevErr;
}

IommuStatus VirtioIommu::map(std::span<const std::uint8_t> in) {
  virtio_iommu_req_map req{};
  if (!parse(in, req)) {
    return IommuStatus::kInvalid;
  }
  const std::uint32_t domain = le32toh(req.domain);
  const std::uint64_t first = le64toh(req.virt_start);
  const std::uint64_t last = le64toh(req.virt_end);
  const std::uint64_t phys = le64toh(req.phys_start);
  const std::uint32_t flags = le32toh(req.flags);
  // MAP_F_MMIO is unknown without F_MMIO: S_INVAL, as for any other unknown bit.
  if ((flags & ~std::uint32_t{VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE}) != 0) {
    return IommuStatus::kInvalid;
  }
  auto it = domains_.find(domain);
  if (it == domains_.end()) {
    return IommuStatus::kNoEntry;
  }
  if (first > last) {
    return IommuStatus::kInvalid;
  }
  // last + 1 wraps to 0 at the top of the space, which is aligned.
  if (((first | phys | (last + 1)) & (granule_ - 1)) != 0) {
    return IommuStatus::kRange;
  }
  if (first < config_.input_range.start || last > config_.input_range.end) {
    return IommuStatus::kRange;
  }
  const std::uint64_t span = last - first;  // size - 1: no overflow
  if (span == kMax || phys > kMax - span) {
    // 2^64 bytes cannot be one host mapping; a physical end past 2^64 is no guest address.
    return IommuStatus::kRange;
  }
  Domain& d = it->second;
  for (std::uint32_t endpoint : d.endpoints) {
    if (overlaps_reserved(endpoint, first, last)) {
      return IommuStatus::kRange;
    }
  }
  // The mapping starting at or before `last` with the highest IOVA is the only one that can
  // overlap [first, last]: the mappings are disjoint.
  if (auto next = d.mappings.upper_bound(last); next != d.mappings.begin()) {
    if (std::prev(next)->second.last >= first) {
      return IommuStatus::kInvalid;
    }
  }
  const devices::DmaMapping mapping{first, span + 1, phys, flags};
  std::vector<std::uint32_t> mapped;
  for (std::uint32_t endpoint : d.endpoints) {
    const IommuStatus st = status_of(backend_.map(endpoint, mapping));
    if (st != IommuStatus::kOk) {
      ++counters_.backend_map_failures;
      log::debug(kLog, "map refused by the host",
                 {{"endpoint", hex(endpoint)},
                  {"domain", domain},
                  {"mapping", describe(mapping)},
                  {"status", kStatusNames[static_cast<std::uint8_t>(st)]}});
      bool ok = true;
      for (auto r = mapped.rbegin(); r != mapped.rend(); ++r) {
        unmap_for(*r, mapping, true, ok);
      }
      return st;
    }
    mapped.push_back(endpoint);
  }
  d.mappings.emplace(first, Mapping{last, phys, flags});
  return IommuStatus::kOk;
}

IommuStatus VirtioIommu::unmap(std::span<const std::uint8_t> in) {
  virtio_iommu_req_unmap req{};
  if (!parse(in, req)) {
    return IommuStatus::kInvalid;
  }
  const std::uint32_t domain = le32toh(req.domain);
  const std::uint64_t first = le64toh(req.virt_start);
  const std::uint64_t last = le64toh(req.virt_end);
  // The spec lets the device refuse (S_INVAL) a nonzero `reserved`; it then removes nothing.
  if (!all_zero(req.reserved)) {
    return IommuStatus::kInvalid;
  }
  auto it = domains_.find(domain);
  if (it == domains_.end()) {
    return IommuStatus::kNoEntry;
  }
  if (first > last) {
    return IommuStatus::kInvalid;
  }
  Domain& d = it->second;
  auto begin = d.mappings.lower_bound(first);
  if (begin != d.mappings.begin() && std::prev(begin)->second.last >= first) {
    return IommuStatus::kRange;  // would split the mapping that starts before the range
  }
  auto end = begin;
  for (; end != d.mappings.end() && end->first <= last; ++end) {
    if (end->second.last > last) {
      return IommuStatus::kRange;  // would split the mapping that ends after the range
    }
  }
  bool ok = true;
  for (auto m = begin; m != end; ++m) {
    const devices::DmaMapping mapping{m->first, m->second.last - m->first + 1, m->second.phys,
                               m->second.flags};
    for (std::uint32_t endpoint : d.endpoints) {
      unmap_for(endpoint, mapping, false, ok);
    }
  }
  d.mappings.erase(begin, end);
  return ok ? IommuStatus::kOk : IommuStatus::kDevErr;
}

IommuStatus VirtioIommu::probe(std::span<const std::uint8_t> in,
                               std::span<std::uint8_t> properties) {
  // The readable part is the head, the endpoint and 64 reserved bytes (ignored, the spec's MUST).
  constexpr std::size_t kReadable = offsetof(virtio_iommu_req_probe, properties);
  if (in.size() < kReadable) {
    return IommuStatus::kInvalid;
  }
  std::uint32_t endpoint = 0;
  std::memcpy(&endpoint, in.data() + offsetof(virtio_iommu_req_probe, endpoint), sizeof endpoint);
  endpoint = le32toh(endpoint);
  if (!backend_.has_endpoint(endpoint)) {
    return IommuStatus::kNoEntry;
  }
  // create() checked that the regions fit; the zeros after them end the list (type NONE).
  std::size_t offset = 0;
  for (const ReservedRegion& r : reserved_regions(endpoint)) {
    virtio_iommu_probe_resv_mem prop{};
    prop.head.type = htole16(VIRTIO_IOMMU_PROBE_T_RESV_MEM);
    prop.head.length = htole16(sizeof prop - sizeof prop.head);
    prop.subtype = r.subtype;
    prop.start = htole64(r.start);
    prop.end = htole64(r.end);
    std::memcpy(properties.data() + offset, &prop, sizeof prop);
    offset += sizeof prop;
  }
  return IommuStatus::kOk;
}

void VirtioIommu::unmap_for(std::uint32_t endpoint, const devices::DmaMapping& mapping, bool rollback,
                            bool& ok) {
  if (rollback) {
    ++counters_.rollbacks;
  }
  const IommuStatus st = status_of(backend_.unmap(endpoint, mapping));
  if (st != IommuStatus::kOk) {
    ok = false;
    ++counters_.backend_unmap_failures;
    log::warn(kLog, "host unmap failed; the endpoint may still reach the mapping",
              {{"endpoint", hex(endpoint)},
               {"mapping", describe(mapping)},
               {"rollback", rollback},
               {"status", static_cast<unsigned>(st)}});
  }
}

bool VirtioIommu::leave_domain(std::uint32_t endpoint) {
  auto at = endpoint_domain_.find(endpoint);
  if (at == endpoint_domain_.end()) {
    return true;
  }
  const std::uint32_t domain = at->second;
  endpoint_domain_.erase(at);
  auto it = domains_.find(domain);
  if (it == domains_.end()) {
    return true;  // cannot happen: an attached endpoint's domain exists
  }
  Domain& d = it->second;
  bool ok = true;
  for (const auto& [iova, m] : d.mappings) {
    unmap_for(endpoint, devices::DmaMapping{iova, m.last - iova + 1, m.phys, m.flags}, false, ok);
  }
  d.endpoints.erase(endpoint);
  if (d.endpoints.empty()) {
    log::debug(kLog, "domain without endpoints removed",
               {{"domain", domain}, {"mappings", d.mappings.size()}});
    domains_.erase(it);
  }
  return ok;
}

void VirtioIommu::detach_endpoint(std::uint32_t endpoint) {
  if (!leave_domain(endpoint)) {
    log::warn(kLog, "endpoint detached with mappings the host did not release",
              {{"endpoint", hex(endpoint)}});
  }
}

void VirtioIommu::reset() {
  while (!endpoint_domain_.empty()) {
    detach_endpoint(endpoint_domain_.begin()->first);
  }
  domains_.clear();
}

bool VirtioIommu::overlaps_reserved(std::uint32_t endpoint, std::uint64_t first,
                                    std::uint64_t last) const {
  for (const ReservedRegion& r : reserved_regions(endpoint)) {
    if (r.start <= last && first <= r.end) {
      return true;
    }
  }
  return false;
}

const std::vector<ReservedRegion>& VirtioIommu::reserved_regions(std::uint32_t endpoint) const {
  auto it = endpoint_regions_.find(endpoint);
  return it != endpoint_regions_.end() ? it->second : default_regions_;
}

std::map<std::uint32_t, std::size_t> VirtioIommu::mappings_per_domain() const {
  std::map<std::uint32_t, std::size_t> out;
  for (const auto& [id, d] : domains_) {
    out.emplace(id, d.mappings.size());
  }
  return out;
}

std::map<std::uint32_t, std::uint32_t> VirtioIommu::attached_endpoints() const {
  return endpoint_domain_;
}

std::vector<devices::DmaMapping> VirtioIommu::mappings(std::uint32_t domain) const {
  std::vector<devices::DmaMapping> out;
  auto it = domains_.find(domain);
  if (it == domains_.end()) {
    return out;
  }
  for (const auto& [iova, m] : it->second.mappings) {
    out.push_back(devices::DmaMapping{iova, m.last - iova + 1, m.phys, m.flags});
  }
  return out;
}

std::map<std::string, std::uint64_t> VirtioIommu::named_counters() const {
  std::map<std::string, std::uint64_t> out;
  for (std::size_t type = 0; type < counters_.requests.size(); ++type) {
    out["requests_" + std::string(type_name(static_cast<std::uint8_t>(type)))] =
        counters_.requests[type];
  }
  for (std::size_t s = 0; s < counters_.answers.size(); ++s) {
    out["status_" + std::string(kStatusNames[s])] = counters_.answers[s];
  }
  out["unanswered"] = counters_.unanswered;
  out["backend_map_failures"] = counters_.backend_map_failures;
  out["backend_unmap_failures"] = counters_.backend_unmap_failures;
  out["rollbacks"] = counters_.rollbacks;
  std::uint64_t mappings = 0;
  for (const auto& [id, d] : domains_) {
    out["domain_" + std::to_string(id) + "_mappings"] = d.mappings.size();
    mappings += d.mappings.size();
  }
  out["domains"] = domains_.size();
  out["mappings"] = mappings;
  out["endpoints_attached"] = endpoint_domain_.size();
  for (const auto& [endpoint, domain] : endpoint_domain_) {
    out["endpoint_" + std::to_string(endpoint) + "_domain"] = domain;
  }
  return out;
}

}  // namespace keel::virtio
