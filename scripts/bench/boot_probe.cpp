// boot_probe: starts a VMM, timestamps its console output and measures its memory.
//
// Runs inside the testbed's emulated host (built static by scripts/bench/boot, carried with
// --bin). It forks and execs the VMM with stdout and stderr on one pipe and stdin on another,
// and takes every time from CLOCK_MONOTONIC relative to the moment just before fork():
//
//   console_ms  the first line containing --console TEXT (the kernel's "Linux version" banner:
//               the point at which the guest's serial console registered and its log is flushed)
//   boot_ms     the first moment the console output contains --marker TEXT (the guest init's
//               first action is to print it); bytes are scanned as they arrive, not per line
//   idle_ms     the first line containing --idle TEXT (the guest init sits waiting for input)
//   exit_ms     when the VMM process was reaped after --input was written to its stdin
//
// Memory is sampled --settle-ms after the idle line, from /proc/PID/status and /proc/PID/smaps:
//
//   rss_kib        VmRSS of the VMM process (all its threads share one address space)
//   guest_ram_kib  the Rss of the guest-RAM mappings: writable, anonymous or memfd/shmem
//                  mappings at least --guest-ram-min bytes long (nothing else in a VMM maps a
//                  writable region that large); the pages the guest has touched
//   overhead_kib   rss_kib - guest_ram_kib: what the VMM itself keeps resident (its binary and
//                  libraries, heap, stacks, kvm_run pages, copies of kernel and initramfs, ...)
//   hwm_kib        VmHWM, the peak RSS so far
//   private_overhead_kib  the part of the overhead not backed by a file (heap, stacks, anonymous
//                  and memfd mappings, kvm_run pages): what no other process could share
//   guest_ram_thp_kib, other_thp_kib  AnonHugePages inside and outside guest RAM
//   kvm_*          KVM's counters for the process's VMs from /sys/kernel/debug/kvm/PID-FD/ (exits,
//                  io_exits, mmio_exits, pf_fixed = stage-2 faults, ...), if debugfs is mounted
//
// Output on stdout, one "BOOT-PROBE key=value ..." line, then "BOOT-PROBE-MAP" lines: the
// guest-RAM mappings, then the largest other resident mappings grouped by name. The VMM's console
// goes to --log FILE, each line prefixed with its arrival time in milliseconds.
//
// usage: boot_probe --name NAME --marker TEXT [options] -- VMM [ARGS...]
//   --console TEXT        (default "Linux version")
//   --idle TEXT           (default: none; memory is then sampled --settle-ms after the marker)
//   --uptime-key TEXT     a "TEXT<seconds>" in the console is reported as guest_uptime (default
//                         "KEEL-BENCH uptime=")
//   --input TEXT          written (plus "\n") to the VMM's stdin after sampling (default
//                         "poweroff")
//   --timeout S           bound on reaching the idle line (or the marker), default 120
//   --exit-timeout S      bound on the exit after --input; then SIGKILL (default 20)
//   --settle-ms MS        default 1000
//   --guest-ram-min BYTES default 268435456
//   --log FILE            default /dev/null
// Exit status: 0 when the marker was seen and memory sampled, 1 otherwise, 2 on usage errors.

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

double now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

struct Options {
  std::string name;
  std::string marker;
  std::string console = "Linux version";
  std::string idle;
  std::string uptime_key = "KEEL-BENCH uptime=";
  std::string input = "poweroff";
  double timeout_s = 120;
  double exit_timeout_s = 20;
  double settle_ms = 1000;
  unsigned long long guest_ram_min = 256ULL << 20;
  std::string log = "/dev/null";
  std::vector<std::string> command;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(
      stderr,
      "boot_probe: %s\nusage: boot_probe --name NAME --marker TEXT [options] -- VMM [ARGS...]\n",
      why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  int i = 1;
  auto value = [&](const char* flag) -> std::string {
    if (i + 1 >= argc) {
      usage((std::string(flag) + " wants a value").c_str());
    }
    i += 2;
    return argv[i - 1];
  };
  while (i < argc) {
    const std::string a = argv[i];
    if (a == "--") {
      for (++i; i < argc; ++i) {
        o.command.emplace_back(argv[i]);
      }
      break;
    }
    if (a == "--name")
      o.name = value("--name");
    else if (a == "--marker")
      o.marker = value("--marker");
    else if (a == "--console")
      o.console = value("--console");
    else if (a == "--idle")
      o.idle = value("--idle");
    else if (a == "--uptime-key")
      o.uptime_key = value("--uptime-key");
    else if (a == "--input")
      o.input = value("--input");
    else if (a == "--timeout")
      o.timeout_s = std::atof(value("--timeout").c_str());
    else if (a == "--exit-timeout")
      o.exit_timeout_s = std::atof(value("--exit-timeout").c_str());
    else if (a == "--settle-ms")
      o.settle_ms = std::atof(value("--settle-ms").c_str());
    else if (a == "--guest-ram-min")
      o.guest_ram_min = std::strtoull(value("--guest-ram-min").c_str(), nullptr, 0);
    else if (a == "--log")
      o.log = value("--log");
    else
      usage(("unknown option " + a).c_str());
  }
  if (o.name.empty() || o.marker.empty() || o.command.empty()) {
    usage("--name, --marker and a command are required");
  }
  if (o.timeout_s <= 0 || o.exit_timeout_s <= 0 || o.guest_ram_min == 0) {
    usage("timeouts and --guest-ram-min must be positive");
  }
  return o;
}

struct MemorySample {
  long rss_kib = -1;
  long hwm_kib = -1;
  long rss_anon_kib = -1;
  long rss_file_kib = -1;
  long rss_shmem_kib = -1;
  long threads = -1;
  long guest_ram_kib = 0;
  long guest_ram_size_kib = 0;
  long smaps_rss_kib = 0;
  long cpu_ms = -1;
  long minflt = -1;
  long majflt = -1;
  long guest_ram_thp_kib = 0;
  long private_kib = 0;    // overhead in mappings not backed by a file: heap, stacks, anon, memfd
  long other_thp_kib = 0;  // transparent huge pages outside guest RAM (THP "always" backs stacks
                           // and malloc arenas with 2 MiB pages now and then)
  std::string kvm_stats;   // " kvm_NAME=VALUE ..." from debugfs, when mounted
  std::vector<std::string> guest_maps;               // one description per guest-RAM mapping
  std::vector<std::pair<long, std::string>> others;  // (rss kib, name) grouped by name
};

long status_field(const std::string& status, const char* key) {
  std::istringstream in(status);
  std::string line;
  const std::string k = std::string(key) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(k, 0) == 0) {
      return std::strtol(line.c_str() + k.size(), nullptr, 10);
    }
  }
  return -1;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A smaps header: "start-end perms offset dev inode [name]".
bool parse_header(const std::string& line, unsigned long long& start, unsigned long long& end,
                  std::string& perms, std::string& name) {
  std::istringstream in(line);
  std::string range, offset, dev, inode;
  if (!(in >> range >> perms >> offset >> dev >> inode)) {
    return false;
  }
  const auto dash = range.find('-');
  if (dash == std::string::npos || perms.size() != 4) {
    return false;
  }
  char* e1 = nullptr;
  char* e2 = nullptr;
  start = std::strtoull(range.c_str(), &e1, 16);
  end = std::strtoull(range.c_str() + dash + 1, &e2, 16);
  if (e1 != range.c_str() + dash || *e2 != '\0') {
    return false;
  }
  std::getline(in, name);
  name.erase(0, name.find_first_not_of(' '));
  return true;
}

// KVM's per-VM statistics in debugfs (/sys/kernel/debug/kvm/PID-FD/), summed over the VMs of
// the process: how many exits of each kind the boot took, how many stage-2 page faults.
std::string kvm_stats(pid_t pid) {
  static const char* const kNames[] = {
      "exits",    "io_exits",       "mmio_exits", "halt_exits",     "irq_exits",   "pf_fixed",
      "pf_taken", "insn_emulation", "hypercalls", "irq_injections", "signal_exits"};
  const std::string prefix = std::to_string(pid) + "-";
  std::map<std::string, long long> sums;
  bool found = false;
  if (DIR* d = ::opendir("/sys/kernel/debug/kvm")) {
    while (const dirent* e = ::readdir(d)) {
      if (std::string(e->d_name).rfind(prefix, 0) != 0) continue;
      found = true;
      for (const char* n : kNames) {
        std::ifstream f(std::string("/sys/kernel/debug/kvm/") + e->d_name + "/" + n);
        long long v = 0;
        if (f >> v) sums[n] += v;
      }
    }
    ::closedir(d);
  }
  std::string out;
  if (!found) return " kvm_stats=none";
  for (const char* n : kNames) {
    if (sums.count(n) != 0) out += std::string(" kvm_") + n + "=" + std::to_string(sums[n]);
  }
  return out;
}

MemorySample sample_memory(pid_t pid, unsigned long long guest_ram_min) {
  MemorySample s;
  s.kvm_stats = kvm_stats(pid);
  const std::string proc = "/proc/" + std::to_string(pid);
  const std::string status = read_all(proc + "/status");
  s.rss_kib = status_field(status, "VmRSS");
  s.hwm_kib = status_field(status, "VmHWM");
  s.rss_anon_kib = status_field(status, "RssAnon");
  s.rss_file_kib = status_field(status, "RssFile");
  s.rss_shmem_kib = status_field(status, "RssShmem");
  s.threads = status_field(status, "Threads");

  const std::string stat = read_all(proc + "/stat");
  if (const auto paren = stat.rfind(')'); paren != std::string::npos) {
    std::istringstream in(stat.substr(paren + 2));
    std::vector<std::string> f{std::istream_iterator<std::string>(in), {}};
    // Fields after "(comm)": state is field 3, minflt 10, majflt 12, utime 14, stime 15
    // (1-based in proc(5)); f[0] is field 3.
    if (f.size() > 12) {
      const long ticks = ::sysconf(_SC_CLK_TCK);
      s.minflt = std::atol(f[7].c_str());
      s.majflt = std::atol(f[9].c_str());
      s.cpu_ms = (std::atol(f[11].c_str()) + std::atol(f[12].c_str())) * 1000 / ticks;
    }
  }

  // One entry per mapping: its header fields and the counters we use.
  struct Vma {
    unsigned long long start = 0, end = 0;
    std::string perms, name;
    long rss = 0, thp = 0;
  };
  std::vector<Vma> vmas;
  std::ifstream smaps(proc + "/smaps");
  std::string line;
  while (std::getline(smaps, line)) {
    Vma v;
    if (parse_header(line, v.start, v.end, v.perms, v.name)) {
      vmas.push_back(v);
    } else if (!vmas.empty() && line.rfind("Rss:", 0) == 0) {
      vmas.back().rss = std::strtol(line.c_str() + 4, nullptr, 10);
    } else if (!vmas.empty() && line.rfind("AnonHugePages:", 0) == 0) {
      vmas.back().thp = std::strtol(line.c_str() + 14, nullptr, 10);
    }
  }
  std::map<std::string, long> groups;
  for (const Vma& v : vmas) {
    const std::string& name = v.name;
    s.smaps_rss_kib += v.rss;
    const bool anon_like = name.empty() || name.rfind("/memfd:", 0) == 0 ||
                           name.rfind("[anon:", 0) == 0 || name.rfind("/dev/shm/", 0) == 0 ||
                           name.rfind("/SYSV", 0) == 0 ||
                           name.find("hugepages") != std::string::npos;
    const bool guest_ram =
        anon_like && v.perms[0] == 'r' && v.perms[1] == 'w' && v.end - v.start >= guest_ram_min;
    if (guest_ram) {
      s.guest_ram_kib += v.rss;
      s.guest_ram_thp_kib += v.thp;
      s.guest_ram_size_kib += static_cast<long>((v.end - v.start) >> 10);
      // offset_2m: the start's offset in a 2 MiB page. KVM maps guest memory with 2 MiB pages
      // only where host address and guest-physical address agree modulo 2 MiB.
      char buf[320];
      std::snprintf(
          buf, sizeof buf,
          "%llx-%llx size_kib=%llu rss_kib=%ld anon_huge_kib=%ld offset_2m=0x%llx perms=%s name=%s",
          v.start, v.end, (v.end - v.start) >> 10, v.rss, v.thp, v.start & 0x1fffffULL,
          v.perms.c_str(), name.empty() ? "[anon]" : name.c_str());
      s.guest_maps.emplace_back(buf);
    } else if (v.rss > 0) {
      const bool file_backed = name[0] == '/' && !anon_like;
      if (!file_backed) s.private_kib += v.rss;
      s.other_thp_kib += v.thp;
      std::string key = name.empty() ? "[anon " + v.perms + "]" : name;
      if (v.thp > 0 && !file_backed) {  // a huge page outside guest RAM: say where, on its own
        char where[96];
        std::snprintf(where, sizeof where, " %llu KiB at %llx, THP %ld KiB]", (v.end - v.start) >> 10,
                      v.start, v.thp);
        key = (name.empty() ? "[anon " + v.perms : "[" + name) + where;
      }
      if (key[0] == '/' && key.rfind("/memfd:", 0) != 0) {
        key += " (" + v.perms + ")";
      }
      groups[key] += v.rss;
    }
  }
  for (const auto& [k, v] : groups) {
    s.others.emplace_back(v, k);
  }
  std::sort(s.others.begin(), s.others.end(),
            [](const auto& x, const auto& y) { return x.first > y.first; });
  return s;
}

std::string fmt(double v) {
  if (v < 0) {
    return "none";
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string no_spaces(std::string s) {
  std::replace(s.begin(), s.end(), ' ', '_');
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  ::signal(SIGPIPE, SIG_IGN);

  int out_pipe[2];
  int in_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(in_pipe, O_CLOEXEC) != 0) {
    std::perror("boot_probe: pipe2");
    return 1;
  }
  FILE* log = std::fopen(o.log.c_str(), "w");
  if (log == nullptr) {
    std::fprintf(stderr, "boot_probe: cannot open --log %s: %s\n", o.log.c_str(),
                 std::strerror(errno));
    return 2;
  }
  std::vector<char*> args;
  for (const auto& a : o.command) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);

  const double t0 = now_ms();
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("boot_probe: fork");
    return 1;
  }
  if (pid == 0) {
    ::dup2(in_pipe[0], STDIN_FILENO);
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(out_pipe[1], STDERR_FILENO);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "boot_probe: exec %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  const int out_fd = out_pipe[0];
  const int in_fd = in_pipe[1];

  double console_ms = -1, boot_ms = -1, idle_ms = -1, sample_ms = -1, exit_ms = -1;
  std::string guest_uptime = "none";
  std::string line;     // the current, unfinished line
  std::string pending;  // the last bytes of the output, to find a marker split across reads
  MemorySample mem;
  bool sampled = false;
  bool input_sent = false;
  bool output_open = true;
  int status = 0;
  bool reaped = false;
  std::string end_reason;
  const double deadline = t0 + o.timeout_s * 1000;
  double exit_deadline = 0;

  auto on_line = [&](const std::string& l, double t) {
    std::fprintf(log, "%10.1f %s\n", t - t0, l.c_str());
    if (console_ms < 0 && l.find(o.console) != std::string::npos) {
      console_ms = t - t0;
    }
    if (const auto at = l.find(o.uptime_key); at != std::string::npos && guest_uptime == "none") {
      std::string v = l.substr(at + o.uptime_key.size());
      v = v.substr(0, v.find_first_not_of("0123456789."));
      if (!v.empty()) guest_uptime = v;
    }
    if (!o.idle.empty() && idle_ms < 0 && l.find(o.idle) != std::string::npos) {
      idle_ms = t - t0;
    }
  };

  for (;;) {
    const double now = now_ms();
    const double settle_from = o.idle.empty() ? boot_ms : idle_ms;
    if (!sampled && settle_from >= 0 && now - t0 >= settle_from + o.settle_ms) {
      mem = sample_memory(pid, o.guest_ram_min);
      sample_ms = now_ms() - t0;
      sampled = true;
    }
    if (sampled && !input_sent) {
      const std::string text = o.input + "\n";
      [[maybe_unused]] ssize_t n = ::write(in_fd, text.data(), text.size());
      input_sent = true;
      exit_deadline = now_ms() + o.exit_timeout_s * 1000;
    }
    if (!sampled && now > deadline) {
      end_reason = boot_ms < 0 ? "marker-timeout" : "idle-timeout";
      break;
    }
    if (input_sent && now > exit_deadline) {
      end_reason = "exit-timeout";
      break;
    }
    if (!reaped) {
      int st = 0;
      const pid_t r = ::waitpid(pid, &st, WNOHANG);
      if (r == pid) {
        reaped = true;
        status = st;
        exit_ms = now_ms() - t0;
      }
    }
    if (reaped && !output_open) {
      break;
    }
    if (reaped && output_open) {
      // Drain what is left without blocking for long: a grandchild may hold the pipe open.
      pollfd p{out_fd, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) {
        break;
      }
    }
    if (!output_open) {
      ::usleep(20000);
      continue;
    }
    pollfd p{out_fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, 20);
    if (ready < 0 && errno != EINTR) {
      std::perror("boot_probe: poll");
      break;
    }
    if (ready <= 0) {
      continue;
    }
    char buf[4096];
    const ssize_t n = ::read(out_fd, buf, sizeof buf);
    const double t = now_ms();
    if (n <= 0) {
      output_open = false;
      if (!line.empty()) {
        on_line(line, t);
        line.clear();
      }
      continue;
    }
    if (boot_ms < 0) {
      pending.append(buf, static_cast<std::size_t>(n));
      if (pending.find(o.marker) != std::string::npos) {
        boot_ms = t - t0;
      } else if (pending.size() > o.marker.size()) {
        pending.erase(0, pending.size() - o.marker.size());
      }
    }
    for (ssize_t i = 0; i < n; ++i) {
      const char c = buf[i];
      if (c == '\n') {
        on_line(line, t);
        line.clear();
      } else if (c != '\r') {
        line.push_back(c);
      }
    }
  }

  if (!reaped) {
    // Ours to end: the child we forked, by its PID.
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    reaped = true;
    if (end_reason.empty()) end_reason = "killed";
  }
  if (!line.empty()) {
    on_line(line, now_ms());
  }
  std::fclose(log);

  std::string exit_text;
  if (end_reason == "exit-timeout" || end_reason == "marker-timeout" ||
      end_reason == "idle-timeout") {
    exit_text = "killed";
  } else if (WIFEXITED(status)) {
    exit_text = std::to_string(WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    exit_text = "signal" + std::to_string(WTERMSIG(status));
  }

  const long overhead = sampled && mem.rss_kib >= 0 ? mem.rss_kib - mem.guest_ram_kib : -1;
  std::printf(
      "BOOT-PROBE name=%s ok=%d boot_ms=%s console_ms=%s idle_ms=%s sample_ms=%s exit_ms=%s "
      "exit=%s end=%s guest_uptime=%s rss_kib=%ld guest_ram_kib=%ld guest_ram_size_kib=%ld "
      "overhead_kib=%ld hwm_kib=%ld rss_anon_kib=%ld rss_file_kib=%ld rss_shmem_kib=%ld "
      "smaps_rss_kib=%ld private_overhead_kib=%ld other_thp_kib=%ld threads=%ld cpu_ms=%ld "
      "minflt=%ld majflt=%ld guest_ram_thp_kib=%ld "
      "guest_ram_maps=%zu%s\n",
      no_spaces(o.name).c_str(), (boot_ms >= 0 && sampled) ? 1 : 0, fmt(boot_ms).c_str(),
      fmt(console_ms).c_str(), fmt(idle_ms).c_str(), fmt(sample_ms).c_str(), fmt(exit_ms).c_str(),
      exit_text.empty() ? "none" : exit_text.c_str(),
      end_reason.empty() ? "exited" : end_reason.c_str(), guest_uptime.c_str(), mem.rss_kib,
      mem.guest_ram_kib, mem.guest_ram_size_kib, overhead, mem.hwm_kib, mem.rss_anon_kib,
      mem.rss_file_kib, mem.rss_shmem_kib, mem.smaps_rss_kib, mem.private_kib, mem.other_thp_kib,
      mem.threads, mem.cpu_ms, mem.minflt, mem.majflt, mem.guest_ram_thp_kib, mem.guest_maps.size(),
      sampled ? mem.kvm_stats.c_str() : "");
  for (const auto& g : mem.guest_maps) {
    std::printf("BOOT-PROBE-MAP name=%s guest-ram %s\n", no_spaces(o.name).c_str(),
                no_spaces(g).c_str());
  }
  std::size_t shown = 0;
  for (const auto& [rss, what] : mem.others) {
    if (shown++ == 12) break;
    std::printf("BOOT-PROBE-MAP name=%s other rss_kib=%ld what=%s\n", no_spaces(o.name).c_str(),
                rss, no_spaces(what).c_str());
  }
  std::fflush(stdout);
  return (boot_ms >= 0 && sampled) ? 0 : 1;
}
