// The training run: `muongpt train`. CPU backend, one process or several under mpirun/srun
// (data parallel: docs/distributed.md); the CUDA backend plugs into the same loop.
#pragma once

#include <cstdint>
#include <string>

#include "core/comm.h"
#include "train/config.h"

namespace muongpt {

struct TrainOptions {
  std::string resume;  // "" = fresh run, "latest" = newest checkpoint of the run, or a directory
  RankFlags ranks;     // explicit --rank/--world-size/--local-rank (else from the launcher)
};

struct TrainSummary {
  std::string run_dir;
  int64_t first_step = 0, last_step = 0;  // steps taken in this invocation: (first, last]
  double train_loss = 0, val_loss = 0;    // last values (val_loss NaN when never evaluated)
  double seconds = 0;
  bool interrupted = false;  // stopped by SIGINT/SIGTERM after saving a checkpoint
};

// Trains the config's run to [train] steps. With `comm`, the job's communicator that a caller
// already holds (a sweep runs its variants in one job: MPI is initialised once per process);
// without, one is made for this run.
TrainSummary train(const RunConfig& cfg, const TrainOptions& options, Comm* comm = nullptr);

}  // namespace muongpt
