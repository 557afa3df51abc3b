// api_load: an HTTP/1.1 load generator for a Unix socket (scripts/bench/api_latency runs it).
//
// --clients N clients run as coroutines on one thread (one Boost.Asio io_context), each issuing
// GET requests for --path one after another: a client sends its next request when it has read
// the whole answer to the previous one. Each client either keeps one keep-alive connection
// (default) or, with --new-connection, opens a connection per request and sends
// "Connection: close" with it, as curl and ch-remote do.
//
// Latency is taken with steady_clock per request: keep-alive from the start of the write to the
// last byte of the body read (the end of the header found, then Content-Length bytes of body);
// per connection it also counts the connect(), from before connect() to the last byte. Requests
// started during the first --warmup seconds are left out; the measurement then lasts --duration
// seconds (requests started before it ends are finished and counted). An answer is an error
// unless its status is 200 and its body is --expect-length bytes long (when given); after an
// error the client reconnects.
//
// Output, one line on stdout:
//   API-LOAD clients=N mode=keepalive|connection count=.. errors=.. seconds=.. rps=..
//            p50_us=.. p99_us=.. max_us=.. mean_us=.. answer_bytes=.. server_cpu_s=..
//            client_cpu_s=..
// (answer_bytes: header and body of one answer, as last read; server_cpu_s: user + system CPU
// time of process --server-pid, all its threads, from /proc/PID/stat in clock ticks, and
// client_cpu_s this process's own, both over the --duration seconds measured). With --once it sends
// one request (GET, or PUT with --put FILE as JSON body) and writes the answer's body to stdout,
// its status line and header to stderr; exit status 0 only for a 2xx answer.
//
// usage: api_load --socket PATH --path TARGET [--clients N] [--duration S] [--warmup S]
//                 [--new-connection] [--expect-length BYTES] [--server-pid PID]
//        api_load --socket PATH --path TARGET --once [--put FILE]

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <utility>  // before Boost.Asio: 1.74's awaitable.hpp uses std::exchange without it
#include <vector>

#include <unistd.h>

#include <boost/asio.hpp>

namespace asio = boost::asio;
using Protocol = asio::local::stream_protocol;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

namespace {

struct Options {
  std::string socket, path, put_file;
  int clients = 1;
  double duration = 5, warmup = 1;
  bool new_connection = false, once = false;
  long expect_length = -1;
  int server_pid = 0;
};

struct Answer {
  int status = 0;
  std::string header, body;
};

struct Shared {
  Options opt;
  Clock::time_point measure_start, measure_end;
  std::vector<std::int64_t> latencies_ns;  // one thread: no lock needed
  long errors = 0;
  std::size_t answer_bytes = 0;
  double server_cpu = 0, client_cpu = 0;  // seconds used during the measurement
};

// CPU seconds (user + system, all threads) used so far by process `pid`, or by this one for 0.
double cpu_seconds(int pid) {
  if (pid == 0) {
    timespec t{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
  }
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.rfind(')') == std::string::npos) return 0;
  std::istringstream fields(text.substr(text.rfind(')') + 2));  // from field 3, the state
  std::string skip;
  for (int i = 3; i < 14; ++i) fields >> skip;
  double utime = 0, stime = 0;
  fields >> utime >> stime;
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Takes both processes' CPU time at the start and at the end of the measurement.
asio::awaitable<void> sample_cpu(Shared& shared) {
  asio::steady_timer timer(co_await asio::this_coro::executor, shared.measure_start);
  co_await timer.async_wait(asio::use_awaitable);
  shared.server_cpu = -cpu_seconds(shared.opt.server_pid);
  shared.client_cpu = -cpu_seconds(0);
  timer.expires_at(shared.measure_end);
  co_await timer.async_wait(asio::use_awaitable);
  shared.server_cpu += cpu_seconds(shared.opt.server_pid);
  shared.client_cpu += cpu_seconds(0);
}

// Reads one answer: the header up to the blank line, then Content-Length bytes of body.
asio::awaitable<Answer> read_answer(Protocol::socket& socket, std::string& buf, error_code& ec) {
  Answer answer;
  auto redirect = asio::redirect_error(asio::use_awaitable, ec);
  const std::size_t header_end =
      co_await asio::async_read_until(socket, asio::dynamic_buffer(buf), "\r\n\r\n", redirect);
  if (ec) co_return answer;
  answer.header = buf.substr(0, header_end);
  buf.erase(0, header_end);
  std::sscanf(answer.header.c_str(), "HTTP/%*d.%*d %d", &answer.status);
  std::string lower = answer.header;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::size_t length = 0;
  if (const auto at = lower.find("\r\ncontent-length:"); at != std::string::npos) {
    length = std::strtoul(lower.c_str() + at + 17, nullptr, 10);
  }
  if (buf.size() < length) {
    co_await asio::async_read(socket, asio::dynamic_buffer(buf),
                              asio::transfer_exactly(length - buf.size()), redirect);
    if (ec) co_return answer;
  }
  answer.body = buf.substr(0, length);
  buf.erase(0, length);
  co_return answer;
}

std::string make_request(const Options& opt, const std::string& method, const std::string& body) {
  std::string request = method + " " + opt.path + " HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n";
  if (opt.new_connection || opt.once) request += "Connection: close\r\n";
  if (!body.empty() || method == "PUT") {
    request +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return request + "\r\n" + body;
}

asio::awaitable<void> client(Shared& shared) {
  const Options& opt = shared.opt;
  auto executor = co_await asio::this_coro::executor;
  const std::string request = make_request(opt, "GET", "");
  const Protocol::endpoint endpoint(opt.socket);
  Protocol::socket socket(executor);
  std::string buf;
  error_code ec;
  while (Clock::now() < shared.measure_end) {
    const auto start = Clock::now();
    if (!socket.is_open()) {
      buf.clear();
      co_await socket.async_connect(endpoint, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {  // the server is gone or refuses: count it, and do not spin
        ++shared.errors;
        socket = Protocol::socket(executor);
        asio::steady_timer pause(executor, std::chrono::milliseconds(10));
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
    }
    const auto write_start = Clock::now();
    co_await asio::async_write(socket, asio::buffer(request),
                               asio::redirect_error(asio::use_awaitable, ec));
    Answer answer;
    if (!ec) answer = co_await read_answer(socket, buf, ec);
    const auto end = Clock::now();
    const bool ok =
        !ec && answer.status == 200 &&
        (opt.expect_length < 0 || static_cast<long>(answer.body.size()) == opt.expect_length);
    if (start >= shared.measure_start) {
      if (ok) {
        shared.latencies_ns.push_back((end - (opt.new_connection ? start : write_start)).count());
        shared.answer_bytes = answer.header.size() + answer.body.size();
      } else {
        ++shared.errors;
      }
    }
    if (!ok || opt.new_connection) {
      error_code ignored;
      socket.close(ignored);
      socket = Protocol::socket(executor);
    }
  }
}

int run_once(const Options& opt) {
  std::string body;
  if (!opt.put_file.empty()) {
    std::ifstream in(opt.put_file, std::ios::binary);
    if (!in) {
      std::cerr << "api_load: cannot read " << opt.put_file << "\n";
      return 1;
    }
    std::ostringstream text;
    text << in.rdbuf();
    body = text.str();
  }
  asio::io_context io;
  int status = 0;
  Answer answer;
  error_code ec;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        Protocol::socket socket(io);
        co_await socket.async_connect(Protocol::endpoint(opt.socket),
                                      asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
        const std::string request = make_request(opt, opt.put_file.empty() ? "GET" : "PUT", body);
        co_await asio::async_write(socket, asio::buffer(request),
                                   asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
        std::string buf;
        answer = co_await read_answer(socket, buf, ec);
        status = answer.status;
      },
      asio::detached);
  io.run();
  if (ec) {
    std::cerr << "api_load: " << opt.socket << ": " << ec.message() << "\n";
    return 1;
  }
  std::cerr << answer.header;
  std::cout << answer.body;
  return status >= 200 && status < 300 ? 0 : 1;
}

int run_load(const Options& opt) {
  Shared shared{opt, {}, {}, {}, 0, 0, 0, 0};
  const auto now = Clock::now();
  const auto seconds = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  shared.measure_start = now + seconds(opt.warmup);
  shared.measure_end = shared.measure_start + seconds(opt.duration);
  asio::io_context io(1);
  for (int i = 0; i < opt.clients; ++i) {
    asio::co_spawn(io, client(shared), asio::detached);
  }
  if (opt.server_pid > 0) asio::co_spawn(io, sample_cpu(shared), asio::detached);
  io.run();

  auto& lat = shared.latencies_ns;
  std::sort(lat.begin(), lat.end());
  // Nearest rank: the smallest sample with at least q of the samples at or below it.
  const auto quantile_us = [&lat](double q) {
    if (lat.empty()) return 0.0;
    const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(lat.size())));
    return static_cast<double>(lat[std::clamp<std::size_t>(rank, 1, lat.size()) - 1]) / 1e3;
  };
  double sum = 0;
  for (const auto v : lat) sum += static_cast<double>(v);
  std::printf(
      "API-LOAD clients=%d mode=%s count=%zu errors=%ld seconds=%.3f rps=%.1f p50_us=%.1f "
      "p99_us=%.1f max_us=%.1f mean_us=%.1f answer_bytes=%zu "
      "server_cpu_s=%.3f client_cpu_s=%.3f\n",
      opt.clients, opt.new_connection ? "connection" : "keepalive", lat.size(), shared.errors,
      opt.duration, static_cast<double>(lat.size()) / opt.duration, quantile_us(0.50),
      quantile_us(0.99), lat.empty() ? 0.0 : static_cast<double>(lat.back()) / 1e3,
      lat.empty() ? 0.0 : sum / static_cast<double>(lat.size()) / 1e3, shared.answer_bytes,
      shared.server_cpu, shared.client_cpu);
  return lat.empty() ? 1 : 0;
}

[[noreturn]] void usage(const char* why) {
  std::cerr
      << "api_load: " << why << "\n"
      << "usage: api_load --socket PATH --path TARGET [--clients N] [--duration S] [--warmup S]\n"
      << "                [--new-connection] [--expect-length BYTES] [--server-pid PID]\n"
      << "       api_load --socket PATH --path TARGET --once [--put FILE]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + arg).c_str());
      return argv[++i];
    };
    if (arg == "--socket") {
      opt.socket = value();
    } else if (arg == "--path") {
      opt.path = value();
    } else if (arg == "--clients") {
      opt.clients = std::atoi(value().c_str());
    } else if (arg == "--duration") {
      opt.duration = std::atof(value().c_str());
    } else if (arg == "--warmup") {
      opt.warmup = std::atof(value().c_str());
    } else if (arg == "--new-connection") {
      opt.new_connection = true;
    } else if (arg == "--expect-length") {
      opt.expect_length = std::atol(value().c_str());
    } else if (arg == "--server-pid") {
      opt.server_pid = std::atoi(value().c_str());
    } else if (arg == "--once") {
      opt.once = true;
    } else if (arg == "--put") {
      opt.put_file = value();
    } else {
      usage(("unknown argument " + arg).c_str());
    }
  }
  if (opt.socket.empty() || opt.path.empty()) usage("--socket and --path are required");
  if (opt.clients < 1 || opt.clients > 10000) usage("--clients wants 1..10000");
  if (!(opt.duration > 0) || opt.warmup < 0) usage("--duration wants seconds > 0, --warmup >= 0");
  return opt.once ? run_once(opt) : run_load(opt);
}
