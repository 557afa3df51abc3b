// Runs inside the guest of scripts/bench/disk (static): measures a virtio-blk disk through the
// guest's block layer with O_DIRECT (no guest page cache), JOBS threads at a time, each phase
// for SECONDS:
//   seq_write   1 MiB writes, each thread in its own quarter of the disk, wrapping around
//   seq_read    1 MiB reads, the same way
//   rand_read   4 KiB reads at random 4 KiB-aligned offsets over the whole disk
// prints one line:
//   KEEL-BENCH disk seq_write_mibs=F seq_read_mibs=F rand_read_iops=F bytes=N errors=N
//   disk_bench DEVICE SECONDS JOBS
#include <fcntl.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Totals {
  std::atomic<std::uint64_t> bytes{0}, ops{0}, errors{0};
};

enum class Phase { kSeqWrite, kSeqRead, kRandRead };

void worker(int fd, Phase phase, std::uint64_t disk, int job, int jobs, double seconds,
            Totals& t) {
  const std::size_t block = phase == Phase::kRandRead ? 4096 : 1 << 20;
  void* buf = nullptr;
  if (::posix_memalign(&buf, 4096, block) != 0) {
    ++t.errors;
    return;
  }
  std::memset(buf, job + 1, block);
  const std::uint64_t span = (disk / jobs) & ~std::uint64_t{block - 1};
  const std::uint64_t base = span * job;
  std::mt19937_64 rng(job * 7919 + 1);
  std::uint64_t at = 0;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    std::uint64_t offset;
    if (phase == Phase::kRandRead) {
      offset = (rng() % (disk / block)) * block;
    } else {
      offset = base + at;
      at = at + block >= span ? 0 : at + block;
    }
    const ssize_t n = phase == Phase::kSeqWrite ? ::pwrite(fd, buf, block, static_cast<off_t>(offset))
                                                : ::pread(fd, buf, block, static_cast<off_t>(offset));
    if (n != static_cast<ssize_t>(block)) {
      ++t.errors;
      continue;
    }
    t.bytes += block;
    ++t.ops;
  }
  std::free(buf);
}

double run(int fd, Phase phase, std::uint64_t disk, int jobs, double seconds, Totals& all,
           bool iops) {
  Totals t;
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int j = 0; j < jobs; ++j) {
    threads.emplace_back(worker, fd, phase, disk, j, jobs, seconds, std::ref(t));
  }
  for (auto& th : threads) {
    th.join();
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  all.bytes += t.bytes;
  all.errors += t.errors;
  return iops ? t.ops / elapsed : t.bytes / elapsed / (1 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: disk_bench DEVICE SECONDS JOBS\n");
    return 2;
  }
  const double seconds = std::atof(argv[2]);
  const int jobs = std::atoi(argv[3]);
  const int fd = ::open(argv[1], O_RDWR | O_DIRECT);
  std::uint64_t disk = 0;
  if (fd < 0 || ::ioctl(fd, BLKGETSIZE64, &disk) != 0 || disk < (64ULL << 20) || jobs < 1) {
    std::printf("KEEL-BENCH disk error=%s\n", fd < 0 ? "open" : "size");
    return 1;
  }
  Totals all;
  const double w = run(fd, Phase::kSeqWrite, disk, jobs, seconds, all, false);
  ::fsync(fd);
  const double r = run(fd, Phase::kSeqRead, disk, jobs, seconds, all, false);
  const double iops = run(fd, Phase::kRandRead, disk, jobs, seconds, all, true);
  std::printf("KEEL-BENCH disk seq_write_mibs=%.1f seq_read_mibs=%.1f rand_read_iops=%.0f bytes=%llu errors=%llu\n",
              w, r, iops, static_cast<unsigned long long>(all.bytes.load()),
              static_cast<unsigned long long>(all.errors.load()));
  std::fflush(stdout);
  return all.errors == 0 ? 0 : 1;
}
