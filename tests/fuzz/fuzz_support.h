// What the fuzz targets of tests/fuzz share: a CPU allocator without a cache
// and with a limit, one OpenMP thread, a scratch file or folder for the
// readers that take a path, and FUZZ_EXPECT and must() for the properties a
// successful read must have (a failure aborts, which libFuzzer reports as a crash).
//
// The allocator frees storage at once, so AddressSanitizer sees every use of a
// freed tensor, and refuses to hold more than kMemoryLimit: a request past it
// is a moegrad::Error, as on a machine with little memory, so an input that
// asks for a huge tensor is a clear error and not an out-of-memory crash.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tensor/allocator.h"
#include "tensor/error.h"
#ifdef _OPENMP
#include <omp.h>
#endif

namespace moegrad::fuzz {

constexpr size_t kMemoryLimit = size_t(256) << 20;

class LimitedAllocator : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    const size_t size = (nbytes + 63) / 64 * 64 + 64;  // 64-byte aligned like the library's, never 0
    MG_CHECK(nbytes < kMemoryLimit && size <= kMemoryLimit - static_cast<size_t>(stats_.bytes_in_use),
             "out of memory: ", nbytes, " bytes asked with ", stats_.bytes_in_use, " in use (fuzzing limit ",
             kMemoryLimit, ")");
    void* p = std::aligned_alloc(64, size);
    MG_CHECK(p, "out of memory: ", nbytes, " bytes");
    stats_.system_allocs++;
    stats_.bytes_in_use += static_cast<int64_t>(size);
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
    return p;
  }
  void deallocate(void* ptr, size_t nbytes) override {
    if (!ptr) return;
    std::free(ptr);
    stats_.bytes_in_use -= static_cast<int64_t>((nbytes + 63) / 64 * 64 + 64);
  }
  AllocatorStats stats() const override { return stats_; }
  void reset_peak() override { stats_.peak_bytes_in_use = stats_.bytes_in_use; }
  void release_cache() override {}

 private:
  AllocatorStats stats_;
};

// Call once, from LLVMFuzzerInitialize.
inline void setup() {
  static LimitedAllocator allocator;
  register_allocator(DeviceType::CPU, &allocator);
#ifdef _OPENMP
  omp_set_num_threads(1);
#endif
}

// A path of this process under $TMPDIR (or /tmp), removed at exit.
class Scratch {
 public:
  explicit Scratch(const std::string& name) {
    const char* tmp = std::getenv("TMPDIR");
    path_ = std::string(tmp && *tmp ? tmp : "/tmp") + "/moegrad-fuzz-" + std::to_string(::getpid()) + "-" + name;
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// For a rejected input: prints the Error when MOEGRAD_FUZZ_VERBOSE is set
// (to see why a seed or a saved input is rejected), else nothing.
inline void rejected(const Error& e) {
  static const bool verbose = std::getenv("MOEGRAD_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "rejected: %s\n", e.what());
}

// f(), where a moegrad::Error would be a wrong result: it aborts, naming `what`.
template <typename F>
auto must(const char* what, F f) {
  try {
    return f();
  } catch (const Error& e) {
    std::fprintf(stderr, "fuzz: %s failed: %s\n", what, e.what());
    std::abort();
  }
}

}  // namespace moegrad::fuzz

// A property every successful read must have; aborts (a crash for libFuzzer) with the message.
#define FUZZ_EXPECT(cond, ...)                                                                   \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      std::fprintf(stderr, "FUZZ_EXPECT(%s) failed: %s\n", #cond,                                \
                   ::moegrad::detail::cat(__VA_ARGS__).c_str());                                 \
      std::abort();                                                                              \
    }                                                                                            \
  } while (0)
