// The staged communicator on a GPU ([device] comm = "mpi" for CUDA ranks; core/comm_staged.h),
// label gpu, skipping without one: its CUDA copies and stream order with a world of one, and
// `mpirun -np 2 muongpt train` with both ranks on one GPU, which NCCL refuses. That run is how the
// multi-rank CUDA path (shard plan, sharded CUDA optimizer, Gram sums over ranks, checkpoints of
// several ranks) runs on a one-GPU machine. The staging logic itself runs in every build, on the
// CPU with a stand-in device (tests/mpi/test_comm_mpi.cpp).
//
// Tolerance of the training test: that of the CPU world-size test (tests/mpi/test_train_mpi.cpp,
// RanksTimesAccumulationIsOneGlobalBatch), 1e-4 relative for losses and gradient norms and 1e-4
// relative Frobenius norm per checkpoint tensor: in fp32 two ranks of one micro-step each and one
// rank of two micro-steps differ only in summation order (the gradient sum, the norm's partial
// sums, the Grams' sums).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/comm.h"
#include "core/comm_staged.h"
#include "testing/cuda_testing.h"
#include "testing/subprocess.h"
#include "testing/tiny_run.h"
#include "testing/train_runs.h"

#ifdef MUONGPT_HAVE_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#include "core/cuda_util.h"
#endif

namespace muongpt {
namespace {

TEST(StagedCommCuda, DeviceBuffersGoThroughHostMemoryInStreamOrder) {
  MG_REQUIRE_GPU();
#ifdef MUONGPT_HAVE_CUDA
  auto comm = make_staged_comm(make_single_comm(), make_cuda_staging_device());
  EXPECT_EQ(comm->backend(), "single-staged");
  EXPECT_EQ(comm->buffers(), Device::cuda);
  cudaStream_t s = nullptr;
  MG_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const CudaStream stream = reinterpret_cast<CudaStream>(s);
  // Large enough that a copy not ordered after the fill on the stream would catch it unfinished.
  const int64_t n = int64_t(1) << 24;
  testing::DeviceArray<float> x(n), y(n), z(n);
  auto all_equal = [](const std::vector<float>& v, float want) {
    for (float e : v)
      if (e != want) return false;
    return true;
  };
  comm->set_stream(stream);
  fill_f32(x.get(), 3.0f, n, stream);
  comm->all_reduce_sum(x.get(), n,
                       DType::f32);  // a world of one: the values come back as they were
  EXPECT_TRUE(all_equal(x.download(), 3.0f));
  fill_f32(x.get(), 4.0f, n, stream);
  comm->reduce_scatter_sum(x.get(), y.get(), n, DType::f32);
  EXPECT_TRUE(all_equal(y.download(), 4.0f));
  fill_f32(y.get(), 5.0f, n, stream);
  comm->all_gather(y.get(), z.get(), n, DType::f32);
  EXPECT_TRUE(all_equal(z.download(), 5.0f));
  comm->broadcast(z.get(), n, DType::f32, 0);
  EXPECT_TRUE(all_equal(z.download(), 5.0f));
  // Without a stream the collective waits for the whole device, the non-blocking stream included.
  comm->set_stream(nullptr);
  fill_f32(x.get(), 6.0f, n, stream);
  comm->all_gather(x.get(), y.get(), n, DType::f32);
  EXPECT_TRUE(all_equal(y.download(), 6.0f));
  EXPECT_EQ(comm->sum(2.5), 2.5);
  EXPECT_TRUE(comm->any(true));
  comm.reset();  // frees its pinned buffer
  MG_CUDA(cudaStreamDestroy(s));
#endif
}

class StagedTrainCudaTest : public testing::TinyRunTest {
 protected:
  std::string train(const std::string& name, int accum, const std::string& extra) const {
    return "train --config " + config_ + " --set run.name=" + name +
           " --set data.grad_accum=" + std::to_string(accum) +
           " --set device.backend=cuda --set device.precision=fp32 " + extra;
  }
};

TEST_F(StagedTrainCudaTest, TwoRanksOnOneGpuTrainLikeOneRankWithTwiceTheAccumulation) {
  MG_REQUIRE_GPU();
#ifndef MUONGPT_MPIEXEC
  GTEST_SKIP() << "built without MPI: no mpirun to launch two ranks";
#else
  using testing::expect_same_curve;
  using testing::expect_same_tensors;
  using testing::read_jsonl;
  for (const char* preset : {"speedrun", "adamw"}) {
    const std::string p = std::string("--set optim.routing=") + preset;
    const std::string one = std::string(preset) + "_1x2", two = std::string(preset) + "_2x1";
    testing::CommandResult r = testing::run_muongpt(train(one, 2, p));
    ASSERT_EQ(r.status, 0) << r.out;
    r = testing::mpirun_muongpt(2, train(two, 1, p + " --set device.comm=mpi"));
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("distributed: 2 ranks over mpi-staged"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("on cuda:0 fp32"), std::string::npos) << r.out;
    expect_same_curve(read_jsonl(run_dir(two) / "metrics.jsonl"),
                      read_jsonl(run_dir(one) / "metrics.jsonl"), 1e-4, two);
    for (const char* file : {"model.safetensors", "optimizer.safetensors"})
      expect_same_tensors(checkpoint(two, 6) / file, checkpoint(one, 6) / file, 1e-4);
    testing::expect_same_telemetry(run_dir(two) / "ranks.jsonl", run_dir(one) / "ranks.jsonl", 1e-4,
                                   1e-3, two);
  }

  // The two ranks' checkpoint (written from the sharded CUDA optimizer's gathered state) resumed
  // by one rank with two micro-steps: the same curve and final weights.
  const std::string resumed = "speedrun_2x1_then_1x2";
  testing::CommandResult r = testing::run_muongpt(
      train(resumed, 2,
            "--set optim.routing=speedrun --resume " + checkpoint("speedrun_2x1", 3).string()));
  ASSERT_EQ(r.status, 0) << r.out;
  const auto full = read_jsonl(run_dir("speedrun_2x1") / "metrics.jsonl");
  ASSERT_EQ(full.size(), 6u);
  expect_same_curve(read_jsonl(run_dir(resumed) / "metrics.jsonl"), {full.begin() + 3, full.end()},
                    1e-4, "2 ranks -> 1");
  expect_same_tensors(checkpoint(resumed, 6) / "model.safetensors",
                      checkpoint("speedrun_2x1", 6) / "model.safetensors", 1e-4);
#endif
}

}  // namespace
}  // namespace muongpt
