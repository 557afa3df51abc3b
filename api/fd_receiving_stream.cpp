#include "api/fd_receiving_stream.hpp"

namespace keel::api {

boost::system::error_code FdReceivingStream::receive(iovec* iov, std::size_t count,
                                                     std::size_t& n) {
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxFds)> control{};
  msghdr message{};
  message.msg_iov = iov;
  message.msg_iovlen = count;
  message.msg_control = control.data();
  message.msg_controllen = control.size();
  ssize_t got = -1;
  do {
    got = ::recvmsg(socket_.native_handle(), &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    n = 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return boost::asio::error::would_block;
    }
    return {errno, boost::system::system_category()};
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
      continue;
    }
    const std::size_t fds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < fds; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      UniqueFd owned(fd);
      if (fds_.size() < kMaxFds) {
        fds_.push_back(std::move(owned));
      } else {
        dropped_ = true;  // closed here
      }
    }
  }
  if ((message.msg_flags & MSG_CTRUNC) != 0) {
    dropped_ = true;  // more than fit: the kernel closed the rest
  }
  n = static_cast<std::size_t>(got);
  if (got == 0) {
    return boost::asio::error::eof;
  }
  return {};
}

}  // namespace keel::api
