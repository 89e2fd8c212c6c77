// The [model] section: defaults, round trip, and one clear error per bad value.
#include <gtest/gtest.h>

#include "core/error.h"
#include "testing/model_util.h"

namespace muongpt {
namespace {

std::string error_of(const std::string& text) {
  try {
    testing::config_from_text(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelConfig, DefaultsAreTheSpeedrunModel) {
  ModelConfig c = testing::config_from_text("[model]\n");
  EXPECT_EQ(c.vocab_padded(), 50304);
  EXPECT_EQ(c.n_head(), 6);
  EXPECT_DOUBLE_EQ(c.attention_scale(), 0.12);
  EXPECT_EQ(param_count(param_specs(c)), 2 * 50304 * 768 + 12 * 12 * 768 * 768);
}

// docs/bench.md's worked example: the quickstart model (L 4, d 128, T 128, V 50257 padded to
// 50304) has N = 4·12·128² + 50257·128 parameters in matrix products, 4.37e7 FLOP per token.
TEST(ModelConfig, TrainFlopsPerTokenCountsTheMatrixProducts) {
  ModelConfig c = testing::config_from_text(
      "[model]\nvocab_size = 50257\nn_layer = 4\nd_model = 128\nd_head = 64\nseq_len = 128\n");
  const auto specs = param_specs(c);
  EXPECT_EQ(matmul_param_count(c, specs), 4 * 12 * 128 * 128 + 50257 * 128);
  EXPECT_DOUBLE_EQ(train_flops_per_token(c, specs, 128),
                   6.0 * (4 * 12 * 128 * 128 + 50257 * 128) + 6.0 * 4 * 128 * 128);
  EXPECT_DOUBLE_EQ(train_flops_per_token(c, specs, 128), 43709184.0);
}

// mlp = "swiglu" adds w3 [F, d] right after w1 in every block (initialised like w1), and its
// products count in the FLOPs; d_mlp sets F for either MLP (0 = mlp_ratio · d).
TEST(ModelConfig, SwigluAddsW3AfterW1AndItsFlops) {
  const std::string base =
      "[model]\nvocab_size = 50257\nn_layer = 4\nd_model = 128\nd_head = 64\nseq_len = 128\n";
  const ModelConfig relu2 = testing::config_from_text(base);
  EXPECT_EQ(relu2.mlp, "relu2");
  EXPECT_EQ(relu2.d_mlp, 0);
  EXPECT_EQ(relu2.mlp_width(), 512);
  EXPECT_FALSE(relu2.swiglu());
  EXPECT_EQ(testing::config_from_text(base + "d_mlp = 200\n").mlp_width(), 200);

  const ModelConfig c = testing::config_from_text(base + "mlp = \"swiglu\"\nd_mlp = 320\n");
  EXPECT_TRUE(c.swiglu());
  EXPECT_EQ(c.mlp_width(), 320);
  const auto specs = param_specs(c);
  const int w1 = find_param(specs, "blocks.2.mlp.w1"), w3 = find_param(specs, "blocks.2.mlp.w3");
  ASSERT_GE(w1, 0);
  EXPECT_EQ(w3, w1 + 1);
  EXPECT_EQ(specs[size_t(w3) + 1].name, "blocks.2.mlp.w2");
  EXPECT_EQ(specs[size_t(w3)].shape, (std::vector<int64_t>{320, 128}));
  EXPECT_EQ(specs[size_t(w3)].init_str(), specs[size_t(w1)].init_str());
  EXPECT_EQ(specs[size_t(w3) + 1].shape, (std::vector<int64_t>{128, 320}));
  EXPECT_EQ(find_param(param_specs(relu2), "blocks.0.mlp.w3"), -1);
  // Per block 4·d² (attention) + 3·F·d (w1, w3, w2), plus the head's V used rows.
  const int64_t n = 4 * (4 * 128 * 128 + 3 * 320 * 128) + 50257 * 128;
  EXPECT_EQ(matmul_param_count(c, specs), n);
  EXPECT_DOUBLE_EQ(train_flops_per_token(c, specs, 128), 6.0 * n + 6.0 * 4 * 128 * 128);
  EXPECT_EQ(param_count(specs), n + 50304 * 128 + (50304 - 50257) * 128);
}

TEST(ModelConfig, ToTomlRoundTrips) {
  for (ModelConfig c :
       {testing::tiny_config(), testing::tiny_gains_config(), testing::tiny_swiglu_config()}) {
    ModelConfig back = testing::config_from_text(c.to_toml());
    EXPECT_EQ(back.to_toml(), c.to_toml());
  }
  EXPECT_DOUBLE_EQ(testing::tiny_gains_config().attention_scale(), 1.0 / std::sqrt(32.0));
}

TEST(ModelConfig, ErrorsNameTheKey) {
  EXPECT_EQ(error_of("[model]\nd_modle = 64\n"), "test-config: [model] unknown key 'd_modle'");
  EXPECT_EQ(error_of("[model]\nd_model = 100\nd_head = 64\n"),
            "test-config: [model] d_model = 100: must be divisible by d_head (64)");
  EXPECT_EQ(error_of("[model]\nn_layer = -2\n"),
            "test-config: [model] n_layer = -2: must be positive");
  EXPECT_EQ(error_of("[model]\nn_layer = 2.5\n"),
            "test-config: [model] n_layer: expected an integer, found a float");
  EXPECT_EQ(error_of("[model]\nnorm_gains = 1\n"),
            "test-config: [model] norm_gains: expected true or false, found an integer");
  EXPECT_EQ(
      error_of("[model]\nattn_scale = \"big\"\n"),
      "test-config: [model] attn_scale: expected a number or \"1/sqrt(d_head)\", found \"big\"");
  EXPECT_EQ(error_of("[model]\nsoftcap = -1.0\n"),
            "test-config: [model] softcap = -1: must be >= 0 (0 turns it off)");
  EXPECT_EQ(error_of("[model]\nmlp = \"geglu\"\n"),
            "test-config: [model] mlp = \"geglu\": expected \"relu2\" or \"swiglu\"");
  EXPECT_EQ(error_of("[model]\nd_mlp = -1\n"),
            "test-config: [model] d_mlp = -1: must be >= 0 (0 = mlp_ratio * d_model)");
  EXPECT_EQ(error_of("model = 3\n"), "test-config: [model] must be a table");
  EXPECT_NE(error_of("[model\n").find("TOML syntax error at line 1"), std::string::npos);
}

}  // namespace
}  // namespace muongpt
