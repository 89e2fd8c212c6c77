// The training run: `muongpt train`. One process, CPU backend (the CUDA and multi-process
// backends plug into the same loop).
#pragma once

#include <cstdint>
#include <string>

#include "train/config.h"

namespace muongpt {

struct TrainOptions {
  std::string resume;  // "" = fresh run, "latest" = newest checkpoint of the run, or a directory
};

struct TrainSummary {
  std::string run_dir;
  int64_t first_step = 0, last_step = 0;  // steps taken in this invocation: (first, last]
  double train_loss = 0, val_loss = 0;    // last values (val_loss NaN when never evaluated)
  double seconds = 0;
  bool interrupted = false;  // stopped by SIGINT/SIGTERM after saving a checkpoint
};

TrainSummary train(const RunConfig& cfg, const TrainOptions& options);

}  // namespace muongpt
