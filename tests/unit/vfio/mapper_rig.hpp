#pragma once

#include <memory>
#include <optional>

#include <catch2/catch.hpp>

#include "devices/vfio/container_fd.hpp"
#include "devices/vfio/dma_mapper.hpp"
#include "devices/vfio/group.hpp"
#include "devices/vfio/iommu_info.hpp"
#include "tests/unit/vfio/fake_vfio_sys.hpp"

namespace keel::vfio::testing {

// A type1v2 container with one group on a fake kernel, negotiated, with a mapper on top.
struct MapperRig {
  std::shared_ptr<FakeVfioSys> fake;
  std::optional<ContainerFd> container;
  std::optional<Group> group;
  IommuInfo info;
  std::optional<Type1DmaBackend> backend;
  std::optional<DmaMapper> mapper;

  explicit MapperRig(FakeKernelConfig config = {}) {
    fake = std::make_shared<FakeVfioSys>(std::move(config));
    fake->add_group(1, {});
    auto c = ContainerFd::open(fake);
    REQUIRE(c.ok());
    container.emplace(std::move(*c));
    auto g = Group::open(fake, 1, "/nonexistent");
    REQUIRE(g.ok());
    group.emplace(std::move(*g));
    REQUIRE(container->attach(*group).ok());
    auto i = read_iommu_info(*fake, container->fd());
    REQUIRE(i.ok());
    info = *i;
    backend.emplace(fake, container->fd(), container->unmap_all_supported());
    mapper.emplace(*backend, info.budget);
  }
};

}  // namespace keel::vfio::testing
