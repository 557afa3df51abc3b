// The HTTP server over a real Unix socket in a temporary directory, with a fake VMM.
#include "api/api_server.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/api_client.hpp"
#include "api/fd_receiving_stream.hpp"
#include "base/unique_fd.hpp"
#include "fake_vmm_control.hpp"
#include "tests/support/raw_socket.hpp"

namespace keel::api {
namespace {

using namespace std::chrono_literals;
using test::FakeVmmControl;

// A private directory for one test's socket, removed afterwards.
struct TempDir {
  TempDir() {
    char name[] = "/tmp/keel-api-test-XXXXXX";
    REQUIRE(::mkdtemp(name) != nullptr);
    path = name;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string socket() const { return path + "/api.sock"; }
  std::string path;
};

ApiServerOptions fast_options() {
  ApiServerOptions options;
  options.timeout = 200ms;
  return options;
}

using testing::read_until_close;
using testing::send_all;

UniqueFd connect_raw(const std::string& path) {
  UniqueFd fd = testing::try_connect(path);
  REQUIRE(fd.valid());
  return fd;
}

std::unique_ptr<ApiServer> start(const std::string& path, FakeVmmControl& vmm,
                                 ApiServerOptions options = fast_options()) {
  auto server = ApiServer::start(path, vmm, std::move(options));
  INFO((server.ok() ? "" : server.error().message()));
  REQUIRE(server.ok());
  return std::move(server).value();
}

TEST_CASE("server: ping over the socket, which is mode 0600") {
  TempDir dir;
  FakeVmmControl vmm;
  auto server = start(dir.socket(), vmm);
  struct stat st {};
  REQUIRE(::lstat(dir.socket().c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);

  auto reply = api_request(dir.socket(), "GET", "/api/v1/vmm.ping", "", 2s);
  REQUIRE(reply.ok());
  CHECK(reply->status == 200);
  CHECK(nlohmann::json::parse(reply->body)["pid"] == 4242);
  CHECK(vmm.calls() == std::vector<std::string>{"ping"});
}

TEST_CASE("server: answers carry status, JSON and the Allow header over the wire") {
  TempDir dir;
  FakeVmmControl vmm;
  auto server = start(dir.socket(), vmm);
  UniqueFd fd = connect_raw(dir.socket());
  send_all(fd.get(), "GET /api/v1/vm.boot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto [text, closed] = read_until_close(fd.get(), 2s);
  CHECK(closed);
  CHECK(text.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0) == 0);
  CHECK(text.find("\r\nAllow: PUT\r\n") != std::string::npos);
  CHECK(text.find("\r\nContent-Type: application/json\r\n") != std::string::npos);
  CHECK(text.find(R"({"kind":"method_not_allowed","message":"vm.boot takes PUT, not GET"})") !=
        std::string::npos);

  UniqueFd boot = connect_raw(dir.socket());
  send_all(boot.get(), "PUT /api/v1/vm.boot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto [boot_text, boot_closed] = read_until_close(boot.get(), 2s);
  CHECK(boot_text.rfind("HTTP/1.1 204 No Content\r\n", 0) == 0);
  CHECK(boot_text.find("Content-Length") == std::string::npos);
  CHECK(boot_text.find("\r\nConnection: close\r\n\r\n") != std::string::npos);

  // HTTP/1.0 is answered in 1.0: closed unless the client asked to keep it, and then said so.
  UniqueFd old = connect_raw(dir.socket());
  send_all(old.get(), "GET /api/v1/vmm.ping HTTP/1.0\r\n\r\n");
  auto [old_text, old_closed] = read_until_close(old.get(), 2s);
  CHECK(old_closed);
  CHECK(old_text.rfind("HTTP/1.0 200 OK\r\nServer: keel/", 0) == 0);
  CHECK(old_text.find("Connection:") == std::string::npos);
  const auto body = old_text.substr(old_text.find("\r\n\r\n") + 4);
  CHECK(old_text.find("\r\nContent-Length: " + std::to_string(body.size()) + "\r\n") !=
        std::string::npos);
  CHECK(nlohmann::json::parse(body)["pid"] == 4242);
  UniqueFd kept = connect_raw(dir.socket());
  send_all(kept.get(), "GET /api/v1/vmm.ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                       "GET /api/v1/vmm.ping HTTP/1.0\r\n\r\n");
  auto [kept_text, kept_closed] = read_until_close(kept.get(), 2s);
  CHECK(kept_closed);  // after the second answer
  CHECK(kept_text.find("\r\nConnection: keep-alive\r\n") != std::string::npos);
  CHECK(kept_text.find("HTTP/1.0 200 OK", 1) != std::string::npos);
}

TEST_CASE("server: keep-alive serves several requests on one connection") {
  TempDir dir;
  FakeVmmControl vmm;
  auto server = start(dir.socket(), vmm);
  UniqueFd fd = connect_raw(dir.socket());
  send_all(fd.get(),
           "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n"
           "PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /api/v1/vm.counters HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto [text, closed] = read_until_close(fd.get(), 2s);
  CHECK(closed);
  CHECK(text.find("HTTP/1.1 200 OK") == 0);
  CHECK(text.find("HTTP/1.1 204 No Content") != std::string::npos);
  CHECK(text.rfind("HTTP/1.1 200 OK") > text.find("HTTP/1.1 204"));
  CHECK(vmm.calls() == std::vector<std::string>{"ping", "pause_vm", "vm_counters"});
}

TEST_CASE("server: a body over 1 MiB is answered 413") {
  TempDir dir;
  FakeVmmControl vmm;
  auto server = start(dir.socket(), vmm);
  SECTION("announced by Content-Length") {
    UniqueFd fd = connect_raw(dir.socket());
    send_all(fd.get(),
             "PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n");
    auto [text, closed] = read_until_close(fd.get(), 2s);
    CHECK(closed);
    CHECK(text.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0) == 0);
    CHECK(text.find(R"("kind":"payload_too_large")") != std::string::npos);
  }
  SECTION("sent in full, one byte over") {
    UniqueFd fd = connect_raw(dir.socket());
    const std::string body(kMaxBodyBytes + 1, ' ');
    std::thread sender([&] {
      send_all(fd.get(), "PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n");
      send_all(fd.get(), body);
    });
    auto [text, closed] = read_until_close(fd.get(), 5s);
    sender.join();
    CHECK(text.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0) == 0);
  }
  SECTION("chunked, over the limit") {
    UniqueFd fd = connect_raw(dir.socket());
    std::thread sender([&] {
      send_all(fd.get(),
               "PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
      const std::string chunk(std::size_t{64} * 1024, 'x');
      for (int i = 0; i < 20; ++i) {
        send_all(fd.get(), "10000\r\n" + chunk + "\r\n");
      }
      send_all(fd.get(), "0\r\n\r\n");
    });
    auto [text, closed] = read_until_close(fd.get(), 5s);
    sender.join();
    CHECK(text.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0) == 0);
  }
  CHECK(vmm.calls().empty());
  // The server still serves others.
  CHECK(api_request(dir.socket(), "GET", "/api/v1/vmm.ping", "", 2s)->status == 200);
}

TEST_CASE("server: exactly 1 MiB of body is read (and judged as JSON)") {
  TempDir dir;
  FakeVmmControl vmm;
  auto server = start(dir.socket(), vmm);
  std::string body = R"({"payload": {"kernel": "/k"}})";
  body.resize(kMaxBodyBytes, ' ');
  auto reply = api_request(dir.socket(), "PUT", "/api/v1/vm.create", body, 5s);
  REQUIRE(reply.ok());
  CHECK(reply->status == 204);
}

TEST_CASE("server: slow, idle and half-closed clients are dropped after the timeout") {
  TempDir dir;
  FakeVmmControl vmm;
  auto server = start(dir.socket(), vmm);
  SECTION("a request that never completes") {
    UniqueFd fd = connect_raw(dir.socket());
    send_all(fd.get(), "PUT /api/v1/vm.boot HTTP/1.1\r\nHost: x\r\n");
    const auto t0 = std::chrono::steady_clock::now();
    auto [text, closed] = read_until_close(fd.get(), 30s);
    const auto waited = std::chrono::steady_clock::now() - t0;
    CHECK(closed);  // dropped, not left hanging: read_until_close waited at most 30 s
    CHECK(text.empty());
    CHECK(waited >= 150ms);  // not before the 200 ms deadline (a timer never fires early)
  }
  SECTION("a client that trickles bytes cannot extend the deadline") {
    UniqueFd fd = connect_raw(dir.socket());
    std::atomic<bool> done{false};
    std::thread trickle([&] {
      const std::string request =
          "PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
      for (char c : request + std::string(100, ' ')) {
        if (done) {
          return;
        }
        send_all(fd.get(), std::string_view(&c, 1));
        std::this_thread::sleep_for(20ms);
      }
    });
    auto [text, closed] = read_until_close(fd.get(), 3s);
    done = true;
    trickle.join();
    CHECK(closed);
    CHECK(text.empty());
  }
  SECTION("an idle connection") {
    UniqueFd fd = connect_raw(dir.socket());
    auto [text, closed] = read_until_close(fd.get(), 3s);
    CHECK(closed);
  }
  SECTION("a half-closed client is closed at once, not at the deadline") {
    TempDir slow_dir;
    ApiServerOptions options = fast_options();
    options.timeout = 60s;
    auto slow = start(slow_dir.socket(), vmm, options);
    UniqueFd fd = connect_raw(slow_dir.socket());
    send_all(fd.get(), "PUT /api/v1/vm.boot HTTP/1.1\r\n");
    ::shutdown(fd.get(), SHUT_WR);
    auto [text, closed] = read_until_close(fd.get(), 30s);
    CHECK(closed);  // within 30 s, so not by the 60 s deadline
  }
  SECTION("an idle keep-alive connection after an answer") {
    UniqueFd fd = connect_raw(dir.socket());
    send_all(fd.get(), "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n");
    auto [text, closed] = read_until_close(fd.get(), 3s);
    CHECK(text.rfind("HTTP/1.1 200 OK", 0) == 0);
    CHECK(closed);
  }
  CHECK(vmm.calls().size() <= 1);
  CHECK(api_request(dir.socket(), "GET", "/api/v1/vmm.ping", "", 2s)->status == 200);
}

TEST_CASE("server: 64 concurrent clients are all answered") {
  TempDir dir;
  FakeVmmControl vmm;
  ApiServerOptions options = fast_options();
  options.timeout = 5s;
  auto server = start(dir.socket(), vmm, options);
  constexpr int kClients = 64;
  // All connected and all mid-request before any request completes: the server must serve
  // them side by side, not one connection after another.
  std::vector<UniqueFd> fds;
  fds.reserve(kClients);
  for (int i = 0; i < kClients; ++i) {
    fds.push_back(connect_raw(dir.socket()));
    send_all(fds.back().get(), "GET /api/v1/vm.info HTTP/1.1\r\nHost: x\r\n");
  }
  std::vector<std::thread> threads;
  threads.reserve(2 * kClients);
  std::atomic<int> answered{0};
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      send_all(fds[static_cast<std::size_t>(i)].get(), "Connection: close\r\n\r\n");
      auto [text, closed] = read_until_close(fds[static_cast<std::size_t>(i)].get(), 5s);
      if (text.rfind("HTTP/1.1 200 OK", 0) == 0 && closed) {
        ++answered;
      }
    });
  }
  // And 64 more through the client, concurrently.
  std::atomic<int> pinged{0};
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&] {
      auto reply = api_request(dir.socket(), "GET", "/api/v1/vmm.ping", "", 5s);
      if (reply.ok() && reply->status == 200) {
        ++pinged;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK(answered == kClients);
  CHECK(pinged == kClients);
}

// Answers one ping on `fd` (Connection: close) and returns the status line's start.
std::string ping_over(int fd) {
  send_all(fd, "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  return read_until_close(fd, 5s).first.substr(0, 15);
}

TEST_CASE("server: at the connection limit the client idle longest makes room for a new one") {
  TempDir dir;
  FakeVmmControl vmm;
  ApiServerOptions options = fast_options();
  options.timeout = 10s;  // nobody is dropped for slowness here
  options.max_connections = 2;
  auto server = start(dir.socket(), vmm, options);
  UniqueFd a = connect_raw(dir.socket());
  send_all(a.get(), "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n");  // held open, oldest
  REQUIRE(ping_over(connect_raw(dir.socket()).get()) == "HTTP/1.1 200 OK");  // a is accepted
  UniqueFd b = connect_raw(dir.socket());
  send_all(b.get(), "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n");
  // A third client is served: the server drops `a`, which has waited longest, not the newcomer.
  UniqueFd c = connect_raw(dir.socket());
  CHECK(ping_over(c.get()) == "HTTP/1.1 200 OK");
  auto [dropped, closed] = read_until_close(a.get(), 5s);
  CHECK(closed);
  CHECK(dropped.empty());
  send_all(b.get(), "\r\n");
  CHECK(read_until_close(b.get(), 5s).first.rfind("HTTP/1.1 200 OK", 0) == 0);
}

TEST_CASE("server: 300 idle clients do not lock a legitimate one out") {
  TempDir dir;
  FakeVmmControl vmm;
  ApiServerOptions options = fast_options();
  options.timeout = 30s;
  auto server = start(dir.socket(), vmm, options);
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 300; ++i) {
    idle.push_back(connect_raw(dir.socket()));
  }
  for (int i = 0; i < 3; ++i) {
    UniqueFd fd = connect_raw(dir.socket());
    CHECK(ping_over(fd.get()) == "HTTP/1.1 200 OK");
  }
}

// In a child process (its fd limit and stderr are its own): the server runs out of fds for new
// clients, and must neither spin nor flood its log, and must serve again once fds are free.
// Exit status: 0 passed, else the number of the check that failed.
int exhaust_fds_in_child(const std::string& socket) {
  char log_name[] = "/tmp/keel-api-emfile-XXXXXX";
  const int log_fd = ::mkstemp(log_name);
  if (log_fd < 0 || ::dup2(log_fd, STDERR_FILENO) < 0) {
    return 10;
  }
  ::unlink(log_name);
  FakeVmmControl vmm;
  // Idle clients stay for the whole test: a session timing out would free an fd, end the
  // streak of failed accepts and rightly start a second one (and a second warning).
  ApiServerOptions options;
  options.timeout = 30s;
  auto server = ApiServer::start(socket, vmm, options);
  if (!server.ok()) {
    return 11;
  }
  // Leave room for a few fds only, then take them with clients the server accepts.
  int highest = 0;
  for (int fd = 0; fd < 1024; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0) {
      highest = fd;
    }
  }
  const rlimit low{static_cast<rlim_t>(highest + 8), static_cast<rlim_t>(highest + 8)};
  if (::setrlimit(RLIMIT_NOFILE, &low) != 0) {
    return 12;
  }
  std::vector<int> clients;
  for (int i = 0; i < 6; ++i) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket.c_str());
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      break;  // out of fds on this side: the server has been out for a while
    }
    clients.push_back(fd);
  }
  rusage before{};
  ::getrusage(RUSAGE_SELF, &before);
  std::this_thread::sleep_for(1500ms);
  rusage after{};
  ::getrusage(RUSAGE_SELF, &after);
  const auto cpu_ms = [](const rusage& r) {
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000 + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1000;
  };
  if (cpu_ms(after) - cpu_ms(before) > 500) {
    return 1;  // spinning: a busy loop takes the whole 1.5 s
  }
  for (int fd : clients) {
    ::close(fd);
  }
  const rlimit normal{1024, 1024};
  (void)::setrlimit(RLIMIT_NOFILE, &normal);
  std::this_thread::sleep_for(1500ms);  // past the longest back-off
  auto reply = api_request(socket, "GET", "/api/v1/vmm.ping", "", 5s);
  if (!reply.ok() || reply->status != 200) {
    return 2;
  }
  (*server)->stop();
  std::string log(4096, '\0');
  const ssize_t n = ::pread(log_fd, log.data(), log.size(), 0);
  log.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  std::size_t warnings = 0;
  for (std::size_t at = log.find("accept failed"); at != std::string::npos;
       at = log.find("accept failed", at + 1)) {
    ++warnings;
  }
  return warnings <= 1 ? 0 : 3;  // one warning per streak, not one per try
}

TEST_CASE("server: out of fds, it backs off and keeps serving instead of spinning") {
  TempDir dir;
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::_exit(exhaust_fds_in_child(dir.socket()));
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("server: vm.add-net takes a TAP fd passed with the request (SCM_RIGHTS)") {
  TempDir dir;
  FakeVmmControl vmm;
  auto server = start(dir.socket(), vmm);
  const std::string file = dir.path + "/stand-in";  // any open file shows the fd arrives
  UniqueFd mine(::open(file.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600));
  REQUIRE(mine.valid());
  struct stat want {};
  REQUIRE(::fstat(mine.get(), &want) == 0);

  auto reply = api_request(dir.socket(), "PUT", "/api/v1/vm.add-net", R"({"fds": [3], "id": "n"})",
                           2s, {mine.get()});
  REQUIRE(reply.ok());
  INFO(reply->body);
  CHECK(reply->status == 204);  // a cold add
  REQUIRE(vmm.added_tap.valid());
  struct stat got {};
  REQUIRE(::fstat(vmm.added_tap.get(), &got) == 0);
  CHECK(got.st_ino == want.st_ino);
  CHECK(got.st_dev == want.st_dev);
  CHECK(vmm.added_tap.get() != mine.get());  // keel's own copy
  CHECK((::fcntl(vmm.added_tap.get(), F_GETFD) & FD_CLOEXEC) != 0);

  // Without the descriptor the body names: 400, nothing added.
  vmm.added_net.reset();
  auto missing = api_request(dir.socket(), "PUT", "/api/v1/vm.add-net", R"({"fds": [3]})", 2s);
  REQUIRE(missing.ok());
  CHECK(missing->status == 400);
  CHECK(missing->body.find("none came with the request") != std::string::npos);
  CHECK_FALSE(vmm.added_net);
  // Two for one queue pair, or any for another endpoint: 400.
  auto two = api_request(dir.socket(), "PUT", "/api/v1/vm.add-net", R"({})", 2s,
                         {mine.get(), mine.get()});
  REQUIRE(two.ok());
  CHECK(two->status == 400);
  CHECK(two->body.find("takes one TAP") != std::string::npos);
  auto boot = api_request(dir.socket(), "PUT", "/api/v1/vm.boot", "", 2s, {mine.get()});
  REQUIRE(boot.ok());
  CHECK(boot->status == 400);
  CHECK(boot->body.find("which takes none") != std::string::npos);
  // Descriptors with pipelined requests: whose they are cannot be told; refused.
  {
    UniqueFd raw = connect_raw(dir.socket());
    std::string two_requests =
        "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n"
        "PUT /api/v1/vm.add-net HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    iovec iov{two_requests.data(), two_requests.size()};
    char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&message);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    const int fd = mine.get();
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    REQUIRE(::sendmsg(raw.get(), &message, MSG_NOSIGNAL) == static_cast<ssize_t>(two_requests.size()));
    const std::string answer = read_until_close(raw.get(), 2s).first;
    CHECK(answer.find("HTTP/1.1 400") == 0);
    CHECK(answer.find("pipelined") != std::string::npos);
  }
  // More than the server keeps: refused whole.
  std::vector<int> many(FdReceivingStream::kMaxFds + 1, mine.get());
  auto flood = api_request(dir.socket(), "PUT", "/api/v1/vm.add-net", R"({})", 2s, many);
  REQUIRE(flood.ok());
  CHECK(flood->status == 400);
  CHECK(flood->body.find("more than 16 file descriptors") != std::string::npos);
}

TEST_CASE("server: a Transfer-Encoding other than chunked is refused and the connection closed") {
  TempDir dir;
  FakeVmmControl vmm;
  auto server = start(dir.socket(), vmm);
  for (const char* coding : {"gzip", "gzip, chunked, gzip", "identity"}) {
    INFO(coding);
    UniqueFd fd = connect_raw(dir.socket());
    // Were the body taken as absent, its bytes would be read as a second request (smuggled).
    const std::string smuggled = "PUT /api/v1/vm.remove-device HTTP/1.1\r\nHost: x\r\n"
                                 "Content-Length: 14\r\n\r\n{\"id\": \"nic0\"}";
    send_all(fd.get(), "PUT /api/v1/vm.boot HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " +
                           std::string(coding) + "\r\n\r\n" + smuggled);
    auto [text, closed] = read_until_close(fd.get(), 5s);
    CHECK(closed);
    CHECK(text.rfind("HTTP/1.1 400 Bad Request", 0) == 0);
    CHECK(text.find("Transfer-Encoding") != std::string::npos);
    CHECK(text.find("HTTP/1.1", 10) == std::string::npos);  // one answer only
  }
  UniqueFd both = connect_raw(dir.socket());
  send_all(both.get(), "PUT /api/v1/vm.boot HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       "Content-Length: 5\r\n\r\n0\r\n\r\n");
  CHECK(read_until_close(both.get(), 5s).first.rfind("HTTP/1.1 400 Bad Request", 0) == 0);
  CHECK(vmm.calls().empty());
}

TEST_CASE("server: Expect: 100-continue gets its interim answer") {
  TempDir dir;
  FakeVmmControl vmm;
  auto server = start(dir.socket(), vmm);
  UniqueFd fd = connect_raw(dir.socket());
  const std::string body = R"({"id": "nic0"})";
  send_all(fd.get(),
           "PUT /api/v1/vm.remove-device HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           "Expect: 100-continue\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n");
  char buf[64] = {};
  pollfd p{fd.get(), POLLIN, 0};
  REQUIRE(::poll(&p, 1, 2000) == 1);
  const ssize_t n = ::recv(fd.get(), buf, sizeof(buf) - 1, 0);
  CHECK(std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0))) ==
        "HTTP/1.1 100 Continue\r\n\r\n");
  send_all(fd.get(), body);
  auto [text, closed] = read_until_close(fd.get(), 2s);
  CHECK(text.rfind("HTTP/1.1 204 No Content", 0) == 0);
  CHECK(vmm.removed == "nic0");
}

TEST_CASE("server: an HTTP/1.0 client's Expect: 100-continue is ignored") {
  TempDir dir;
  FakeVmmControl vmm;
  auto server = start(dir.socket(), vmm);
  UniqueFd fd = connect_raw(dir.socket());
  const std::string body = R"({"id": "nic0"})";
  // RFC 9110, 10.1.1: a 1.0 client does not know 1xx answers; its body follows at once.
  send_all(fd.get(), "PUT /api/v1/vm.remove-device HTTP/1.0\r\nExpect: 100-continue\r\n"
                     "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  auto [text, closed] = read_until_close(fd.get(), 2s);
  CHECK(closed);
  CHECK(text.rfind("HTTP/1.0 204 No Content\r\n", 0) == 0);
  CHECK(text.find("100 Continue") == std::string::npos);
  CHECK(vmm.removed == "nic0");
}

TEST_CASE("server: HEAD is answered as GET without the body") {
  TempDir dir;
  FakeVmmControl vmm;
  auto server = start(dir.socket(), vmm);
  UniqueFd fd = connect_raw(dir.socket());
  // Kept alive, then a GET on the same connection: it must not read a body the HEAD lacked.
  send_all(fd.get(), "HEAD /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto [text, closed] = read_until_close(fd.get(), 2s);
  CHECK(closed);
  REQUIRE(text.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  const auto get = text.find("HTTP/1.1 200 OK\r\n", 1);
  REQUIRE(get != std::string::npos);
  const std::string head = text.substr(0, get);
  const std::string body = text.substr(text.find("\r\n\r\n", get) + 4);
  CHECK(head.size() == head.find("\r\n\r\n") + 4);  // nothing after the headers
  CHECK(head.find("\r\nContent-Length: " + std::to_string(body.size()) + "\r\n") !=
        std::string::npos);
  CHECK(nlohmann::json::parse(body)["pid"] == 4242);
  CHECK(vmm.calls() == std::vector<std::string>{"ping", "ping"});

  // HEAD on an endpoint that takes only PUT: 405 with Allow, and no body.
  UniqueFd boot = connect_raw(dir.socket());
  send_all(boot.get(), "HEAD /api/v1/vm.boot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto [boot_text, boot_closed] = read_until_close(boot.get(), 2s);
  CHECK(boot_text.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0) == 0);
  CHECK(boot_text.find("\r\nAllow: PUT\r\n") != std::string::npos);
  CHECK(boot_text.size() == boot_text.find("\r\n\r\n") + 4);
}

TEST_CASE("server: malformed HTTP is answered 400 and closed") {
  TempDir dir;
  FakeVmmControl vmm;
  auto server = start(dir.socket(), vmm);
  UniqueFd fd = connect_raw(dir.socket());
  send_all(fd.get(), "THIS IS NOT HTTP\r\n\r\n");
  auto [text, closed] = read_until_close(fd.get(), 2s);
  CHECK(closed);
  CHECK(text.rfind("HTTP/1.1 400 Bad Request", 0) == 0);
  CHECK(text.find("not valid HTTP/1.1") != std::string::npos);
}

TEST_CASE("server: the socket path: stale sockets replaced, live ones and other files refused") {
  TempDir dir;
  FakeVmmControl vmm;
  SECTION("a stale socket file is replaced") {
    {
      UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", dir.socket().c_str());
      REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    }  // closed: nobody listens, the file stays
    REQUIRE(std::filesystem::exists(dir.socket()));
    auto server = start(dir.socket(), vmm);
    CHECK(api_request(dir.socket(), "GET", "/api/v1/vmm.ping", "", 2s)->status == 200);
  }
  SECTION("a live socket is refused and keeps serving") {
    auto first = start(dir.socket(), vmm);
    auto second = ApiServer::start(dir.socket(), vmm, fast_options());
    REQUIRE_FALSE(second.ok());
    CHECK(second.error().errno_value() == EADDRINUSE);
    CHECK(second.error().message().find("another process serves") != std::string::npos);
    CHECK(api_request(dir.socket(), "GET", "/api/v1/vmm.ping", "", 2s)->status == 200);
  }
  SECTION("a regular file is refused and left alone") {
    std::ofstream(dir.socket()) << "keep me";
    auto server = ApiServer::start(dir.socket(), vmm, fast_options());
    REQUIRE_FALSE(server.ok());
    CHECK(server.error().errno_value() == EEXIST);
    std::ifstream in(dir.socket());
    std::string content;
    std::getline(in, content);
    CHECK(content == "keep me");
  }
  SECTION("a path too long for sun_path is refused") {
    auto server = ApiServer::start(dir.path + "/" + std::string(120, 'x'), vmm, fast_options());
    REQUIRE_FALSE(server.ok());
    CHECK(server.error().errno_value() == EINVAL);
  }
  SECTION("a directory that does not exist") {
    auto server = ApiServer::start(dir.path + "/no/such/dir/api.sock", vmm, fast_options());
    REQUIRE_FALSE(server.ok());
    CHECK(server.error().errno_value() == ENOENT);
  }
}

TEST_CASE("server: stop removes the socket file, is idempotent, and a failed thread start fails") {
  TempDir dir;
  FakeVmmControl vmm;
  {
    auto server = start(dir.socket(), vmm);
    server->stop();
    CHECK_FALSE(std::filesystem::exists(dir.socket()));
    server->stop();
    auto reply = api_request(dir.socket(), "GET", "/api/v1/vmm.ping", "", 1s);
    CHECK_FALSE(reply.ok());
  }
  {
    auto server = start(dir.socket(), vmm);
    UniqueFd idle = connect_raw(dir.socket());
  }  // destroyed with an idle client connected: no hang
  CHECK_FALSE(std::filesystem::exists(dir.socket()));

  ApiServerOptions failing = fast_options();
  failing.on_thread_start = [] { return Status(Error::from_errno(EPERM, "seccomp: load filter")); };
  auto server = ApiServer::start(dir.socket(), vmm, failing);
  REQUIRE_FALSE(server.ok());
  CHECK(server.error().message() == "seccomp: load filter: Operation not permitted");
  CHECK_FALSE(std::filesystem::exists(dir.socket()));

  std::atomic<std::thread::id> api_thread;
  ApiServerOptions hooked = fast_options();
  hooked.on_thread_start = [&] {
    api_thread = std::this_thread::get_id();
    return ok_status();
  };
  auto ok = start(dir.socket(), vmm, hooked);
  CHECK(api_thread.load() != std::this_thread::get_id());
}

TEST_CASE("server: stop lets an answer being sent finish") {
  TempDir dir;
  FakeVmmControl vmm;
  ApiServerOptions options = fast_options();
  options.timeout = 2s;
  auto server = start(dir.socket(), vmm, options);
  UniqueFd fd = connect_raw(dir.socket());
  // A large answer the client does not read yet: the server is still writing when stop() comes.
  vmm.counters_value.devices["dev"] = {};
  for (int i = 0; i < 40000; ++i) {
    vmm.counters_value.devices["dev"]["counter_" + std::to_string(i)] = static_cast<std::uint64_t>(i);
  }
  send_all(fd.get(), "GET /api/v1/vm.counters HTTP/1.1\r\nHost: x\r\n\r\n");
  pollfd answer_started{fd.get(), POLLIN, 0};
  REQUIRE(::poll(&answer_started, 1, 30000) == 1);  // the server is writing
  std::thread stopper([&] { server->stop(); });
  auto [text, closed] = read_until_close(fd.get(), 3s);
  stopper.join();
  CHECK(closed);
  const std::size_t header_end = text.find("\r\n\r\n");
  REQUIRE(header_end != std::string::npos);
  CHECK(nlohmann::json::parse(text.substr(header_end + 4))["dev"].size() == 40000);
}

}  // namespace
}  // namespace keel::api
