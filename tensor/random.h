// Seeded, counter-based random numbers. A Generator is (seed, offset): each
// request takes the next `n` counters, and element i's value is a hash of
// (seed, offset + i). Values therefore do not depend on the thread count or
// the order of evaluation, the state is two integers (easy to checkpoint), and
// a CUDA kernel can produce the same stream as the CPU.
#pragma once
#include <cmath>
#include <cstdint>

// The counter hashes below also compile as CUDA device code.
#ifdef __CUDACC__
#define MG_HOST_DEVICE __host__ __device__
#else
#define MG_HOST_DEVICE
#endif

namespace moegrad {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }
  // Reserves n counters and returns the first.
  uint64_t take(uint64_t n) {
    uint64_t first = offset_;
    offset_ += n;
    return first;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The generator used when none is passed.
Generator& default_generator();
// Reseeds the default generator (offset back to 0).
void manual_seed(uint64_t seed);

// splitmix64 finaliser over (seed, counter): 64 well-mixed bits.
MG_HOST_DEVICE inline uint64_t random_bits(uint64_t seed, uint64_t counter) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + counter * 0xBF58476D1CE4E5B9ull + 0x94D049BB133111EBull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 53 random bits.
MG_HOST_DEVICE inline double random_uniform(uint64_t seed, uint64_t counter) {
  return static_cast<double>(random_bits(seed, counter) >> 11) * (1.0 / 9007199254740992.0);
}

// Dropout's test for the element of counter c: kept when its uniform draw is
// at least p. dropout() and the fused attention's dropout, on the CPU and on
// CUDA, all draw their masks through it.
MG_HOST_DEVICE inline bool dropout_keeps(uint64_t seed, uint64_t counter, double p) {
  return random_uniform(seed, counter) >= p;
}

// The factor a kept element is scaled by, 1/(1-p), so the expectation is
// unchanged; 0 at p = 1, where nothing is kept.
MG_HOST_DEVICE inline double dropout_scale(double p) { return p == 1.0 ? 0.0 : 1.0 / (1.0 - p); }

// The same test in integers, for loops that vectorise: the draw k · 2^-53
// (k < 2^53) is at least p exactly when k >= ceil(p · 2^53), and p · 2^53 is
// exact in double. dropout_threshold takes p in [0, 1].
inline uint64_t dropout_threshold(double p) { return static_cast<uint64_t>(std::ceil(p * 9007199254740992.0)); }
MG_HOST_DEVICE inline bool dropout_keeps_bits(uint64_t seed, uint64_t counter, uint64_t threshold) {
  return (random_bits(seed, counter) >> 11) >= threshold;
}

// Standard normal (Box-Muller over counters 2c and 2c+1).
double random_normal(uint64_t seed, uint64_t counter);

}  // namespace moegrad
