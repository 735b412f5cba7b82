// What the benchmark programs share: the median of timed runs after warm-up,
// the peak resident memory of a measured section (the same method as the
// PyTorch peer in bench/torch_peer.py: reset the kernel's high-water mark,
// run, read it back), command-line flags, and a JSON result line.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace bench {

struct Timing {
  std::vector<double> ms;  // every timed run, in order
  double median() const {
    std::vector<double> s = ms;
    std::sort(s.begin(), s.end());
    return s.empty() ? 0.0 : s[s.size() / 2];
  }
};

// warmup untimed calls, then reps timed runs of `inner` calls each (time per call).
template <typename F>
Timing time_runs(int warmup, int reps, int inner, F&& f) {
  for (int i = 0; i < warmup; ++i) f();
  Timing t;
  for (int i = 0; i < reps; ++i) {
    auto a = std::chrono::steady_clock::now();
    for (int j = 0; j < inner; ++j) f();
    t.ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count() / inner);
  }
  return t;
}

// A field of /proc/self/status in MiB ("VmRSS", "VmHWM"); -1 when unreadable.
inline double proc_status_mib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(in, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
      return std::stod(line.substr(n + 1)) / 1024.0;  // kB
  return -1.0;
}

// Peak resident memory of a section, in MiB above the resident size at its
// start: writing 5 to /proc/self/clear_refs resets VmHWM to the current RSS.
class PeakMemory {
 public:
  PeakMemory() {
    std::ofstream("/proc/self/clear_refs") << "5";
    start_ = proc_status_mib("VmRSS");
  }
  double mib() const { return proc_status_mib("VmHWM") - start_; }

 private:
  double start_;
};

inline const char* flag(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}
inline long flag_int(int argc, char** argv, const char* name, long fallback) {
  const char* v = flag(argc, argv, name, nullptr);
  return v ? std::stol(v) : fallback;
}

// {"impl": ..., "case": ..., "median_ms": ..., "times_ms": [...], "per_s": ..., "unit": ..., "peak_mib": ...}
// per_s: items (tokens, flops) per second at the median. model_gflop > 0 adds
// the FLOPs of one call ("model_gflop").
inline void print_result(const char* impl, const std::string& name, const Timing& t, double items,
                         const char* unit, double peak_mib, double model_gflop = 0) {
  std::printf("{\"impl\": \"%s\", \"case\": \"%s\", \"median_ms\": %.4f, \"times_ms\": [", impl, name.c_str(),
              t.median());
  for (size_t i = 0; i < t.ms.size(); ++i) std::printf("%s%.4f", i ? ", " : "", t.ms[i]);
  std::printf("], \"per_s\": %.6g, \"unit\": \"%s\", \"peak_mib\": %.1f", items / (t.median() / 1000.0), unit,
              peak_mib);
  if (model_gflop > 0) std::printf(", \"model_gflop\": %.6g", model_gflop);
  std::printf("}\n");
  std::fflush(stdout);
}

}  // namespace bench
