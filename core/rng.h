// A small, portable random generator (xoshiro256**, seeded through splitmix64). Its whole state
// is four words, so checkpoints save and restore it exactly, and the same seed gives the same
// numbers on every platform (unlike std::normal_distribution).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace muongpt {

// Element i (from 0) of the SplitMix64 sequence of `seed` (Steele, Lea and Flood, 2014). It is
// counter-based: any element is computed directly, without the ones before it.
inline uint64_t splitmix64_at(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) {
    for (int k = 0; k < 4; ++k) state_[k] = splitmix64_at(seed, static_cast<uint64_t>(k));
  }

  uint64_t next_u64() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n), n > 0 (the modulo bias is below 2^-40 for n < 2^24).
  uint64_t below(uint64_t n) { return next_u64() % n; }
  // Standard normal by Box–Muller (one value per call; simple and exactly reproducible).
  double normal() {
    double u1 = 1.0 - uniform();  // (0, 1]
    double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  std::array<uint64_t, 4> state() const { return state_; }
  void set_state(const std::array<uint64_t, 4>& s) { state_ = s; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::array<uint64_t, 4> state_{};
};

}  // namespace muongpt
