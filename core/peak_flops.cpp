// gpu_peak_tflops (core/device.h): NVIDIA's data-sheet peaks without sparsity (half the sparse
// figure where the sheet gives only that). The first entry whose key the name contains wins, so
// the specific variants (PCIe, NVL) come before the family.
#include <string_view>

#include "core/device.h"

namespace muongpt {

double gpu_peak_tflops(const std::string& name, bool bf16) {
  struct Peak {
    std::string_view key;
    double bf16, fp32;
  };
  static constexpr Peak kPeaks[] = {
      {"H100 PCIe", 756.5, 51.2}, {"H100 NVL", 835.5, 60.0},
      {"H200 NVL", 835.5, 60.0},  {"H100", 989.4, 66.9},  // SXM ("NVIDIA H100 80GB HBM3")
      {"H200", 989.4, 66.9},      {"A100", 312.0, 19.5},
  };
  for (const Peak& p : kPeaks)
    if (name.find(p.key) != std::string::npos) return bf16 ? p.bf16 : p.fp32;
  return 0.0;
}

}  // namespace muongpt
