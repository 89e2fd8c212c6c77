#include "optim/optimizer.h"

#include <map>
#include <tuple>

#include "core/error.h"
#include "optim/optimizer_cpu.h"
#include "optim/optimizer_cuda.h"

namespace muongpt {

size_t optimizer_state_bytes(const std::vector<Route>& routes, bool record_updates, int world) {
  const std::vector<int> owner = muon_owner_ranks(routes, world);
  size_t adamw = 0, muon = 0, all = 0;
  for (size_t i = 0; i < routes.size(); ++i) {
    size_t n = 1;
    for (int64_t s : routes[i].shape) n *= size_t(s);
    all += n;
    if (routes[i].optimizer == "muon")
      muon += owner[i] == 0 ? n : 0;  // rank 0 owns at least as many as any other rank
    else
      adamw += n;
  }
  return sizeof(float) *
         (2 * (adamw + size_t(world) - 1) / size_t(world) + muon + (record_updates ? all : 0));
}

std::unique_ptr<Optimizer> Optimizer::create(const std::vector<Route>& routes,
                                             const std::vector<ParamSlot>& slots,
                                             const OptimConfig& cfg, Comm* comm) {
  if (routes.size() != slots.size())
    fail("optim", routes.size(), " routes for ", slots.size(), " parameters");
  bool any_cuda = false;
  for (size_t i = 0; i < routes.size(); ++i) {
    const Route& r = routes[i];
    const ParamSlot& s = slots[i];
    if (r.name != s.name || r.shape != s.shape)
      fail("optim", "parameter ", i, " is '", s.name, "' but route ", i, " is for '", r.name,
           "' (routes must follow the parameter order)");
    if (!s.value || !s.grad) fail("optim", "parameter '", s.name, "' has no value or gradient");
    if (r.optimizer == "muon" && r.shape.size() != 2)
      fail("optim", "parameter '", s.name, "' is routed to muon but is not a matrix");
    if (r.optimizer != "muon" && r.optimizer != "adamw")
      fail("optim", "parameter '", s.name, "': unknown optimizer '", r.optimizer, "'");
    any_cuda |= s.device == Device::cuda;
  }
  if (any_cuda) {
#ifdef MUONGPT_HAVE_CUDA
    CudaOptimizerOptions options;
    options.stream = slots.front().stream;
    for (const ParamSlot& s : slots)
      if (s.stream != options.stream)
        fail("optim", "parameter '", s.name, "' is on another CUDA stream than '",
             slots.front().name, "' (one optimizer runs on one stream)");
    // make_cuda_optimizer checks that every slot is on the GPU.
    return make_cuda_optimizer(routes, slots, cfg, comm, options);
#else
    fail("optim",
         "parameters are on the GPU but this muongpt was built without CUDA (no CUDA "
         "optimizer)");
#endif
  }
  return make_cpu_optimizer(routes, slots, cfg, comm);
}

std::vector<int> muon_owner_ranks(const std::vector<Route>& routes, int world_size) {
  MG_CHECK(world_size > 0);
  std::vector<int> owner(routes.size(), -1);
  // Groups in order of first appearance: (shape, dualizer) -> route indices.
  std::vector<std::vector<size_t>> groups;
  std::map<std::tuple<std::vector<int64_t>, std::string>, size_t> group_of;
  for (size_t i = 0; i < routes.size(); ++i) {
    if (routes[i].optimizer != "muon") continue;
    auto key = std::make_tuple(routes[i].shape, routes[i].dualizer);
    auto [it, fresh] = group_of.try_emplace(key, groups.size());
    if (fresh) groups.emplace_back();
    groups[it->second].push_back(i);
  }
  int64_t offset = 0;
  for (const auto& g : groups)
    for (size_t j = 0; j < g.size(); ++j) owner[g[j]] = int((offset++) % world_size);
  return owner;
}

}  // namespace muongpt
