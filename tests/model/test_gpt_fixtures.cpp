// Parity with the independent PyTorch reference (tools/reference): the fixtures hold bf16-exact
// weights, token ids, and the float64 reference's logits, loss and every gradient. Our float32
// path must match within 1e-4 relative (per tensor, relative to its largest entry); our float64
// path within 1e-6 (the golden values are stored in float32).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "testing/model_util.h"

namespace muongpt {
namespace {

std::string fixture(const std::string& name) {
  return std::string(MUONGPT_SOURCE_DIR) + "/tests/fixtures/" + name;
}

// max |a − b| / max |b|: the error relative to the tensor's scale.
template <typename T>
double rel_error(const T* a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, std::abs(double(a[i]) - b[i]));
    den = std::max(den, std::abs(b[i]));
  }
  return den > 0 ? num / den : num;
}

template <typename T>
void check_fixture(const std::string& file, double tol) {
  SafetensorsFile fx(fixture(file));
  const ModelConfig cfg = testing::config_from_text(fx.meta("config"));
  const int64_t B = std::stoll(fx.meta("B")), T_ = std::stoll(fx.meta("T"));
  Gpt<T> model(cfg, B, T_);

  // The fixture holds exactly our parameters, with our shapes.
  std::set<std::string> expected;
  for (size_t i = 0; i < model.specs().size(); ++i) {
    const ParamSpec& s = model.specs()[i];
    expected.insert("param." + s.name);
    expected.insert("grad." + s.name);
    ASSERT_EQ(fx.entry("param." + s.name).shape, s.shape) << s.name;
    auto values = fx.read<T>("param." + s.name);
    std::copy(values.begin(), values.end(), model.param(i).template data<T>());
  }
  for (const std::string& name : fx.names())
    if (name.starts_with("param.") || name.starts_with("grad."))
      EXPECT_TRUE(expected.count(name)) << "fixture has a tensor we do not: " << name;

  auto idx = fx.read<int32_t>("idx"), targets = fx.read<int32_t>("targets");
  model.zero_grads();
  const double loss = model.forward(idx.data(), targets.data());
  const double ref_loss = fx.read<double>("loss")[0];
  EXPECT_LT(std::abs(loss - ref_loss) / std::abs(ref_loss), tol) << loss << " vs " << ref_loss;
  EXPECT_LT(rel_error(model.logits().template data<T>(), fx.read<double>("logits")), tol)
      << "logits";

  model.backward();
  for (size_t i = 0; i < model.specs().size(); ++i) {
    const std::string& name = model.specs()[i].name;
    EXPECT_LT(rel_error(model.grad(i).template data<T>(), fx.read<double>("grad." + name)), tol)
        << "gradient of " << name;
  }
}

TEST(GptFixtures, Float32MatchesPyTorchTiny) {
  check_fixture<float>("gpt_tiny.safetensors", 1e-4);
}
TEST(GptFixtures, Float32MatchesPyTorchGains) {
  check_fixture<float>("gpt_tiny_gains.safetensors", 1e-4);
}
TEST(GptFixtures, Float64MatchesPyTorchTiny) {
  check_fixture<double>("gpt_tiny.safetensors", 1e-6);
}
TEST(GptFixtures, Float64MatchesPyTorchGains) {
  check_fixture<double>("gpt_tiny_gains.safetensors", 1e-6);
}

// The gated MLP (mlp = "swiglu", d_mlp = 192, gains): w3 and its gradient come from the file too.
TEST(GptFixtures, Float32MatchesPyTorchSwiglu) {
  check_fixture<float>("gpt_tiny_swiglu.safetensors", 1e-4);
}
TEST(GptFixtures, Float64MatchesPyTorchSwiglu) {
  check_fixture<double>("gpt_tiny_swiglu.safetensors", 1e-6);
}
TEST(GptFixtures, SwigluFixtureUsesTheGradCheckConfig) {
  SafetensorsFile fx(fixture("gpt_tiny_swiglu.safetensors"));
  EXPECT_EQ(testing::config_from_text(fx.meta("config")).to_toml(),
            testing::tiny_swiglu_config().to_toml());
  EXPECT_EQ(fx.entry("param.blocks.1.mlp.w3").shape, (std::vector<int64_t>{192, 64}));
}

TEST(GptFixtures, FixturesUseTheGradCheckConfigs) {
  // The gradient checks and the fixtures cover the same two models.
  for (auto [file, want] :
       {std::pair{"gpt_tiny.safetensors", testing::tiny_config()},
        std::pair{"gpt_tiny_gains.safetensors", testing::tiny_gains_config()}}) {
    SafetensorsFile fx(fixture(file));
    EXPECT_EQ(testing::config_from_text(fx.meta("config")).to_toml(), want.to_toml()) << file;
  }
}

}  // namespace
}  // namespace muongpt
