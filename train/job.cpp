#include "train/job.h"

#include <charconv>
#include <string>
#include <utility>

#include "core/comm_staged.h"
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

namespace {

// Several processes exchange through MPI only when mpirun (or srun with MPI) started them.
void require_mpi_launch(const RankInfo& info, const std::string& why) {
  if (!launched_by_mpi()) fail(info.source, "rank ", info.rank, " of ", info.world, ": ", why);
}

}  // namespace

std::unique_ptr<Comm> make_job_comm(const RankInfo& info, const RunConfig& cfg,
                                    const std::string& backend) {
  const std::string& comm = cfg.device.comm;
  if (comm == "nccl" && backend != "cuda")
    throw Error(cfg.file,
                "[device] comm = \"nccl\" moves GPU memory, but this run's backend is " + backend,
                "use comm = \"auto\" or \"mpi\", or backend = \"cuda\"");
  if (info.world == 1) return make_single_comm();
  if (backend == "cuda" && comm == "mpi") {
    // Any number of ranks per GPU: each collective goes through host memory and MPI.
    require_mpi_launch(info,
                       "[device] comm = \"mpi\" exchanges through MPI: launch the ranks with "
                       "mpirun (or srun with MPI)");
    const int gpus = cuda_device_count();
    if (gpus == 0)
      fail(cfg.file, "[device] backend = \"cuda\" but no GPU is visible (", describe_devices(),
           ")");
    cuda_set_device(info.local_rank % gpus);  // the model's GPU (model_options)
    return make_staged_comm(make_mpi_comm(info, cfg.device.comm_timeout),
                            make_cuda_staging_device());
  }
  if (backend == "cuda") {
    const int gpus = cuda_device_count();
    if (info.local_world > gpus)
      throw Error(cfg.file,
                  "[device] backend = \"cuda\" with " + std::to_string(info.local_world) +
                      " ranks on " + info.host + " but " + std::to_string(gpus) + " GPU" +
                      (gpus == 1 ? "" : "s") +
                      " visible there: multi-GPU runs take one process per GPU",
                  "NCCL refuses two ranks on one GPU; [device] comm = \"mpi\" lets ranks share "
                  "one, slowly, through host memory");
    cuda_set_device(info.local_rank);
    return make_nccl_comm(info, cfg.device.comm_timeout);
  }
  require_mpi_launch(info,
                     "multi-process CPU runs exchange gradients through MPI: launch them with "
                     "mpirun (or srun with MPI); torchrun launches need the CUDA backend");
  return make_mpi_comm(info, cfg.device.comm_timeout);
}

std::vector<int> telemetry_owners(const std::vector<Route>& routes, int world) {
  std::vector<int> owner = muon_owner_ranks(routes, world);
  for (size_t i = 0; i < owner.size(); ++i)
    if (owner[i] < 0) owner[i] = int(i % size_t(world));
  return owner;
}

}  // namespace muongpt
