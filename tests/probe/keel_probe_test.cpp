// Hostile inputs against the real keel and keel-remote binaries, on this machine: odd files on
// the command line, an idle API fed malformed HTTP, tricky JSON, floods of idle clients, fd
// exhaustion and signals. Nothing here needs /dev/kvm: an idle keel does not open it, and every
// input checked here is refused before a VM would be built. Each case is bounded in time; an
// answer that does not come is a failure, never a pass.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/api_client.hpp"
#include "base/unique_fd.hpp"
#include "tests/support/raw_socket.hpp"

namespace keel::probe {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::read_until_close;
using testing::send_all;
using testing::try_connect;

std::string binary(const char* env) {
  const char* path = std::getenv(env);
  REQUIRE(path != nullptr);  // set by ctest (tests/probe/CMakeLists.txt)
  return path;
}

// A private directory, removed afterwards.
struct TempDir {
  TempDir() {
    char name[] = "/tmp/keel-probe-XXXXXX";
    REQUIRE(::mkdtemp(name) != nullptr);
    path = name;
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
  std::string path;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A process started from `argv`, its stdout and stderr in a file; killed if still running when
// it goes out of scope.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::string& log,
          std::optional<rlim_t> fd_limit = std::nullopt)
      : log_(log) {
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      ::dup2(out, STDOUT_FILENO);
      ::dup2(out, STDERR_FILENO);
      const int null = ::open("/dev/null", O_RDONLY);
      ::dup2(null, STDIN_FILENO);
      if (fd_limit) {
        const rlimit limit{*fd_limit, *fd_limit};
        ::setrlimit(RLIMIT_NOFILE, &limit);
      }
      std::vector<char*> args;
      for (const std::string& a : argv) {
        args.push_back(const_cast<char*>(a.c_str()));
      }
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Process() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // The exit status (-1: killed by a signal), or nullopt if it is still running after `limit`.
  std::optional<int> wait(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!status_) {
      int status = 0;
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      } else if (std::chrono::steady_clock::now() > deadline) {
        return std::nullopt;
      } else {
        std::this_thread::sleep_for(20ms);
      }
    }
    return status_;
  }
  std::string output() const { return slurp(log_); }
  // CPU time it has used so far, in clock ticks (utime + stime of /proc/PID/stat).
  long cpu_ticks() const {
    std::istringstream stat(slurp("/proc/" + std::to_string(pid_) + "/stat"));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 1; i <= 15 && stat >> field; ++i) {
      if (i == 14) {
        utime = std::stol(field);
      } else if (i == 15) {
        stime = std::stol(field);
      }
    }
    return utime + stime;
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

struct Run {
  std::optional<int> status;  // nullopt: still running after the limit (then killed)
  std::string output;
};

Run run_keel(const std::vector<std::string>& args, const TempDir& dir,
             std::chrono::milliseconds limit = 20s) {
  std::vector<std::string> argv{binary("KEEL")};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, dir / "keel.log");
  Run r;
  r.status = p.wait(limit);
  r.output = p.output();
  return r;
}

// keel serving its API, idle, on DIR/api.sock: the sanitizer build ($KEEL), or the binary given.
class IdleKeel {
 public:
  explicit IdleKeel(const TempDir& dir, std::optional<rlim_t> fd_limit = std::nullopt,
                    const std::string& keel = binary("KEEL"))
      : socket_(dir / "api.sock"),
        process_({keel, "--api-socket", "path=" + socket_}, dir / "idle-keel.log", fd_limit) {
    for (int i = 0; i < 500 && !ping_ok(); ++i) {
      REQUIRE_FALSE(process_.wait(0ms).has_value());  // it must not have died
      std::this_thread::sleep_for(20ms);
    }
    REQUIRE(ping_ok());
  }
  const std::string& socket() const { return socket_; }
  Process& process() { return process_; }

  bool ping_ok() const {
    auto reply = api::api_request(socket_, "GET", "/api/v1/vmm.ping", "", 30s);
    return reply.ok() && reply->status == 200;
  }
  // One request over a fresh connection: the status and the body.
  std::pair<unsigned, std::string> request(const std::string& method, const std::string& endpoint,
                                           const std::string& body = "") const {
    auto reply = api::api_request(socket_, method, "/api/v1/" + endpoint, body, 10s);
    REQUIRE(reply.ok());
    return {reply->status, reply->body};
  }

 private:
  std::string socket_;
  Process process_;
};

std::string vm_config(const std::string& kernel, const std::string& more = "") {
  return R"({"payload": {"kernel": ")" + kernel + R"("}, "memory": {"size": 268435456})" + more +
         "}";
}

TEST_CASE("probe: files on the command line that are not regular files are refused at once") {
  TempDir dir;
  const std::string fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--kernel", fifo},
           {"--kernel", dir.path},
           {"--kernel", "/dev/null"},
           {"--kernel", "/bin/sh", "--initramfs", fifo}}) {
    INFO(args[1] << (args.size() > 2 ? " " + args[3] : ""));
    const Run r = run_keel(args, dir, 10s);
    REQUIRE(r.status.has_value());  // a FIFO must not wedge keel
    CHECK(*r.status == 1);
    CHECK_THAT(r.output, Catch::Contains("is not a regular file"));
  }
  const Run missing = run_keel({"--kernel", dir / "no-such-kernel"}, dir);
  REQUIRE(missing.status.has_value());
  CHECK(*missing.status == 1);
  CHECK_THAT(missing.output, Catch::Contains(dir / "no-such-kernel"));
}

TEST_CASE("probe: the serial file is neither truncated by a failed start nor written through a link") {
  TempDir dir;
  const std::string precious = dir / "precious";
  std::ofstream(precious) << "keep me\n";
  // A start that fails (no such kernel) leaves an existing serial file as it was.
  const Run failed = run_keel({"--kernel", dir / "nope", "--serial", "file=" + precious}, dir);
  REQUIRE(failed.status.has_value());
  CHECK(*failed.status == 1);
  CHECK(slurp(precious) == "keep me\n");
  // A symbolic link planted where the serial file goes is refused, its target untouched.
  const std::string link = dir / "link";
  REQUIRE(::symlink(precious.c_str(), link.c_str()) == 0);
  const Run linked = run_keel({"--kernel", "/bin/sh", "--serial", "file=" + link}, dir);
  REQUIRE(linked.status.has_value());
  CHECK(*linked.status == 1);
  CHECK_THAT(linked.output, Catch::Contains("symbolic link"));
  CHECK(slurp(precious) == "keep me\n");
  // A FIFO as the serial file is refused without blocking.
  const std::string fifo = dir / "serial-fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const Run fifo_run = run_keel({"--kernel", "/bin/sh", "--serial", "file=" + fifo}, dir, 10s);
  REQUIRE(fifo_run.status.has_value());
  CHECK(*fifo_run.status == 1);
  CHECK_THAT(fifo_run.output, Catch::Contains("is not a regular file"));
}

TEST_CASE("probe: usage errors exit 2 with the reason, before anything is opened") {
  TempDir dir;
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--kernel=", "--api-socket=" + (dir / "s")},
           {"--api-socket", "path=/tmp/" + std::string(200, 'x')},
           {"--kernel", "/bin/sh", "--memory", "size=1"},
           {"--kernel", "/bin/sh", "--memory", "size=20000T"},
           {"--kernel", "/bin/sh", "--device", "path=/x,dma_low_water=3"},
           {"--kernel", "/bin/sh", "--seccomp", "maybe"}}) {
    INFO(args[0] << " " << args[1]);
    const Run r = run_keel(args, dir, 10s);
    REQUIRE(r.status.has_value());
    CHECK(*r.status == 2);
    CHECK_THAT(r.output, Catch::StartsWith("keel: "));
  }
  CHECK_FALSE(fs::exists(dir / "s"));
}

TEST_CASE("probe: the idle API refuses bad configurations with 400 and goes on serving") {
  TempDir dir;
  IdleKeel keel(dir);
  // A NUL inside a path: never stored to be opened cut short.
  auto [nul, nul_body] = keel.request("PUT", "vm.create", vm_config("/bin/sh\\u0000/etc/passwd"));
  CHECK(nul == 400);
  CHECK_THAT(nul_body, Catch::Contains("NUL"));
  for (const char* size : {"1", "18446744073709551615", "4096"}) {
    INFO(size);
    auto [status, body] = keel.request(
        "PUT", "vm.create", R"({"payload": {"kernel": "/bin/sh"}, "memory": {"size": )" + std::string(size) + "}}");
    CHECK(status == 400);
    CHECK_THAT(body, Catch::Contains("memory.size"));
  }
  // A kernel that does not exist is the request's fault (400 naming it), not "no VM" (404).
  REQUIRE(keel.request("PUT", "vm.create", vm_config(dir / "no-kernel")).first == 204);
  auto [missing, missing_body] = keel.request("PUT", "vm.boot");
  CHECK(missing == 400);
  CHECK_THAT(missing_body, Catch::Contains(dir / "no-kernel"));
  REQUIRE(keel.request("PUT", "vm.delete").first == 204);
  // A FIFO as the kernel answers at once, and the API keeps answering.
  const std::string fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  REQUIRE(keel.request("PUT", "vm.create", vm_config(fifo)).first == 204);
  auto [wedge, wedge_body] = keel.request("PUT", "vm.boot");
  CHECK(wedge == 400);
  CHECK_THAT(wedge_body, Catch::Contains("not a regular file"));
  CHECK(keel.ping_ok());
}

TEST_CASE("probe: HTTP the API does not take is refused and the connection closed") {
  TempDir dir;
  IdleKeel keel(dir);
  UniqueFd fd = try_connect(keel.socket());
  REQUIRE(fd.valid());
  send_all(fd.get(),
           "PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"
           "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n");
  auto [text, closed] = read_until_close(fd.get(), 10s);
  CHECK(closed);
  CHECK(text.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(text.find("HTTP/1.1 200") == std::string::npos);  // the smuggled ping was not served
  CHECK(keel.ping_ok());
}

TEST_CASE("probe: 300 idle clients do not lock a legitimate one out") {
  TempDir dir;
  IdleKeel keel(dir);
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 300; ++i) {
    UniqueFd fd = try_connect(keel.socket());
    if (fd.valid()) {
      idle.push_back(std::move(fd));
    }
  }
  CHECK(idle.size() == 300);
  // While keel still drains its backlog a new connect() can be refused (EAGAIN), as for any
  // server; a legitimate client that tries again must get through, within seconds.
  for (int i = 0; i < 3; ++i) {
    bool served = false;
    for (int attempt = 0; attempt < 100 && !served; ++attempt) {
      served = keel.ping_ok();
      if (!served) {
        std::this_thread::sleep_for(100ms);
      }
    }
    INFO("keel's log: " << keel.process().output());
    CHECK(served);
  }
}

// The Release keel, under its seccomp filters: a sanitizer cannot work without file descriptors
// (UBSan's slow vptr check opens a pipe to probe memory, fails, and reports a false "invalid
// vptr" that aborts), so the sanitizer build cannot be tested out of fds.
TEST_CASE("probe: out of file descriptors, keel backs off, keeps its clients, then serves again") {
  TempDir dir;
  const std::string release = binary("KEEL_RELEASE");
  INFO("KEEL_RELEASE is the Release keel (scripts/build.sh --release builds it): " << release);
  REQUIRE(::access(release.c_str(), X_OK) == 0);
  IdleKeel keel(dir, rlim_t{48}, release);
  UniqueFd held = try_connect(keel.socket());  // a client that got in before the flood
  REQUIRE(held.valid());
  std::vector<UniqueFd> flood;
  for (int i = 0; i < 80; ++i) {
    UniqueFd fd = try_connect(keel.socket());
    if (fd.valid()) {
      flood.push_back(std::move(fd));
    }
  }
  const long before = keel.process().cpu_ticks();
  std::this_thread::sleep_for(2s);
  const long used = keel.process().cpu_ticks() - before;
  CHECK(used < sysconf(_SC_CLK_TCK) / 2);  // a spinning accept loop would use the whole 2 s
  // The client that was in is still served.
  send_all(held.get(), "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(read_until_close(held.get(), 10s).first.rfind("HTTP/1.1 200", 0) == 0);
  flood.clear();
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    served = keel.ping_ok();
    if (!served) {
      std::this_thread::sleep_for(100ms);
    }
  }
  CHECK(served);
  const std::string log = keel.process().output();
  std::size_t warnings = 0;
  for (auto at = log.find("accept failed"); at != std::string::npos; at = log.find("accept failed", at + 1)) {
    ++warnings;
  }
  CHECK(warnings <= 1);
  CHECK_FALSE(keel.process().wait(0ms).has_value());  // still running
}

TEST_CASE("probe: SIGTERM, SIGINT and SIGHUP end an idle keel with 0 and remove its socket") {
  for (int signal : {SIGTERM, SIGINT, SIGHUP}) {
    INFO(signal);
    TempDir dir;
    IdleKeel keel(dir);
    REQUIRE(::kill(keel.process().pid(), signal) == 0);
    const auto status = keel.process().wait(10s);
    REQUIRE(status.has_value());
    CHECK(*status == 0);
    CHECK_FALSE(fs::exists(keel.socket()));
  }
}

TEST_CASE("probe: keel-remote reads a bounded regular file, never a device or a FIFO") {
  TempDir dir;
  IdleKeel keel(dir);
  const std::string fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  for (const std::string& file : {std::string("/dev/zero"), fifo, dir.path}) {
    INFO(file);
    Process remote({binary("KEEL_REMOTE"), "--api-socket", keel.socket(), "create", file},
                   dir / "remote.log");
    const auto status = remote.wait(10s);
    REQUIRE(status.has_value());
    CHECK(*status != 0);
    CHECK_THAT(remote.output(), Catch::Contains("not a regular file"));
  }
  // Standard input is read up to the API's limit, no further.
  const std::string big = dir / "big.json";
  {
    std::ofstream out(big);
    out << std::string(2 << 20, ' ');
  }
  Process remote({"/bin/sh", "-c", binary("KEEL_REMOTE") + " --api-socket " + keel.socket() +
                                       " create - < " + big},
                 dir / "remote.log");
  const auto status = remote.wait(10s);
  REQUIRE(status.has_value());
  CHECK(*status != 0);
  CHECK_THAT(remote.output(), Catch::Contains("larger than the API takes"));
  CHECK(keel.ping_ok());
}

}  // namespace
}  // namespace keel::probe
