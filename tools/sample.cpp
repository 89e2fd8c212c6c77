// `muongpt sample --checkpoint DIR --prompt TEXT [--tokens N] [--temperature T] [--top-k K]
// [--seed S] [--vocab FILE]`: text from a trained model, decoded with a KV cache.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cxxopts.hpp>
#include <filesystem>
#include <iostream>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"
#include "data/tokenizer.h"
#include "model/decoder.h"
#include "tools/commands.h"
#include "train/checkpoint.h"

namespace muongpt {

namespace {

// Draws the next token from logits [V]: greedy when temperature is 0, else softmax(z / T)
// restricted to the top_k largest logits (0 = all).
int32_t sample_token(const float* logits, int64_t V, double temperature, int64_t top_k, Rng& rng) {
  if (temperature <= 0) return int32_t(std::max_element(logits, logits + V) - logits);
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  const int64_t k = top_k > 0 ? std::min(top_k, V) : V;
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  const double top = logits[order[0]];
  std::vector<double> p(k);
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += p[i] = std::exp((logits[order[i]] - top) / temperature);
  double u = rng.uniform() * sum;
  for (int64_t i = 0; i < k; ++i)
    if ((u -= p[i]) <= 0) return order[i];
  return order[k - 1];
}

std::string default_vocab() {
  if (const char* v = std::getenv("MUONGPT_VOCAB")) return v;
  return ".cache/gpt2.tiktoken";
}

}  // namespace

int cmd_sample(int argc, char** argv) {
  cxxopts::Options opts("muongpt sample", "Generate text from a checkpoint (KV-cache decoding).");
  opts.add_options()("c,checkpoint", "checkpoint directory, or a run directory (its latest)",
                     cxxopts::value<std::string>())(
      "p,prompt", "text to continue (empty: start after <|endoftext|>)",
      cxxopts::value<std::string>()->default_value(""))(
      "n,tokens", "tokens to generate", cxxopts::value<int64_t>()->default_value("100"))(
      "t,temperature", "softmax temperature; 0 = greedy",
      cxxopts::value<double>()->default_value("0.8"))(
      "k,top-k", "sample among the k most likely tokens; 0 = all",
      cxxopts::value<int64_t>()->default_value("50"))(
      "seed", "random seed", cxxopts::value<uint64_t>()->default_value("0"))(
      "vocab", "gpt2.tiktoken rank file (default: $MUONGPT_VOCAB or .cache/gpt2.tiktoken)",
      cxxopts::value<std::string>())("h,help", "show this help");
  auto args = parse_command_line(opts, argc, argv);
  if (args.count("help")) {
    std::cout << opts.help() << std::endl;
    return 0;
  }
  if (!args.count("checkpoint")) fail("sample", "--checkpoint DIR is required (see --help)");
  std::string dir = args["checkpoint"].as<std::string>();
  if (!std::filesystem::exists(std::filesystem::path(dir) / "state.json")) {
    std::string latest = latest_checkpoint(dir);
    if (latest.empty()) fail(dir, "neither a checkpoint nor a run directory with checkpoints");
    dir = latest;
  }
  const int64_t n = args["tokens"].as<int64_t>();
  const double temperature = args["temperature"].as<double>();
  const int64_t top_k = args["top-k"].as<int64_t>();
  if (n < 0) fail("sample", "--tokens must be >= 0");
  if (!(temperature >= 0)) fail("sample", "--temperature must be >= 0");
  if (top_k < 0) fail("sample", "--top-k must be >= 0");

  const Checkpoint ck(dir);
  const ModelConfig cfg = ck.model_config();
  const std::vector<float> weights = ck.weights(cfg);
  const Gpt2Tokenizer tok =
      Gpt2Tokenizer::load(args.count("vocab") ? args["vocab"].as<std::string>() : default_vocab());
  if (cfg.vocab_size < tok.vocab_size())
    fail(dir, "the model's vocabulary (", cfg.vocab_size, ") is smaller than GPT-2's");

  const std::string prompt = args["prompt"].as<std::string>();
  std::vector<int32_t> ids = {tok.eot()};
  tok.encode_append(prompt, ids);
  const int64_t context = std::min<int64_t>(cfg.seq_len, int64_t(ids.size()) + n);
  if (int64_t(ids.size()) > cfg.seq_len)
    fail("sample", "the prompt is ", ids.size() - 1, " tokens; the model's context is ",
         cfg.seq_len);
  GptDecoder decoder(cfg, weights.data(), context);
  Rng rng(args["seed"].as<uint64_t>());
  const float* logits = nullptr;
  for (int32_t id : ids) logits = decoder.push(id);
  std::vector<int32_t> generated;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t next =
        sample_token(logits, std::min(cfg.vocab_size, tok.vocab_size()), temperature, top_k, rng);
    generated.push_back(next);
    if (decoder.length() == decoder.capacity()) break;  // context full
    logits = decoder.push(next);
  }
  std::cout << prompt << tok.decode(generated) << std::endl;
  if (int64_t(generated.size()) < n)
    std::cerr << "muongpt: note: stopped after " << generated.size()
              << " tokens: the model's context (" << cfg.seq_len << ") is full\n";
  return 0;
}

}  // namespace muongpt
