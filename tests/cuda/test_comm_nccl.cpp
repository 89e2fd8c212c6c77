// The NCCL communicator with one rank: the same code path a multi-GPU run takes (non-blocking
// init, polled collectives, staging for host values). Skips without a GPU.
#include <gtest/gtest.h>

#include <vector>

#include "core/comm.h"
#include "testing/cuda_testing.h"

namespace muongpt {
namespace {

TEST(NcclComm, OneRankCollectivesOnDeviceMemory) {
  MG_REQUIRE_GPU();
  if (!built_with_nccl()) GTEST_SKIP() << "built without NCCL";
#ifdef MUONGPT_HAVE_CUDA
  RankInfo info;  // one rank
  auto comm = make_nccl_comm(info, 60);
  EXPECT_EQ(comm->backend(), "nccl");
  EXPECT_EQ(comm->buffers(), Device::cuda);
  testing::DeviceArray<float> x(std::vector<float>{1, 2, 3, 4, 5});
  testing::DeviceArray<float> y(5);
  comm->all_reduce_sum(x.get(), 5, DType::f32);
  comm->reduce_scatter_sum(x.get(), y.get(), 5, DType::f32);
  EXPECT_EQ(y.download(), (std::vector<float>{1, 2, 3, 4, 5}));
  testing::DeviceArray<float> z(5);
  comm->all_gather(y.get(), z.get(), 5, DType::f32);
  EXPECT_EQ(z.download(), (std::vector<float>{1, 2, 3, 4, 5}));
  comm->broadcast(z.get(), 5, DType::f32, 0);
  comm->barrier();
  EXPECT_EQ(comm->sum(2.5), 2.5);
  EXPECT_FALSE(comm->any(false));
  EXPECT_EQ(comm->all_gather_strings("nccl"), std::vector<std::string>{"nccl"});
#endif
}

}  // namespace
}  // namespace muongpt
