// The CPU optimizer behind Optimizer::create() (internal: callers use optim/optimizer.h).
#pragma once

#include <memory>
#include <vector>

#include "optim/optimizer.h"

namespace muongpt {

// routes and slots are already checked to agree (create() does it).
std::unique_ptr<Optimizer> make_cpu_optimizer(const std::vector<Route>& routes,
                                              const std::vector<ParamSlot>& slots,
                                              const OptimConfig& cfg, Comm* comm);

}  // namespace muongpt
