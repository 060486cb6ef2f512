// alloc_peer: the allocators dmem is compared with, on the very patterns of
// `dmem bench micro` and `dmem bench heap`, so `dmem bench compare`
// (src/bench/compare.ts) can run both sides interleaved in one script.
//
// Allocators:
//   boost   boost::interprocess::managed_shared_memory: one segment in
//           /dev/shm shared by P forked processes (each opens it by name,
//           as an unrelated process would); rbtree_best_fit behind one
//           process-shared mutex. What a user would take instead of dmem
//           for memory shared between processes.
//   malloc  glibc malloc/free: P forked processes, each with its own heap
//           (nothing shared): the in-process ceiling.
//
// Patterns (one cell per invocation; one JSON object on stdout):
//   frag    FineMem's frag microbenchmark (OSDI '25, section 6.2), as in
//           src/bench/worker.ts: each process allocates N blocks of
//           4 KiB * 2^class, then for E epochs frees M distinct random
//           blocks (partial Fisher-Yates) and allocates M again. Every 8th
//           allocation is timed (two clock reads around it); the loop's
//           wall time is taken once. ops/s = (allocs + frees of all
//           processes) / the slowest process's loop time. With --warmup W
//           each process first runs W epochs of the same loop untimed (after
//           its setup, before the start signal), as dmem's worker does with
//           warmupEpochs; they count in nothing reported.
//   heap    src/bench/heap-pattern.ts: hold L objects of S bytes, then
//           W untimed and R timed rounds of C times (free a random held
//           object, allocate one again). ns per alloc+free pair = timed
//           loop wall time / (R * C),
//           averaged over the processes; pairs/s summed over them.
//
// The block contents are never touched (dmem's benchmarks do not touch
// them either). The PRNG is mulberry32 with src/bench/prng.ts's seed
// derivation, so process i draws the same indices as dmem's worker i.
//
// Processes: the parent forks P children, which set up (allocate N or L),
// report ready in an anonymous shared page and spin until the parent says
// go; the parent then waits for them and prints the aggregate. A child that
// fails reports an error string there and exits 1.
//
// Build: g++ -O2 -std=c++17 -o alloc_peer alloc_peer.cpp -lrt -pthread
// (without the Boost headers the program builds with malloc only; `--list`
// prints what is available).
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <memory>
#include <ctime>
#include <new>
#include <string>
#include <vector>

#include <sched.h>
#include <csignal>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#if __has_include(<boost/interprocess/managed_shared_memory.hpp>)
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/version.hpp>
#define PEER_HAVE_BOOST 1
#else
#define PEER_HAVE_BOOST 0
#endif

namespace {

constexpr int kLatencyStride = 8;  // every 8th allocation timed, as src/bench/worker.ts
constexpr int kMaxProcs = 64;

// ---- mulberry32, as src/bench/prng.ts ----
struct Prng {
  uint32_t state;
  explicit Prng(uint32_t seed) : state(seed) {}
  uint32_t next() {
    uint32_t s = (state += 0x6d2b79f5u);
    uint32_t t = (s ^ (s >> 15)) * (s | 1u);
    t ^= t + (t ^ (t >> 7)) * (t | 61u);
    return t ^ (t >> 14);
  }
  // Uniform in [0, n): floor(next / 2^32 * n), as Prng.below.
  uint32_t below(uint32_t n) { return static_cast<uint32_t>((static_cast<double>(next()) / 4294967296.0) * n); }
};

uint32_t derive_seed(uint32_t seed, uint32_t index) {
  return Prng(seed + (index + 1u) * 0x9e3779b9u).next();
}

inline double now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// ---- options ----
struct Options {
  std::string allocator = "malloc";
  std::string pattern = "frag";
  int procs = 1;
  // frag
  int cls = 0;
  long epochs = 1000, warmup = 0, blocks = 1000, churn = 250;
  // heap
  long size = 64, live = 1000, rounds = 1000, warmup_rounds = 0;
  uint32_t seed = 1;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "alloc_peer: %s\n"
               "usage: alloc_peer --allocator boost|malloc --pattern frag|heap [--procs P] [--seed S]\n"
               "  frag: [--class C (0..9)] [--epochs E] [--warmup W] [--blocks N] [--churn M]\n"
               "  heap: [--size BYTES] [--live L] [--rounds R] [--churn C] [--warmup-rounds W]\n"
               "  alloc_peer --list   prints the allocators this build has\n",
               why);
  std::exit(2);
}

long parse_long(const char* name, const char* text, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
    std::string why = std::string(name) + " must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got \"" + text + "\"";
    usage(why.c_str());
  }
  return v;
}

// ---- shared control page (anonymous, inherited by the children) ----
struct ProcResult {
  double loop_ns;
  long ops_a;  // frag: allocations; heap: pairs
  long ops_b;  // frag: frees
  long samples;
  char error[200];
};

struct Control {
  std::atomic<int> ready;
  std::atomic<int> go;
  ProcResult results[kMaxProcs];
};

// ---- allocators ----
// Each returns nullptr on failure; frees never fail.
struct Allocator {
  virtual void* alloc(size_t n) = 0;
  virtual void release(void* p) = 0;
  virtual ~Allocator() = default;
};

struct MallocAllocator final : Allocator {
  void* alloc(size_t n) override { return std::malloc(n); }
  void release(void* p) override { std::free(p); }
};

#if PEER_HAVE_BOOST
namespace bip = boost::interprocess;
struct BoostAllocator final : Allocator {
  bip::managed_shared_memory seg;
  explicit BoostAllocator(const char* name) : seg(bip::open_only, name) {}
  void* alloc(size_t n) override { return seg.allocate(n, std::nothrow); }
  void release(void* p) override { seg.deallocate(p); }
};
#endif

void set_error(ProcResult& r, const std::string& msg) {
  std::snprintf(r.error, sizeof r.error, "%s", msg.c_str());
}

void wait_go(Control* ctl) {
  ctl->ready.fetch_add(1);
  while (ctl->go.load(std::memory_order_acquire) == 0) sched_yield();
}

// Counts of one run of the frag epoch loop.
struct FragCounts {
  long allocs = 0, frees = 0, samples = 0;
  bool failed = false;
};

// `epochs` epochs of the frag loop of src/bench/worker.ts (churnLoop).
// Latency samples go to `lat` (preallocated, from index 0), nothing is
// allocated inside the loop.
FragCounts frag_epochs(Allocator& a, size_t bytes, long epochs, long churn, std::vector<void*>& blocks, std::vector<int32_t>& perm, Prng& rng, double* lat) {
  const long n = static_cast<long>(blocks.size());
  FragCounts c;
  long i = 0;
  for (long e = 0; e < epochs && !c.failed; e++) {
    for (long j = 0; j < churn; j++) {
      const long rr = j + rng.below(static_cast<uint32_t>(n - j));
      const int32_t slot = perm[rr];
      perm[rr] = perm[j];
      perm[j] = slot;
      a.release(blocks[slot]);
      blocks[slot] = nullptr;
      c.frees++;
    }
    for (long j = 0; j < churn; j++, i++) {
      void* p;
      if (i % kLatencyStride == 0) {
        const double s = now_ns();
        p = a.alloc(bytes);
        lat[c.samples++] = now_ns() - s;
      } else {
        p = a.alloc(bytes);
      }
      if (!p) { c.failed = true; break; }
      blocks[perm[j]] = p;
      c.allocs++;
    }
  }
  return c;
}

// One process of the frag pattern: setup, o.warmup untimed epochs (their
// latencies are overwritten), the start signal, o.epochs timed epochs.
void run_frag(Allocator& a, const Options& o, uint32_t seed, Control* ctl, ProcResult& r, double* lat) {
  const size_t bytes = static_cast<size_t>(4096) << o.cls;
  std::vector<void*> blocks(o.blocks);
  std::vector<int32_t> perm(o.blocks);
  for (long i = 0; i < o.blocks; i++) {
    blocks[i] = a.alloc(bytes);
    perm[i] = static_cast<int32_t>(i);
    if (!blocks[i]) { set_error(r, "setup allocation failed (segment too small?)"); ctl->ready.fetch_add(1); return; }
  }
  Prng rng(seed);
  if (o.warmup > 0 && frag_epochs(a, bytes, o.warmup, o.churn, blocks, perm, rng, lat).failed) {
    set_error(r, "allocation failed in the warm-up epochs (segment too small?)");
    ctl->ready.fetch_add(1);
    for (void* p : blocks) if (p) a.release(p);
    return;
  }
  wait_go(ctl);
  const double t0 = now_ns();
  const FragCounts c = frag_epochs(a, bytes, o.epochs, o.churn, blocks, perm, rng, lat);
  r.loop_ns = now_ns() - t0;
  r.ops_a = c.allocs;
  r.ops_b = c.frees;
  r.samples = c.samples;
  if (c.failed) set_error(r, "allocation failed in the epoch loop (segment too small?)");
  for (void* p : blocks) if (p) a.release(p);
}

// The heap pattern of src/bench/heap-pattern.ts (runPattern).
void run_heap(Allocator& a, const Options& o, uint32_t seed, Control* ctl, ProcResult& r) {
  const size_t bytes = static_cast<size_t>(o.size);
  std::vector<void*> held(o.live);
  for (long i = 0; i < o.live; i++) {
    held[i] = a.alloc(bytes);
    if (!held[i]) { set_error(r, "setup allocation failed (segment too small?)"); ctl->ready.fetch_add(1); return; }
  }
  Prng rng(seed);
  wait_go(ctl);
  bool failed = false;
  // W untimed rounds, then R timed ones, one PRNG stream (as runPattern in
  // src/bench/heap-pattern.ts).
  auto rounds = [&](long n) {
    for (long round = 0; round < n && !failed; round++) {
      for (long j = 0; j < o.churn; j++) {
        const uint32_t i = rng.below(static_cast<uint32_t>(o.live));
        a.release(held[i]);
        held[i] = a.alloc(bytes);
        if (!held[i]) { failed = true; break; }
      }
    }
  };
  rounds(o.warmup_rounds);
  const double t0 = now_ns();
  rounds(o.rounds);
  r.loop_ns = now_ns() - t0;
  r.ops_a = o.rounds * o.churn;
  if (failed) set_error(r, "allocation failed in the timed rounds (segment too small?)");
  for (void* p : held) if (p) a.release(p);
}

// Bytes of the Boost segment: what dmem's benchmarks give their temporary
// pool (src/bench/micro.ts microPoolBytes, src/bench/heap.ts dmemRun).
size_t segment_bytes(const Options& o) {
  const size_t slack = static_cast<size_t>(64) << 20;
  if (o.pattern == "frag") return static_cast<size_t>(o.procs * o.blocks * (4096.0 * (1L << o.cls)) * 1.25) + slack;
  return slack + static_cast<size_t>(o.procs) * o.live * o.size * 2;
}

void json_string(const char* s) {
  std::putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') std::printf("\\%c", *s);
    else if (static_cast<unsigned char>(*s) < 0x20) std::printf("\\u%04x", *s);
    else std::putchar(*s);
  }
  std::putchar('"');
}

int fail_json(const Options& o, const std::string& msg) {
  std::printf("{\"allocator\":\"%s\",\"pattern\":\"%s\",\"error\":", o.allocator.c_str(), o.pattern.c_str());
  json_string(msg.c_str());
  std::printf("}\n");
  return 1;
}

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  long rank = static_cast<long>(std::ceil(q * sorted.size()));
  rank = std::min<long>(static_cast<long>(sorted.size()), std::max<long>(1, rank));
  return sorted[rank - 1];
}

// The segment's name, for the signal handler: an interrupted run removes its
// segment (shm_unlink is async-signal-safe) instead of leaving it in /dev/shm.
char g_segment[64] = "";

void on_signal(int sig) {
  if (g_segment[0]) shm_unlink(g_segment);
  _exit(128 + sig);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--list") {
      std::printf("{\"allocators\":[%s\"malloc\"]", PEER_HAVE_BOOST ? "\"boost\"," : "");
#if PEER_HAVE_BOOST
      std::printf(",\"boostVersion\":\"%d.%d.%d\"", BOOST_VERSION / 100000, BOOST_VERSION / 100 % 1000, BOOST_VERSION % 100);
#endif
      std::printf("}\n");
      return 0;
    }
    if (i + 1 >= argc) usage(("missing value after " + a).c_str());
    const char* v = argv[++i];
    if (a == "--allocator") o.allocator = v;
    else if (a == "--pattern") o.pattern = v;
    else if (a == "--procs") o.procs = static_cast<int>(parse_long("--procs", v, 1, kMaxProcs));
    else if (a == "--class") o.cls = static_cast<int>(parse_long("--class", v, 0, 9));
    else if (a == "--epochs") o.epochs = parse_long("--epochs", v, 1, 1000000000L);
    else if (a == "--warmup") o.warmup = parse_long("--warmup", v, 0, 1000000000L);
    else if (a == "--blocks") o.blocks = parse_long("--blocks", v, 1, 100000000L);
    else if (a == "--churn") o.churn = parse_long("--churn", v, 1, 100000000L);
    else if (a == "--size") o.size = parse_long("--size", v, 1, 1L << 30);
    else if (a == "--live") o.live = parse_long("--live", v, 1, 100000000L);
    else if (a == "--rounds") o.rounds = parse_long("--rounds", v, 1, 1000000000L);
    else if (a == "--warmup-rounds") o.warmup_rounds = parse_long("--warmup-rounds", v, 0, 1000000000L);
    else if (a == "--seed") o.seed = static_cast<uint32_t>(parse_long("--seed", v, 0, 4294967295L));
    else usage(("unknown option " + a).c_str());
  }
  if (o.pattern != "frag" && o.pattern != "heap") usage("--pattern must be frag or heap");
  if (o.allocator != "malloc" && o.allocator != "boost") usage("--allocator must be boost or malloc");
#if !PEER_HAVE_BOOST
  if (o.allocator == "boost") return fail_json(o, "built without the Boost headers (install libboost-dev)");
#endif
  if (o.pattern == "frag" && o.churn > o.blocks) usage("--churn must not exceed --blocks");

  auto* ctl = static_cast<Control*>(mmap(nullptr, sizeof(Control), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  if (ctl == MAP_FAILED) return fail_json(o, std::string("mmap of the control page failed: ") + std::strerror(errno));
  new (ctl) Control();
  const long max_samples = o.pattern == "frag" ? (std::max(o.epochs, o.warmup) * o.churn + kLatencyStride - 1) / kLatencyStride : 0;
  double* lat = nullptr;
  if (max_samples > 0) {
    void* m = mmap(nullptr, sizeof(double) * max_samples * o.procs, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return fail_json(o, std::string("mmap of the latency buffer failed: ") + std::strerror(errno));
    lat = static_cast<double*>(m);
  }

  std::string seg_name = "dmem-peer-" + std::to_string(getpid());
  size_t seg_bytes = 0, free_before = 0;
#if PEER_HAVE_BOOST
  std::unique_ptr<bip::managed_shared_memory> seg;
  if (o.allocator == "boost") {
    seg_bytes = segment_bytes(o);
    try {
      bip::shared_memory_object::remove(seg_name.c_str());
      std::snprintf(g_segment, sizeof g_segment, "/%s", seg_name.c_str());
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      seg.reset(new bip::managed_shared_memory(bip::create_only, seg_name.c_str(), seg_bytes));
      free_before = seg->get_free_memory();
    } catch (const std::exception& e) {
      bip::shared_memory_object::remove(seg_name.c_str());
      return fail_json(o, std::string("creating the Boost segment failed: ") + e.what());
    }
  }
#endif

  std::fflush(stdout);
  std::vector<pid_t> kids;
  const pid_t parent = getpid();
  for (int p = 0; p < o.procs; p++) {
    pid_t pid = fork();
    if (pid < 0) {
      set_error(ctl->results[p], std::string("fork failed: ") + std::strerror(errno));
      break;
    }
    if (pid == 0) {
      // Die with the parent (a timeout or signal that reaches only it).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      ProcResult& r = ctl->results[p];
      const uint32_t seed = derive_seed(o.seed, static_cast<uint32_t>(p));
      try {
        Allocator* a;
        MallocAllocator m;
#if PEER_HAVE_BOOST
        std::unique_ptr<BoostAllocator> b;
        if (o.allocator == "boost") { b.reset(new BoostAllocator(seg_name.c_str())); a = b.get(); }
        else a = &m;
#else
        a = &m;
#endif
        if (o.pattern == "frag") run_frag(*a, o, seed, ctl, r, lat + p * max_samples);
        else run_heap(*a, o, seed, ctl, r);
      } catch (const std::exception& e) {
        set_error(r, std::string("exception: ") + e.what());
        ctl->ready.fetch_add(1);
      }
      _exit(r.error[0] ? 1 : 0);
    }
    kids.push_back(pid);
  }
  // Start every loop at once; the parent sleeps rather than spins, so it
  // takes no core from the children.
  while (ctl->ready.load() < static_cast<int>(kids.size())) usleep(200);
  ctl->go.store(1, std::memory_order_release);
  std::string error;
  for (size_t p = 0; p < kids.size(); p++) {
    int status = 0;
    waitpid(kids[p], &status, 0);
    if (ctl->results[p].error[0] && error.empty()) error = "process " + std::to_string(p) + ": " + ctl->results[p].error;
    else if ((!WIFEXITED(status) || WEXITSTATUS(status) != 0) && error.empty()) error = "process " + std::to_string(p) + " died (status " + std::to_string(status) + ")";
  }
  if (kids.size() < static_cast<size_t>(o.procs) && error.empty()) error = ctl->results[kids.size()].error;

  bool leak_free = true;
#if PEER_HAVE_BOOST
  if (seg) {
    leak_free = seg->get_free_memory() == free_before;
    seg.reset();
    bip::shared_memory_object::remove(seg_name.c_str());
  }
#endif
  if (!error.empty()) return fail_json(o, error);

  std::printf("{\"allocator\":\"%s\",\"pattern\":\"%s\",\"procs\":%d,\"seed\":%" PRIu32, o.allocator.c_str(), o.pattern.c_str(), o.procs, o.seed);
  if (seg_bytes) std::printf(",\"segmentBytes\":%zu,\"allFreed\":%s", seg_bytes, leak_free ? "true" : "false");
  if (o.pattern == "frag") {
    long allocs = 0, frees = 0;
    double loop_ns = 0;
    std::vector<double> all;
    for (int p = 0; p < o.procs; p++) {
      const ProcResult& r = ctl->results[p];
      allocs += r.ops_a;
      frees += r.ops_b;
      loop_ns = std::max(loop_ns, r.loop_ns);
      all.insert(all.end(), lat + p * max_samples, lat + p * max_samples + r.samples);
    }
    std::sort(all.begin(), all.end());
    double sum = 0;
    for (double x : all) sum += x;
    const double loop_ms = loop_ns / 1e6;
    std::printf(",\"cls\":%d,\"blockBytes\":%ld,\"epochs\":%ld,\"warmupEpochs\":%ld,\"blocks\":%ld,\"churn\":%ld,\"allocs\":%ld,\"frees\":%ld,\"loopMs\":%.4f,\"opsPerSec\":%.1f",
                o.cls, 4096L << o.cls, o.epochs, o.warmup, o.blocks, o.churn, allocs, frees, loop_ms, loop_ms > 0 ? (allocs + frees) / loop_ms * 1000 : 0.0);
    std::printf(",\"latency\":{\"samples\":%zu,\"meanNs\":%.1f,\"p50Ns\":%.1f,\"p99Ns\":%.1f,\"maxNs\":%.1f}}\n",
                all.size(), all.empty() ? 0.0 : sum / all.size(), percentile(all, 0.5), percentile(all, 0.99), all.empty() ? 0.0 : all.back());
  } else {
    double ns_sum = 0, pps = 0;
    long pairs = 0;
    for (int p = 0; p < o.procs; p++) {
      const ProcResult& r = ctl->results[p];
      ns_sum += r.loop_ns / r.ops_a;
      pps += r.ops_a / (r.loop_ns / 1e9);
      pairs += r.ops_a;
    }
    std::printf(",\"size\":%ld,\"live\":%ld,\"rounds\":%ld,\"warmupRounds\":%ld,\"churn\":%ld,\"pairs\":%ld,\"nsPerPair\":%.2f,\"pairsPerSec\":%.1f}\n",
                o.size, o.live, o.rounds, o.warmup_rounds, o.churn, pairs, ns_sum / o.procs, pps);
  }
  return 0;
}
