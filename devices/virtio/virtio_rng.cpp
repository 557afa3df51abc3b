#include "devices/virtio/virtio_rng.hpp"

#include <fcntl.h>
#include <linux/virtio_ids.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace keel::virtio {

Result<std::unique_ptr<VirtioRng>> VirtioRng::open(const std::string& source) {
  const std::string what = "rng source " + source;
  UniqueFd fd(::open(source.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    return Error::opening_user_path("open " + what);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return Error::from_errno("stat " + what);
  }
  if (!S_ISCHR(st.st_mode) && !S_ISREG(st.st_mode)) {
    return Error::invalid(what + " is neither a character device nor a regular file; give e.g. " +
                          kDefaultSource);
  }
  return std::unique_ptr<VirtioRng>(new VirtioRng(std::move(fd)));
}

std::uint32_t VirtioRng::device_type() const { return VIRTIO_ID_RNG; }

void VirtioRng::read_config(std::uint64_t, std::span<std::uint8_t> data) const {
  std::fill(data.begin(), data.end(), 0);  // virtio-rng has no configuration
}

std::uint32_t VirtioRng::serve(std::uint16_t, const Chain& chain,
                               const memory::GuestMemory& memory) {
  return serve_from_copy(chain, memory,
                         [this](std::span<const std::uint8_t>, std::span<std::uint8_t> out) {
                           return fill(out);
                         });
}

std::size_t VirtioRng::fill(std::span<std::uint8_t> out) {
  ++requests_;
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(source_.get(), out.data() + done, out.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // EAGAIN (nothing now), end of a file, or an error: answer with what there is
    }
  }
  short_reads_ += done < out.size() ? 1 : 0;
  bytes_ += done;
  return done;
}

std::map<std::string, std::uint64_t> VirtioRng::counters() const {
  return {{"requests", requests_}, {"bytes", bytes_}, {"short_reads", short_reads_}};
}

}  // namespace keel::virtio
