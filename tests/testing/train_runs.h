// Comparing what two `muongpt train` runs wrote (metrics, telemetry, checkpoint tensors), and
// launching the binary under mpirun: shared by the CPU multi-rank tests (tests/mpi) and the
// GPU ones (tests/cuda).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "testing/subprocess.h"

namespace muongpt::testing {

inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Same steps, same losses (train every step, val where evaluated) to `tol` relative.
inline void expect_same_curve(const std::vector<nlohmann::json>& a,
                              const std::vector<nlohmann::json>& b, double tol,
                              const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i]["step"], b[i]["step"]) << what;
    EXPECT_EQ(a[i]["tokens"], b[i]["tokens"]) << what;
    for (const char* key : {"train_loss", "val_loss", "grad_norm"}) {
      ASSERT_EQ(a[i].contains(key), b[i].contains(key)) << what << " " << key;
      if (!a[i].contains(key)) continue;
      const double x = a[i][key], y = b[i][key];
      EXPECT_NEAR(x, y, tol * std::abs(y)) << what << " step " << a[i]["step"] << " " << key;
    }
  }
}

// Telemetry figures: both null (undefined, e.g. a zero gradient) or close.
inline void expect_near_or_null(const nlohmann::json& x, const nlohmann::json& y, double tol,
                                const std::string& what) {
  ASSERT_EQ(x.is_null(), y.is_null()) << what;
  if (y.is_null()) return;
  EXPECT_NEAR(x.get<double>(), y.get<double>(), tol * std::abs(y.get<double>())) << what;
}

// Every tensor of two checkpoint files: ‖a − b‖_F / ‖b‖_F ≤ tol.
inline void expect_same_tensors(const std::filesystem::path& a, const std::filesystem::path& b,
                                double tol) {
  SafetensorsFile fa(a.string()), fb(b.string());
  ASSERT_EQ(fa.names(), fb.names()) << a;
  for (const std::string& name : fa.names()) {
    const auto x = fa.read<float>(name), y = fb.read<float>(name);
    ASSERT_EQ(x.size(), y.size()) << name;
    double d = 0, n = 0;
    for (size_t j = 0; j < x.size(); ++j)
      d += double(x[j] - y[j]) * (x[j] - y[j]), n += double(y[j]) * y[j];
    EXPECT_LE(std::sqrt(d), tol * std::sqrt(n) + 1e-30) << a << " " << name;
  }
}

// Two runs' ranks.jsonl: the same records, the same token counts and weights, every activation's
// stable rank to `st_tol` and every weight's gradient nuclear rank to `nr_tol` relative.
inline void expect_same_telemetry(const std::filesystem::path& a, const std::filesystem::path& b,
                                  double st_tol, double nr_tol, const std::string& what) {
  const auto ranks = read_jsonl(a), ranks1 = read_jsonl(b);
  ASSERT_EQ(ranks.size(), ranks1.size()) << what;
  for (size_t i = 0; i < ranks.size(); ++i) {
    EXPECT_EQ(ranks[i]["tokens"], ranks1[i]["tokens"]) << what;
    ASSERT_EQ(ranks[i]["weights"].size(), ranks1[i]["weights"].size()) << what;
    ASSERT_EQ(ranks[i]["act"].size(), ranks1[i]["act"].size()) << what;
    for (auto& [key, act] : ranks1[i]["act"].items())
      expect_near_or_null(ranks[i]["act"][key]["st"], act["st"], st_tol, what + " " + key);
    for (auto& [key, w] : ranks1[i]["weights"].items())
      expect_near_or_null(ranks[i]["weights"][key]["grad_nr"], w["grad_nr"], nr_tol,
                          what + " " + key);
  }
}

#ifdef MUONGPT_MPIEXEC
// `muongpt args` under mpirun with np ranks (root and more ranks than cores allowed); the
// launcher is $MUONGPT_MPIEXEC when set (a bundle carried to the GPU machine), else the build's.
inline CommandResult mpirun_muongpt(int np, const std::string& args, const std::string& env = "") {
  const char* exe = std::getenv("MUONGPT_MPIEXEC");
  return run_muongpt(args, env + " OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " +
                               (exe && *exe ? exe : MUONGPT_MPIEXEC) + " -np " +
                               std::to_string(np) + " --oversubscribe");
}
#endif

}  // namespace muongpt::testing
