// virtio-blk over a real image file in a temporary directory: the opening rules, and requests
// served as the transport's worker hands them over (a Chain over guest RAM).
#include "devices/virtio/virtio_blk.hpp"

#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/unit/virtio/driver_ring.hpp"

namespace keel::virtio {
namespace {

using test::guest_ram;
constexpr std::uint64_t kHeader = 0x1000, kBuf = 0x10000, kStatus = 0x3000;
constexpr std::uint64_t kImage = 64 * 1024;  // 128 sectors

class Dir {
 public:
  Dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "keel-blk-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~Dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  // An image of `size` bytes, byte i holding (i * 7 + i / 512) & 0xff.
  std::string image(const std::string& name, std::uint64_t size = kImage) const {
    const std::string p = path(name);
    std::vector<std::uint8_t> bytes(size);
    for (std::uint64_t i = 0; i < size; ++i) {
      bytes[i] = static_cast<std::uint8_t>(i * 7 + i / 512);
    }
    const int fd = ::open(p.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    ::close(fd);
    return p;
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

std::vector<std::uint8_t> file_bytes(const std::string& path, std::uint64_t offset, std::size_t n) {
  std::vector<std::uint8_t> out(n);
  const int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::pread(fd, out.data(), n, static_cast<off_t>(offset)) == static_cast<ssize_t>(n));
  ::close(fd);
  return out;
}

struct Rig {
  memory::GuestMemory mem = guest_ram();
  std::unique_ptr<VirtioBlk> blk;

  explicit Rig(const std::string& path, bool readonly = false, VirtioBlk::Options options = {}) {
    auto image = DiskImage::open({path, readonly, false});
    INFO((image.ok() ? "" : image.error().message()));
    REQUIRE(image.ok());
    auto b = VirtioBlk::create(std::move(image).value(), options);
    REQUIRE(b.ok());
    blk = std::move(b).value();
  }
  // A request as Linux lays it out: header, data buffers, status byte.
  std::uint8_t request(std::uint32_t type, std::uint64_t sector, std::vector<Buffer> data,
                       std::uint32_t* used = nullptr) {
    virtio_blk_outhdr h{type, 0, sector};
    REQUIRE(mem.write_obj(kHeader, h).ok());
    REQUIRE(mem.write_obj<std::uint8_t>(kStatus, 0xee).ok());
    Chain c;
    c.readable.push_back({kHeader, sizeof h});
    c.readable_size = sizeof h;
    const bool in = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
    for (const Buffer& b : data) {
      (in ? c.writable : c.readable).push_back(b);
      (in ? c.writable_size : c.readable_size) += b.len;
    }
    c.writable.push_back({kStatus, 1});
    c.writable_size += 1;
    const std::uint32_t n = blk->serve(0, c, mem);
    if (used != nullptr) {
      *used = n;
    }
    return *mem.read_obj<std::uint8_t>(kStatus);
  }
  std::vector<std::uint8_t> guest(std::uint64_t gpa, std::size_t n) {
    std::vector<std::uint8_t> out(n);
    REQUIRE(mem.read(gpa, out).ok());
    return out;
  }
};

TEST_CASE("disk image: opening follows the rules for a path the user names") {
  Dir d;
  const std::string img = d.image("a.img");
  auto refused = [](const DiskImage::Options& o) {
    auto r = DiskImage::open(o);
    REQUIRE_FALSE(r.ok());
    return r.error().message();
  };
  CHECK(refused({d.path("missing.img")}).find("missing.img") != std::string::npos);
  CHECK(refused({""}).find("path= is empty") != std::string::npos);
  std::filesystem::create_directory(d.path("dir"));
  CHECK(refused({d.path("dir")}).find("not a regular file") != std::string::npos);
  REQUIRE(::mkfifo(d.path("fifo").c_str(), 0600) == 0);
  CHECK(refused({d.path("fifo")}).find("not a regular file") != std::string::npos);  // no hang
  d.image("empty.img", 0);
  CHECK(refused({d.path("empty.img")}).find("less than one 512-byte sector") != std::string::npos);
  // A writable image is not opened through a symbolic link; a read-only one may be.
  std::filesystem::create_symlink(img, d.path("link.img"));
  CHECK(refused({d.path("link.img")}).find("symbolic link") != std::string::npos);
  {
    auto ro = DiskImage::open({d.path("link.img"), true});
    CHECK(ro.ok());
  }
  // One writer, or any number of readers.
  auto writer = DiskImage::open({img});
  REQUIRE(writer.ok());
  CHECK(writer->size() == kImage);
  CHECK(refused({img}).find("is in use") != std::string::npos);
  CHECK(refused({img, true}).find("is in use") != std::string::npos);
  writer = Error::invalid("closed");  // the lock goes with the file
  auto r1 = DiskImage::open({img, true});
  auto r2 = DiskImage::open({img, true});
  CHECK((r1.ok() && r2.ok()));
  CHECK(refused({img}).find("is in use") != std::string::npos);
}

TEST_CASE("virtio-blk: identity, features and configuration") {
  Dir d;
  Rig rw(d.image("rw.img"), false, {4, 256});
  CHECK(rw.blk->device_type() == 2);
  CHECK(rw.blk->num_queues() == 4);
  CHECK(rw.blk->queue_max_size(0) == 256);
  CHECK(rw.blk->uses_workers());
  const std::uint64_t f = rw.blk->device_features();
  CHECK((f & (1ULL << VIRTIO_BLK_F_MQ)) != 0);
  CHECK((f & (1ULL << VIRTIO_BLK_F_FLUSH)) != 0);
  CHECK((f & (1ULL << VIRTIO_BLK_F_DISCARD)) != 0);
  CHECK((f & (1ULL << VIRTIO_BLK_F_RO)) == 0);
  virtio_blk_config c{};
  rw.blk->read_config(0, std::span(reinterpret_cast<std::uint8_t*>(&c), sizeof c));
  CHECK(c.capacity == kImage / 512);
  CHECK(c.seg_max == 254);
  CHECK(c.num_queues == 4);
  std::uint8_t past[4] = {1, 1, 1, 1};
  rw.blk->read_config(0x1000, past);  // past the structure: zeros
  CHECK(past[0] == 0);
  Rig ro(d.image("ro.img"), true);
  CHECK((ro.blk->device_features() & (1ULL << VIRTIO_BLK_F_RO)) != 0);
  CHECK((ro.blk->device_features() & (1ULL << VIRTIO_BLK_F_DISCARD)) == 0);
  CHECK(!VirtioBlk::create(*DiskImage::open({d.image("q.img")}), {0, 128}).ok());
  CHECK(!VirtioBlk::create(*DiskImage::open({d.image("q2.img")}), {1, 100}).ok());
}

TEST_CASE("virtio-blk: reads and writes go to the image, across scattered guest buffers") {
  Dir d;
  const std::string img = d.image("disk.img");
  Rig r(img);
  // Read sectors 3-4 into two buffers that split the data at 700 bytes.
  std::uint32_t used = 0;
  CHECK(r.request(VIRTIO_BLK_T_IN, 3, {{kBuf, 700}, {kBuf + 0x2000, 324}}, &used) ==
        VIRTIO_BLK_S_OK);
  CHECK(used == 1025);
  auto want = file_bytes(img, 3 * 512, 1024);
  auto got = r.guest(kBuf, 700);
  auto rest = r.guest(kBuf + 0x2000, 324);
  got.insert(got.end(), rest.begin(), rest.end());
  CHECK(got == want);
  // Write sector 10 from a pattern in guest RAM, then read it back from the file.
  std::vector<std::uint8_t> pattern(512);
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    pattern[i] = static_cast<std::uint8_t>(0xa5 ^ i);
  }
  REQUIRE(r.mem.write(kBuf, pattern).ok());
  CHECK(r.request(VIRTIO_BLK_T_OUT, 10, {{kBuf, 512}}, &used) == VIRTIO_BLK_S_OK);
  CHECK(used == 1);
  CHECK(file_bytes(img, 10 * 512, 512) == pattern);
  CHECK(file_bytes(img, 11 * 512, 512) == file_bytes(d.image("fresh.img"), 11 * 512, 512));
  CHECK(r.request(VIRTIO_BLK_T_FLUSH, 0, {}) == VIRTIO_BLK_S_OK);
  auto counters = r.blk->counters();
  CHECK(counters["read_ops"] == 1);
  CHECK(counters["read_bytes"] == 1024);
  CHECK(counters["write_ops"] == 1);
  CHECK(counters["write_bytes"] == 512);
  CHECK(counters["flush_ops"] == 1);
  CHECK(counters["io_errors"] == 0);
}

TEST_CASE("virtio-blk: requests outside the image or malformed get IOERR and touch nothing") {
  Dir d;
  const std::string img = d.image("disk.img");
  const auto before = file_bytes(img, 0, kImage);
  Rig r(img);
  REQUIRE(r.mem.fill(kBuf, 0x5a, 0x4000).ok());
  const std::uint64_t last = kImage / 512 - 1;
  CHECK(r.request(VIRTIO_BLK_T_OUT, last, {{kBuf, 1024}}) == VIRTIO_BLK_S_IOERR);  // one past
  CHECK(r.request(VIRTIO_BLK_T_OUT, last + 1, {{kBuf, 512}}) == VIRTIO_BLK_S_IOERR);
  CHECK(r.request(VIRTIO_BLK_T_OUT, ~0ULL, {{kBuf, 512}}) == VIRTIO_BLK_S_IOERR);  // wraps
  CHECK(r.request(VIRTIO_BLK_T_OUT, ~0ULL / 512, {{kBuf, 512}}) == VIRTIO_BLK_S_IOERR);
  CHECK(r.request(VIRTIO_BLK_T_OUT, 0, {{kBuf, 100}}) == VIRTIO_BLK_S_IOERR);  // not sectors
  CHECK(r.request(VIRTIO_BLK_T_IN, last + 1, {{kBuf, 512}}) == VIRTIO_BLK_S_IOERR);
  CHECK(r.guest(kBuf, 1) == std::vector<std::uint8_t>{0x5a});  // nothing read into it
  CHECK(r.request(VIRTIO_BLK_T_OUT, 0, {{kBuf, 512}, {kBuf + 0x1000, VirtioBlk::kMaxRequestBytes}}) ==
        VIRTIO_BLK_S_IOERR);  // over the request limit
  CHECK(r.request(VIRTIO_BLK_T_OUT, last, {{kBuf, 512}}) == VIRTIO_BLK_S_OK);  // the last fits
  CHECK(r.request(0x77, 0, {}) == VIRTIO_BLK_S_UNSUPP);
  // A header cut short, and a chain with no room for a status.
  Chain shorty;
  shorty.readable = {{kHeader, 8}};
  shorty.readable_size = 8;
  shorty.writable = {{kStatus, 1}};
  shorty.writable_size = 1;
  CHECK(r.blk->serve(0, shorty, r.mem) == 1);
  CHECK(*r.mem.read_obj<std::uint8_t>(kStatus) == VIRTIO_BLK_S_IOERR);
  Chain mute;
  mute.readable = {{kHeader, 16}};
  mute.readable_size = 16;
  CHECK(r.blk->serve(0, mute, r.mem) == 0);
  auto after = file_bytes(img, 0, kImage);
  after.resize(last * 512);  // all but the sector written on purpose
  auto expected = before;
  expected.resize(last * 512);
  CHECK(after == expected);
  CHECK(std::filesystem::file_size(img) == kImage);
  CHECK(r.blk->counters()["io_errors"] == 9);
  CHECK(r.blk->counters()["unsupported"] == 1);
}

TEST_CASE("virtio-blk: a read-only disk refuses writes with IOERR and still reads") {
  Dir d;
  const std::string img = d.image("ro.img");
  const auto before = file_bytes(img, 0, kImage);
  Rig r(img, true);
  REQUIRE(r.mem.fill(kBuf, 0x11, 512).ok());
  CHECK(r.request(VIRTIO_BLK_T_OUT, 0, {{kBuf, 512}}) == VIRTIO_BLK_S_IOERR);
  virtio_blk_discard_write_zeroes seg{0, 8, 0};
  REQUIRE(r.mem.write_obj(kBuf, seg).ok());
  CHECK(r.request(VIRTIO_BLK_T_DISCARD, 0, {{kBuf, sizeof seg}}) == VIRTIO_BLK_S_IOERR);
  CHECK(r.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, {{kBuf, sizeof seg}}) == VIRTIO_BLK_S_IOERR);
  CHECK(r.request(VIRTIO_BLK_T_FLUSH, 0, {}) == VIRTIO_BLK_S_OK);
  CHECK(r.request(VIRTIO_BLK_T_IN, 0, {{kBuf, 512}}) == VIRTIO_BLK_S_OK);
  CHECK(r.guest(kBuf, 512) == file_bytes(img, 0, 512));
  CHECK(file_bytes(img, 0, kImage) == before);
}

TEST_CASE("virtio-blk: get-id, discard and write-zeroes") {
  Dir d;
  const std::string img = d.image("disk.img");
  Rig r(img);
  std::uint32_t used = 0;
  REQUIRE(r.mem.fill(kBuf, 0xff, 20).ok());
  CHECK(r.request(VIRTIO_BLK_T_GET_ID, 0, {{kBuf, 20}}, &used) == VIRTIO_BLK_S_OK);
  struct stat st {};
  REQUIRE(::stat(img.c_str(), &st) == 0);
  char id[21] = {};
  std::snprintf(id, sizeof id, "%lx-%lx", static_cast<unsigned long>(st.st_dev),
                static_cast<unsigned long>(st.st_ino));
  const auto got = r.guest(kBuf, std::strlen(id));
  CHECK(std::string(got.begin(), got.end()) == id);
  CHECK(used == std::strlen(id) + 1);

  virtio_blk_discard_write_zeroes seg{4, 2, 0};
  REQUIRE(r.mem.write_obj(kBuf, seg).ok());
  const std::vector<std::uint8_t> zeros(1024, 0);
  const std::uint8_t zeroed = r.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, {{kBuf, sizeof seg}});
  if (zeroed == VIRTIO_BLK_S_UNSUPP) {
    WARN("this file system cannot zero ranges: UNSUPP, as the guest is told");
  } else {
    CHECK(zeroed == VIRTIO_BLK_S_OK);
    CHECK(file_bytes(img, 4 * 512, 1024) == zeros);
    CHECK(file_bytes(img, 6 * 512, 1) != std::vector<std::uint8_t>{0});
  }
  seg = {20, 8, 0};
  REQUIRE(r.mem.write_obj(kBuf, seg).ok());
  const std::uint8_t discarded = r.request(VIRTIO_BLK_T_DISCARD, 0, {{kBuf, sizeof seg}});
  CHECK((discarded == VIRTIO_BLK_S_OK || discarded == VIRTIO_BLK_S_UNSUPP));
  CHECK(std::filesystem::file_size(img) == kImage);  // KEEP_SIZE
  // Past the end, unknown flags, or two segments: refused.
  seg = {kImage / 512 - 1, 2, 0};
  REQUIRE(r.mem.write_obj(kBuf, seg).ok());
  CHECK(r.request(VIRTIO_BLK_T_DISCARD, 0, {{kBuf, sizeof seg}}) == VIRTIO_BLK_S_IOERR);
  seg = {0, 1, 0x80};
  REQUIRE(r.mem.write_obj(kBuf, seg).ok());
  CHECK(r.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, {{kBuf, sizeof seg}}) == VIRTIO_BLK_S_UNSUPP);
  CHECK(r.request(VIRTIO_BLK_T_DISCARD, 0, {{kBuf, 2 * sizeof seg}}) == VIRTIO_BLK_S_IOERR);
}

}  // namespace
}  // namespace keel::virtio
