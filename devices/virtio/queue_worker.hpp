#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "base/event_fd.hpp"
#include "base/result.hpp"

namespace keel::virtio {

// The thread that serves one virtqueue of a device that does I/O (a disk, a network link), so
// that the guest's vCPU never waits for it. It sleeps until the queue's kick eventfd fires -- a
// KVM ioeventfd on the queue's notify address, so the guest's notification never leaves the
// kernel, or the transport signalling it when a notification did reach userspace -- and then
// calls `serve`. A queue fed from outside (a network link's receive queue) also has a source fd
// to wait on: `serve` returns whether to watch it again (false when the source has input but
// the guest gave no buffers for it: then only the guest's next kick can help, and watching a
// readable fd would spin).
class QueueWorker {
 public:
  using Serve = std::function<bool()>;
  // Runs first on the new thread (its seccomp filter); an error stops the thread before it
  // serves anything and is returned by start().
  using ThreadStart = std::function<Status()>;

  static Result<std::unique_ptr<QueueWorker>> start(std::string name, Serve serve,
                                                    const ThreadStart& thread_start,
                                                    int source_fd = -1);
  // Stops the thread and waits for it: a `serve` call in progress finishes first.
  ~QueueWorker();
  QueueWorker(const QueueWorker&) = delete;
  QueueWorker& operator=(const QueueWorker&) = delete;

  int kick_fd() const { return kick_.fd(); }
  void kick() const { (void)kick_.signal(); }

 private:
  QueueWorker(EventFd kick, EventFd stop, int source_fd)
      : kick_(std::move(kick)), stop_(std::move(stop)), source_fd_(source_fd) {}
  void run(const Serve& serve);

  EventFd kick_, stop_;
  int source_fd_;  // not owned; -1 for none
  std::thread thread_;
};

}  // namespace keel::virtio
