// The elementwise tolerance of the GPU and emulated kernel tests (docs/numerics.md, "GPU
// tolerances (bf16)"): every |got − want| ≤ rel · (|want| + mag) + floor · max|want|.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace muongpt::testing {

struct Tol {
  double rel;    // × (|ref| + mag)
  double floor;  // × max|ref| over the tensor
};

// Every |got − want| ≤ tol.rel · (|want| + mag) + tol.floor · max|want|; NaN fails. `mag` is an
// op-specific magnitude per element (none: 0).
inline void expect_close(const std::string& what, const std::vector<float>& got,
                         const std::vector<double>& want, Tol tol,
                         const std::vector<double>& mag = {}) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_TRUE(mag.empty() || mag.size() == want.size()) << what;
  double max_want = 0;
  for (double w : want) max_want = std::max(max_want, std::abs(w));
  const double floor = tol.floor * max_want;
  size_t bad = 0, worst = 0;
  double worst_ratio = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double bound = tol.rel * (std::abs(want[i]) + (mag.empty() ? 0.0 : mag[i])) + floor;
    const double err = std::abs(double(got[i]) - want[i]);
    if (err <= bound) continue;
    ++bad;
    const double ratio = std::isnan(err) ? INFINITY : bound > 0 ? err / bound : INFINITY;
    if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size()
                     << " entries out of tolerance; worst at " << worst << ": got " << got[worst]
                     << ", want " << want[worst] << " (error " << worst_ratio << " × the bound)";
}

}  // namespace muongpt::testing
