#include "vmm/event_monitor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

namespace keel::vmm {
namespace {

struct TempFile {
  TempFile() {
    char name[] = "/tmp/keel-events-XXXXXX";
    const int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = name;
  }
  ~TempFile() { ::unlink(path.c_str()); }
  std::string read() const {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string path;
};

TEST_CASE("event monitor: one JSON object per line, in cloud-hypervisor's shape") {
  TempFile file;
  {
    std::ofstream stale(file.path);
    stale << "left from before\n";
  }
  auto monitor = EventMonitor::open("path=" + file.path);
  REQUIRE(monitor.ok());
  (*monitor)->emit("vm", "booted");
  (*monitor)->emit("vm", "device-added", {{"id", "edu1"}, {"bdf", "0000:00:02.0"}});
  std::istringstream lines(file.read());
  std::string line;
  REQUIRE(std::getline(lines, line));  // the file was truncated
  const auto first = nlohmann::json::parse(line);
  CHECK(first["source"] == "vm");
  CHECK(first["event"] == "booted");
  CHECK(first["properties"].is_null());
  CHECK(first["timestamp"]["secs"].is_number_unsigned());
  CHECK(first["timestamp"]["nanos"].get<std::uint64_t>() < 1'000'000'000);
  REQUIRE(std::getline(lines, line));
  const auto second = nlohmann::json::parse(line);
  CHECK(second["properties"] == nlohmann::json{{"id", "edu1"}, {"bdf", "0000:00:02.0"}});
  CHECK_FALSE(std::getline(lines, line));
  struct stat st {};
  REQUIRE(::stat(file.path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("event monitor: fd=N takes over the caller's descriptor") {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  auto monitor = EventMonitor::open("fd=" + std::to_string(p[1]));
  REQUIRE(monitor.ok());
  CHECK((::fcntl(p[1], F_GETFD) & FD_CLOEXEC) != 0);
  (*monitor)->emit("vmm", "starting", {{"pid", 7}});
  char buf[256] = {};
  const ssize_t n = ::read(p[0], buf, sizeof buf - 1);
  REQUIRE(n > 0);
  const std::string text(buf, static_cast<std::size_t>(n));
  CHECK(text.back() == '\n');
  CHECK(nlohmann::json::parse(text)["event"] == "starting");
  // The reader goes away: the write fails (EPIPE, not a signal) and the monitor goes quiet.
  ::close(p[0]);
  ::signal(SIGPIPE, SIG_IGN);
  (*monitor)->emit("vmm", "shutdown");
  (*monitor)->emit("vmm", "shutdown");
  ::signal(SIGPIPE, SIG_DFL);
}

TEST_CASE("event monitor: a reader that is not keeping up loses events, never blocks the VM") {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  auto monitor = EventMonitor::open("fd=" + std::to_string(p[1]));
  REQUIRE(monitor.ok());
  CHECK((::fcntl(p[1], F_GETFL) & O_NONBLOCK) != 0);
  // Fill the pipe: a blocking write would hang this test.
  const std::string chunk(4096, 'x');
  while (::write(p[1], chunk.data(), chunk.size()) > 0) {
  }
  (*monitor)->emit("dma", "low-water", {{"entries_used", 7}});
  // Drained, the next event arrives whole.
  char buf[4096];
  ::fcntl(p[0], F_SETFL, O_NONBLOCK);
  while (::read(p[0], buf, sizeof buf) > 0) {
  }
  (*monitor)->emit("vm", "booted");
  const ssize_t n = ::read(p[0], buf, sizeof buf);
  REQUIRE(n > 0);
  CHECK(nlohmann::json::parse(std::string(buf, static_cast<std::size_t>(n)))["event"] == "booted");
  ::close(p[0]);
}

TEST_CASE("event monitor: bad specs are refused with the fix") {
  auto refused = [](const std::string& spec, const std::string& says) {
    CAPTURE(spec);
    auto monitor = EventMonitor::open(spec);
    REQUIRE_FALSE(monitor.ok());
    CHECK_THAT(monitor.error().message(), Catch::Contains(says));
  };
  refused("file=/tmp/x", "give path=FILE or fd=N");
  refused("path=", "path= is empty");
  refused("path=/nonexistent-dir/events", "/nonexistent-dir/events");
  refused("fd=", "wants a descriptor number");
  refused("fd=3x", "wants a descriptor number");
  refused("fd=1", "stdin, stdout or stderr");
  refused("fd=987654", "is not open in keel");
  const int ro = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(ro > 2);
  refused("fd=" + std::to_string(ro), "read-only");
  ::close(ro);
}

}  // namespace
}  // namespace keel::vmm
