// This process's place in a training job, shared by `muongpt train` and `muongpt bench`: the
// launcher flags, the communicator between the ranks, and which rank computes which weight's
// telemetry (docs/distributed.md).
#pragma once

#include <cxxopts.hpp>
#include <memory>
#include <string>
#include <vector>

#include "core/comm.h"
#include "optim/routing.h"
#include "train/config.h"

namespace muongpt {

// --rank, --world-size and --local-rank (for launches without torchrun, OpenMPI or Slurm).
void add_rank_options(cxxopts::Options& opts);
RankFlags rank_flags(const cxxopts::ParseResult& args);

// The communicator for `info` and [device] comm: none for a world of one; with "auto", NCCL
// between GPUs (one process per GPU, the rank's GPU its local rank) and MPI between CPU processes;
// "nccl" the same (an error on the CPU backend); "mpi" MPI for CPU ranks and, for CUDA ranks, MPI
// staged through host memory (core/comm_staged.h), any number of ranks per GPU (rank's GPU: local
// rank mod GPUs). Clear errors for more NCCL ranks on a host than GPUs there, and for several
// processes that need MPI but were not launched through it.
std::unique_ptr<Comm> make_job_comm(const RankInfo& info, const RunConfig& cfg,
                                    const std::string& backend);

// Which rank computes each weight's telemetry spectra: a Muon matrix's owner, else round robin.
std::vector<int> telemetry_owners(const std::vector<Route>& routes, int world);

}  // namespace muongpt
