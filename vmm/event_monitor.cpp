#include "vmm/event_monitor.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.hpp"

namespace keel::vmm {

Result<std::unique_ptr<EventMonitor>> EventMonitor::open(const std::string& spec) {
  const std::string where = "--event-monitor " + spec;
  if (spec.rfind("path=", 0) == 0) {
    const std::string path = spec.substr(5);
    if (path.empty()) {
      return Error::invalid(where + ": path= is empty; give path=FILE or fd=N");
    }
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) {
      return Error::opening_user_path(path).wrap("--event-monitor");
    }
    return std::unique_ptr<EventMonitor>(new EventMonitor(std::move(fd)));
  }
  if (spec.rfind("fd=", 0) == 0) {
    const std::string digits = spec.substr(3);
    if (digits.empty() || digits.size() > 9 ||
        digits.find_first_not_of("0123456789") != std::string::npos) {
      return Error::invalid(where + ": fd= wants a descriptor number, e.g. fd=3");
    }
    const int number = std::stoi(digits);
    if (number <= STDERR_FILENO) {
      return Error::invalid(where + ": fd " + digits +
                            " is stdin, stdout or stderr; open another (e.g. 3>events.json) "
                            "or give path=FILE");
    }
    const int flags = ::fcntl(number, F_GETFL);
    if (flags < 0) {
      return Error::invalid(where + ": fd " + digits + " is not open in keel; open it for keel "
                            "(e.g. 3>events.json) or give path=FILE");
    }
    if ((flags & O_ACCMODE) == O_RDONLY) {
      return Error::invalid(where + ": fd " + digits + " is open read-only; open it for writing");
    }
    ::fcntl(number, F_SETFD, FD_CLOEXEC);
    // A reader that stops reading must not stop the thread that reports (a vCPU's, a lazy
    // mapping's): a full pipe or socket drops events instead.
    ::fcntl(number, F_SETFL, flags | O_NONBLOCK);
    return std::unique_ptr<EventMonitor>(new EventMonitor(UniqueFd(number)));
  }
  return Error::invalid(where + ": give path=FILE or fd=N");
}

void EventMonitor::emit(std::string_view source, std::string_view event,
                        const nlohmann::json& properties) {
  const auto elapsed = std::chrono::steady_clock::now() - start_;
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(elapsed);
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed - secs);
  const nlohmann::json line = {{"timestamp", {{"secs", secs.count()}, {"nanos", nanos.count()}}},
                               {"source", source},
                               {"event", event},
                               {"properties", properties}};
  const std::string text = line.dump() + "\n";
  std::lock_guard lock(mutex_);
  if (failed_) {
    return;
  }
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd_.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && errno == EAGAIN && done == 0) {
      if (dropped_++ == 0) {
        log::warn("events", "the event reader is not keeping up; events are dropped",
                  {{"event", event}});
      }
      return;
    }
    if (n <= 0) {  // an error, or a line cut short (pipes take lines under 4 KiB whole)
      failed_ = true;
      log::warn("events", "the event monitor stopped: a write failed",
                {{"error", Error::from_errno("write").message()}});
      return;
    }
    done += static_cast<std::size_t>(n);
  }
}

nlohmann::json dma_event_properties(const vfio::DmaReport& report) {
  auto budget = [](const vfio::DmaBudget& b) -> nlohmann::json {
    if (b.source == vfio::AvailSource::kCapability) {
      return b.avail;
    }
    return std::string(vfio::to_string(b.source));
  };
  return {{"devices", report.devices},
          {"avail_at_open", budget(report.avail_at_open)},
          {"avail_now", report.avail_now ? budget(*report.avail_now) : nlohmann::json(nullptr)},
          {"planned_entries", report.planned_entries},
          {"entries_used", report.entries_used},
          {"mode", vfio::to_string(report.mode)},
          {"consistent", report.consistent ? nlohmann::json(*report.consistent) : nullptr}};
}

}  // namespace keel::vmm
