#include "train/job.h"

#include <charconv>
#include <utility>

#include "core/device.h"
#include "core/error.h"
#include "optim/optimizer.h"

namespace muongpt {

void add_rank_options(cxxopts::Options& opts) {
  // Read as text and converted here: one error line names the flag and what was wrong.
  opts.add_options()("rank", "this process's rank (else from torchrun, OpenMPI or Slurm variables)",
                     cxxopts::value<std::string>())("world-size", "number of ranks (with --rank)",
                                                    cxxopts::value<std::string>())(
      "local-rank", "rank among the processes on this host (default: --rank)",
      cxxopts::value<std::string>());
}

RankFlags rank_flags(const cxxopts::ParseResult& args) {
  RankFlags flags;
  for (auto [name, field] : {std::pair{"rank", &flags.rank}, std::pair{"world-size", &flags.world},
                             std::pair{"local-rank", &flags.local_rank}}) {
    if (!args.count(name)) continue;
    const std::string text = args[name].as<std::string>();
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *field);
    if (ec != std::errc() || end != text.data() + text.size() || *field < 0)
      fail(std::string("--") + name, "expected a whole number of at least 0, got '", text, "'");
  }
  return flags;
}

std::unique_ptr<Comm> make_job_comm(const RankInfo& info, const RunConfig& cfg,
                                    const std::string& backend) {
  if (info.world == 1) return make_single_comm();
  if (backend == "cuda") {
    const int gpus = cuda_device_count();
    if (info.local_world > gpus)
      fail(cfg.file, "[device] backend = \"cuda\" with ", info.local_world, " ranks on ", info.host,
           " but ", gpus, " GPU", gpus == 1 ? "" : "s",
           " visible there: multi-GPU runs take one process per GPU");
    cuda_set_device(info.local_rank);
    return make_nccl_comm(info, cfg.device.comm_timeout);
  }
  if (!launched_by_mpi())
    fail(info.source, "rank ", info.rank, " of ", info.world,
         ": multi-process CPU runs exchange gradients through MPI: launch them with mpirun (or "
         "srun with MPI); torchrun launches need the CUDA backend");
  return make_mpi_comm(info, cfg.device.comm_timeout);
}

std::vector<int> telemetry_owners(const std::vector<Route>& routes, int world) {
  std::vector<int> owner = muon_owner_ranks(routes, world);
  for (size_t i = 0; i < owner.size(); ++i)
    if (owner[i] < 0) owner[i] = int(i % size_t(world));
  return owner;
}

}  // namespace muongpt
