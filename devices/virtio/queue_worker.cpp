#include "devices/virtio/queue_worker.hpp"

#include <poll.h>
#include <pthread.h>

#include <cerrno>
#include <future>

#include "base/log.hpp"

namespace keel::virtio {

Result<std::unique_ptr<QueueWorker>> QueueWorker::start(std::string name, Serve serve,
                                                       const ThreadStart& thread_start,
                                                       int source_fd) {
  KEEL_TRY(auto kick, EventFd::create(EFD_NONBLOCK));
  KEEL_TRY(auto stop, EventFd::create(EFD_NONBLOCK));
  std::unique_ptr<QueueWorker> w(new QueueWorker(std::move(kick), std::move(stop), source_fd));
  std::promise<Status> started;
  auto ready = started.get_future();
  w->thread_ = std::thread([self = w.get(), name = std::move(name), serve = std::move(serve),
                            &thread_start, &started] {
    (void)::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
    Status s = thread_start ? thread_start() : ok_status();
    const bool ok = s.ok();
    started.set_value(std::move(s));  // `thread_start` and `started` are gone after this
    if (ok) {
      self->run(serve);
    }
  });
  Status s = ready.get();
  if (!s.ok()) {
    w->thread_.join();
    return s.error();
  }
  return w;
}

QueueWorker::~QueueWorker() {
  if (thread_.joinable()) {
    (void)stop_.signal();
    thread_.join();
  }
}

void QueueWorker::run(const Serve& serve) {
  bool watch_source = source_fd_ >= 0;
  for (;;) {
    pollfd fds[3] = {{stop_.fd(), POLLIN, 0}, {kick_.fd(), POLLIN, 0}, {source_fd_, POLLIN, 0}};
    if (::poll(fds, watch_source ? 3 : 2, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      log::error("virtio", "queue worker stopped: poll failed", {{"errno", errno}});
      return;
    }
    if (fds[0].revents != 0) {
      return;
    }
    if (watch_source && (fds[2].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
      // The source is gone (a TAP deleted under us): serve what the guest asks, stop waiting
      // for input that cannot come, rather than spin on it.
      log::warn("virtio", "queue source closed; no more input on this queue",
                {{"fd", source_fd_}, {"revents", fds[2].revents}});
      source_fd_ = -1;
      watch_source = false;
      continue;
    }
    if (fds[1].revents != 0) {
      (void)kick_.consume();  // before serving: a kick that comes meanwhile wakes the next round
    }
    if (fds[1].revents != 0 || (watch_source && fds[2].revents != 0)) {
      watch_source = serve() && source_fd_ >= 0;
    }
  }
}

}  // namespace keel::virtio
