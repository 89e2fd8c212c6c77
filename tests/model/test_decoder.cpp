// The KV-cache decoder gives the same logits, position by position, as the full forward.
#include <gtest/gtest.h>

#include <vector>

#include "model/decoder.h"
#include "testing/model_util.h"

namespace muongpt {
namespace {

TEST(Decoder, MatchesFullForwardAtEveryPosition) {
  for (ModelConfig cfg :
       {testing::tiny_config(), testing::tiny_gains_config(), testing::tiny_swiglu_config()}) {
    const int64_t T = 16;
    Gpt<float> model(cfg, 1, T);
    testing::randomize_params(model, 9);
    Rng rng(4);
    std::vector<int32_t> idx(T), tgt(T, 0);
    for (auto& t : idx) t = int32_t(rng.below(cfg.vocab_size));
    model.forward(idx.data(), tgt.data());
    const float* full = model.logits().data<float>();  // [T, V]

    GptDecoder dec(cfg, model.params_flat().data<float>(), T);
    for (int64_t t = 0; t < T; ++t) {
      const float* z = dec.push(idx[t]);
      for (int64_t j = 0; j < cfg.vocab_size; ++j)
        ASSERT_NEAR(z[j], full[t * cfg.vocab_size + j], 2e-5) << "position " << t << " id " << j;
    }
    EXPECT_THROW(dec.push(1), Error);  // full
    dec.reset();
    EXPECT_THROW(dec.push(int32_t(cfg.vocab_size)), Error);
  }
}

}  // namespace
}  // namespace muongpt
