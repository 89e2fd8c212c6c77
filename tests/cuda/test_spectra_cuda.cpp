// Telemetry's linear algebra on the GPU (train/spectra_cuda.cu) against the host reference
// (train/spectra.cpp: matrix_ranks, gram_stable_rank), in both eigensolver modes.
//
// Tolerances. Squared norms: both sides sum the same float32 values in float64, in different
// orders: 1e-12 relative. Spectra: both take float64 eigenvalues of a float32 Gram, formed by
// cuBLASLt on one side and OpenBLAS on the other; Gram entries differ by ~1e-7 relative, which
// moves λ_max by about as much and the nuclear norm (a sum of square roots, dominated by the
// large eigenvalues of these Gaussian matrices) by ~1e-6: 1e-4 relative, a 100× margin that a
// wrong transpose, size or batch offset (O(1) errors) cannot pass.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/comm.h"
#include "core/cuda_util.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "testing/cuda_testing.h"
#include "testing/thread_comm.h"
#include "train/spectra.h"

#ifdef MUONGPT_HAVE_CUDA
#include "train/spectra_cuda.h"

namespace muongpt {
namespace {

using testing::DeviceArray;

std::vector<float> gaussian(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = float(rng.normal());
  return v;
}

void expect_rel(double got, double want, double tol, const std::string& what) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what << ": " << got;
    return;
  }
  EXPECT_NEAR(got, want, tol * std::abs(want)) << what;
}

// Runs the body once per eigensolver mode (MUONGPT_TELEMETRY_EIG), restoring the environment.
template <class Body>
void for_each_mode(Body body) {
  for (const char* mode : {"batched", "loop"}) {
    setenv("MUONGPT_TELEMETRY_EIG", mode, 1);
    body(std::string(mode));
  }
  unsetenv("MUONGPT_TELEMETRY_EIG");
}

TEST(CudaSpectra, MatrixRanksMatchTheHost) {
  MG_REQUIRE_GPU();
  // Tall, wide, square, a row, a column, a zero matrix, one with a NaN, three finite ones of one
  // Gram size (one batch: 7, 9 and 10), one whose float32 Gram overflows though its float64 norm
  // is finite (11: defined norm, NaN ranks, nothing non-finite reaches the eigensolver), most
  // sizes no multiple of a tile.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {64, 96}, {96, 64}, {77, 77},   {1, 50},  {50, 1},  {33, 17},
      {17, 33}, {40, 17}, {200, 130}, {25, 17}, {17, 60}, {30, 20}};
  std::vector<std::vector<float>> host;
  for (size_t i = 0; i < shapes.size(); ++i)
    host.push_back(gaussian(shapes[i].first * shapes[i].second, 100 + i));
  std::fill(host[5].begin(), host[5].end(), 0.0f);
  host[6][7] = NAN;
  for (float& x : host[11]) x *= 1e20f;
  for_each_mode([&](const std::string& mode) {
    std::vector<std::unique_ptr<DeviceArray<float>>> dev;
    std::vector<MatrixRef> refs;
    for (size_t i = 0; i < shapes.size(); ++i) {
      dev.push_back(std::make_unique<DeviceArray<float>>(host[i]));
      refs.push_back({dev.back()->get(), shapes[i].first, shapes[i].second});
    }
    auto spectra = make_cuda_spectra({}, shapes, nullptr);
    EXPECT_GE(spectra->memory_bytes(), 130u * 130 * 8);  // at least the largest float64 Gram
    const std::vector<MatrixRanks> got = spectra->ranks(refs, /*nuclear=*/true);
    const std::vector<MatrixRanks> top = spectra->ranks(refs, /*nuclear=*/false);  // Lanczos
    ASSERT_EQ(got.size(), shapes.size());
    ASSERT_EQ(top.size(), shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      const MatrixRanks want = matrix_ranks(host[i].data(), shapes[i].first, shapes[i].second);
      const std::string what = mode + " matrix " + std::to_string(i);
      expect_rel(got[i].fro2, want.fro2, 1e-12, what + " fro2");
      expect_rel(got[i].spec2, want.spec2, 1e-4, what + " spec2");
      expect_rel(got[i].nuclear, want.nuclear, 1e-4, what + " nuclear");
      expect_rel(got[i].stable_rank(), want.stable_rank(), 1e-4, what + " st");
      expect_rel(got[i].nuclear_rank(), want.nuclear_rank(), 1e-4, what + " nr");
      expect_rel(top[i].fro2, want.fro2, 1e-12, what + " fro2 (top only)");
      expect_rel(top[i].spec2, want.spec2, 1e-4, what + " spec2 (top only)");
      if (want.fro2 > 0) EXPECT_TRUE(std::isnan(top[i].nuclear)) << what;
    }
    EXPECT_EQ(got[5].fro2, 0.0);  // zero: defined norm, undefined ranks
    EXPECT_TRUE(std::isnan(got[5].stable_rank()));
    EXPECT_TRUE(std::isnan(got[6].fro2));  // NaN: nothing reaches the eigensolver
    EXPECT_TRUE(std::isnan(got[6].nuclear_rank()));
    for (const MatrixRanks& r : {got[11], top[11]}) {  // float32 Gram overflow
      EXPECT_TRUE(std::isfinite(r.fro2));
      EXPECT_TRUE(std::isnan(r.spec2));
      EXPECT_TRUE(std::isnan(r.nuclear));
    }
  });
}

TEST(CudaSpectra, DistancesMatchTheHost) {
  MG_REQUIRE_GPU();
  const auto a = gaussian(600 * 501, 1), b = gaussian(600 * 501, 2);
  DeviceArray<float> da(a), db(b);
  auto spectra = make_cuda_spectra({}, {{600, 501}, {600, 501}}, nullptr);
  const auto got = spectra->distances2({{da.get(), 600, 501}, {db.get(), 600, 501}},
                                       {{db.get(), 600, 501}, {db.get(), 600, 501}});
  double want = 0;
  for (size_t i = 0; i < a.size(); ++i) want += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  EXPECT_NEAR(got[0], want, 1e-12 * want);
  EXPECT_EQ(got[1], 0.0);
  EXPECT_EQ(spectra->distances2({{da.get(), 600, 501}}, {{db.get(), 600, 501}})[0], got[0]);
}

// Gram stable ranks (λ_max by Lanczos on the GPU, a full eigensolve on the host): micro-batches
// accumulate, bf16 activations work, Grams of two widths (3072: more than the 160 Lanczos steps
// a Gram gets, though rank 96 here; 40: fewer), zero and non-finite Grams give NaN. The
// reference uses the small Gram A·Aᵀ (rows × rows, the same non-zero eigenvalues and trace) so
// that the host solve stays cheap.
TEST(CudaSpectra, GramStableRanksMatchTheHost) {
  MG_REQUIRE_GPU();
  const int64_t rows = 48, wide = 3072, narrow = 40;
  const std::vector<int64_t> widths = {wide, narrow, wide, wide, wide, narrow, narrow};
  std::vector<std::vector<float>> acts;  // per Gram: two micro-batches of [rows, width]
  for (size_t k = 0; k < widths.size(); ++k) acts.push_back(gaussian(2 * rows * widths[k], 7 + k));
  for (float& x : acts[1]) x *= 1e-3f;  // a small scale: relative accuracy, not absolute
  acts[1][0] = 0.0f;
  std::fill(acts[5].begin(), acts[5].end(), 0.0f);  // zero Gram
  acts[6][3] = INFINITY;                            // non-finite Gram

  // Host reference: st of the accumulated AᵀA through the [2·rows]² Gram of the stacked rows.
  auto reference = [&](size_t k, bool bf16) {
    std::vector<float> a = acts[k];
    if (bf16)
      for (float& x : a) x = bf16_to_float(float_to_bf16(x));
    const int64_t n = 2 * rows, w = widths[k];
    std::vector<double> C(size_t(n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t c = 0; c < w; ++c) s += double(a[size_t(i * w + c)]) * a[size_t(j * w + c)];
        C[size_t(i * n + j)] = s;
      }
    return gram_stable_rank(C, n);
  };

  for (bool bf16 : {false, true})
    for_each_mode([&](const std::string& mode) {
      auto spectra = make_cuda_spectra(widths, {}, nullptr);
      spectra->zero_grams();
      std::vector<std::unique_ptr<DeviceArray<float>>> f32;
      std::vector<std::unique_ptr<DeviceArray<uint16_t>>> b16;
      for (int micro = 0; micro < 2; ++micro)
        for (size_t k = 0; k < widths.size(); ++k) {
          const int64_t w = widths[k];
          std::vector<float> part(acts[k].begin() + micro * rows * w,
                                  acts[k].begin() + (micro + 1) * rows * w);
          f32.push_back(std::make_unique<DeviceArray<float>>(part));
          void* data = f32.back()->get();
          if (bf16) {
            b16.push_back(std::make_unique<DeviceArray<uint16_t>>(rows * w));
            convert(b16.back()->get(), DType::bf16, data, DType::f32, rows * w, nullptr);
            data = b16.back()->get();
          }
          spectra->add_gram(k,
                            Tensor(data, bf16 ? DType::bf16 : DType::f32, {rows, w}, Device::cuda));
        }
      std::vector<size_t> ks(widths.size());
      for (size_t k = 0; k < ks.size(); ++k) ks[k] = k;
      const std::vector<double> st = spectra->gram_stable_ranks(ks);
      ASSERT_EQ(st.size(), widths.size());
      for (size_t k = 0; k < widths.size(); ++k)
        expect_rel(st[k], reference(k, bf16), 1e-4,
                   mode + (bf16 ? " bf16" : " f32") + " Gram " + std::to_string(k));
      EXPECT_TRUE(std::isnan(st[5]));
      EXPECT_TRUE(std::isnan(st[6]));
      EXPECT_GT(st[0], 1.0);
      // The Grams survive the solve and start again from zero.
      // (Alone rather than in a batch: the batched products may round differently.)
      EXPECT_NEAR(spectra->gram_stable_ranks({2})[0], st[2], 1e-9 * st[2]);
      spectra->zero_grams();
      EXPECT_TRUE(std::isnan(spectra->gram_stable_ranks({0})[0]));
    });
}

// A full-rank Gaussian activation: its Gram's top eigenvalues crowd together (Marchenko–Pastur
// edge), the slow case for Lanczos (about 80 steps at width 512 in a NumPy model of the same
// algorithm). Reference: the float64 Gram and a full host eigensolve; 1e-5 covers the GPU's
// float32 Gram.
TEST(CudaSpectra, LanczosConvergesOnAClusteredSpectrum) {
  MG_REQUIRE_GPU();
  const int64_t rows = 2048, w = 512;
  const auto a = gaussian(rows * w, 99);
  std::vector<double> C(size_t(w * w));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < w; ++i) {
      const double x = a[size_t(r * w + i)];
      for (int64_t j = 0; j < w; ++j) C[size_t(i * w + j)] += x * a[size_t(r * w + j)];
    }
  const double want = gram_stable_rank(C, w);
  DeviceArray<float> dev(a);
  auto spectra = make_cuda_spectra({w}, {}, nullptr);
  spectra->zero_grams();
  spectra->add_gram(0, Tensor(dev.get(), DType::f32, {rows, w}, Device::cuda));
  EXPECT_NEAR(spectra->gram_stable_ranks({0})[0], want, 1e-5 * want);
}

// Lanczos on Grams whose Krylov space is small: rows that are scaled unit vectors give exact
// float64 diagonal Grams, diag(9, 4, 1, 0, …) (three distinct eigenvalues above zero: the basis
// breaks down after a few steps, before the first check at 8) and 3·I (breaks down after the
// first step). Both stable ranks are known exactly: 14/9 and the width.
TEST(CudaSpectra, LanczosStopsAtAnInvariantSubspace) {
  MG_REQUIRE_GPU();
  const int64_t w0 = 40, w1 = 24;
  std::vector<float> a0(size_t(3 * w0), 0.0f), a1(size_t(w1 * w1), 0.0f);
  for (int64_t r = 0; r < 3; ++r) a0[size_t(r * w0 + r)] = float(3 - r);  // rows 3e₀, 2e₁, e₂
  for (int64_t r = 0; r < w1; ++r) a1[size_t(r * w1 + r)] = std::sqrt(3.0f);
  DeviceArray<float> d0(a0), d1(a1);
  for_each_mode([&](const std::string& mode) {
    auto spectra = make_cuda_spectra({w0, w1}, {}, nullptr);
    spectra->zero_grams();
    spectra->add_gram(0, Tensor(d0.get(), DType::f32, {3, w0}, Device::cuda));
    spectra->add_gram(1, Tensor(d1.get(), DType::f32, {w1, w1}, Device::cuda));
    const std::vector<double> st = spectra->gram_stable_ranks({0, 1});
    EXPECT_NEAR(st[0], 14.0 / 9.0, 1e-9) << mode;
    EXPECT_NEAR(st[1], double(w1), 1e-6 * double(w1)) << mode;  // √3² rounds in float32
  });
}

// Several GPUs: sum_grams() all-reduces the accumulators over the ranks (two ranks as threads
// on this GPU, tests/testing/thread_comm.h), so every rank's stable ranks cover every rank's
// tokens: the same as one rank that saw both micro-batches (the float64 sums are added in the
// same order, so equal to rounding of the Lanczos alone).
TEST(CudaSpectra, SumGramsCoversEveryRanksTokens) {
  MG_REQUIRE_GPU();
  const int64_t rows = 64;
  const std::vector<int64_t> widths = {96, 40};
  auto act = [&](int rank, size_t k) { return gaussian(rows * widths[k], 300 + 10 * rank + k); };
  std::vector<double> want;
  {
    auto one = make_cuda_spectra(widths, {}, nullptr);
    one->zero_grams();
    std::vector<std::unique_ptr<DeviceArray<float>>> keep;
    for (int rank = 0; rank < 2; ++rank)
      for (size_t k = 0; k < widths.size(); ++k) {
        keep.push_back(std::make_unique<DeviceArray<float>>(act(rank, k)));
        one->add_gram(k, Tensor(keep.back()->get(), DType::f32, {rows, widths[k]}, Device::cuda));
      }
    want = one->gram_stable_ranks({0, 1});
  }
  testing::ThreadGroup group(2);
  testing::on_rank_threads(2, [&](int rank) {
    cuda_set_device(0);
    testing::ThreadComm comm(group, rank, Device::cuda, testing::device_staging_copy);
    auto spectra = make_cuda_spectra(widths, {}, nullptr);
    spectra->zero_grams();
    std::vector<std::unique_ptr<DeviceArray<float>>> keep;
    for (size_t k = 0; k < widths.size(); ++k) {
      keep.push_back(std::make_unique<DeviceArray<float>>(act(rank, k)));
      spectra->add_gram(k, Tensor(keep.back()->get(), DType::f32, {rows, widths[k]}, Device::cuda));
    }
    const std::vector<double> alone = spectra->gram_stable_ranks({0, 1});
    spectra->sum_grams(comm);
    const std::vector<double> st = spectra->gram_stable_ranks({0, 1});
    for (size_t k = 0; k < widths.size(); ++k) {
      EXPECT_NEAR(st[k], want[k], 1e-9 * want[k]) << "rank " << rank << " Gram " << k;
      EXPECT_GT(std::abs(alone[k] - want[k]), 1e-6 * want[k]);  // the sum changed something
    }
  });
  testing::ThreadGroup host_group(2);
  testing::ThreadComm host_comm(host_group, 0);  // host buffers: refused before any collective
  auto spectra = make_cuda_spectra(widths, {}, nullptr);
  EXPECT_ANY_THROW(spectra->sum_grams(host_comm));
}

TEST(CudaSpectra, RejectsWrongActivationsAndModes) {
  MG_REQUIRE_GPU();
  auto spectra = make_cuda_spectra({16}, {}, nullptr);
  std::vector<float> host(32);
  EXPECT_ANY_THROW(spectra->add_gram(0, Tensor(host.data(), DType::f32, {2, 16})));  // host
  DeviceArray<float> dev(32);
  EXPECT_ANY_THROW(spectra->add_gram(0, Tensor(dev.get(), DType::f32, {4, 8}, Device::cuda)));
  EXPECT_ANY_THROW(spectra->add_gram(1, Tensor(dev.get(), DType::f32, {2, 16}, Device::cuda)));
  setenv("MUONGPT_TELEMETRY_EIG", "qr", 1);
  EXPECT_ANY_THROW(make_cuda_spectra({16}, {}, nullptr));
  unsetenv("MUONGPT_TELEMETRY_EIG");
}

}  // namespace
}  // namespace muongpt
#endif
