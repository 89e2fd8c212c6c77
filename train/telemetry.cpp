#include "train/telemetry.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/comm.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/linalg.h"

namespace muongpt {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Splits "blocks.3.attn.wq" into ("blocks.3.", "attn.wq"); non-block names give ("", name).
std::pair<std::string, std::string> split_block(const std::string& name) {
  if (!name.starts_with("blocks.")) return {"", name};
  size_t dot = name.find('.', 7);
  return {name.substr(0, dot + 1), name.substr(dot + 1)};
}

// JSON number, or null for values that are not finite (e.g. a ratio over a zero norm).
nlohmann::json num(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}

}  // namespace

MatrixRanks matrix_ranks(const float* G, int64_t m, int64_t n) {
  MatrixRanks r;
  for (int64_t i = 0; i < m * n; ++i) r.fro2 += double(G[i]) * double(G[i]);
  if (!std::isfinite(r.fro2)) return {NAN, NAN, NAN};  // reported as null, never fed to LAPACK
  if (r.fro2 == 0) return r;
  const int64_t s = std::min(m, n);
  std::vector<float> gf(static_cast<size_t>(s * s));
  if (n <= m)
    gram(m, n, 1.0f, G, n, 0.0f, gf.data(), n);  // GᵀG [n, n]
  else
    gemm(false, true, m, m, n, 1.0f, G, n, G, n, 0.0f, gf.data(), m);  // GGᵀ [m, m]
  std::vector<double> C(gf.begin(), gf.end()), w(static_cast<size_t>(s));
  for (double c : C)
    if (!std::isfinite(c)) return {r.fro2, NAN, NAN};  // float32 Gram overflowed
  sym_eigvals(s, C.data(), w.data());
  for (double e : w) r.nuclear += std::sqrt(std::max(e, 0.0));
  r.spec2 = std::max(w.back(), 0.0);
  return r;
}

double gram_stable_rank(const std::vector<double>& C, int64_t n) {
  double trace = 0;
  for (int64_t i = 0; i < n; ++i) trace += C[i * n + i];
  for (double c : C)
    if (!std::isfinite(c)) return NAN;  // reported as null, never fed to LAPACK
  if (trace <= 0) return NAN;           // a zero activation: undefined
  std::vector<double> copy = C, w(static_cast<size_t>(n));
  sym_eigvals(n, copy.data(), w.data());
  return w.back() > 0 ? trace / w.back() : NAN;
}

std::string input_activation(const std::string& param) {
  if (param == "embed.weight") return "tokens";
  if (param == "head.weight") return "final_in";
  auto [block, field] = split_block(param);
  if (field == "attn.wq" || field == "attn.wk" || field == "attn.wv") return block + "attn_in";
  if (field == "attn.wo") return block + "attn_out";
  if (field == "mlp.w1") return block + "mlp_in";
  if (field == "mlp.w2") return block + "mlp_act";
  return "";
}

std::string alt_input_activation(const std::string& param) {
  auto [block, field] = split_block(param);
  if (field == "attn.wo") return block + "attn_in";
  if (field == "mlp.w2") return block + "mlp_pre";
  return "";
}

RankTelemetry::RankTelemetry(TrainModel& model, int64_t every, Comm* comm, std::vector<int> owner)
    : every_(every), comm_(comm), owner_(std::move(owner)) {
  if (every <= 0) return;
  const ModelConfig& c = model.config();
  auto add = [&](std::string key, std::string kind, int64_t layer, int64_t width) {
    acts_.push_back({std::move(key), std::move(kind), layer, width,
                     std::vector<double>(static_cast<size_t>(width * width))});
  };
  add("embed_out", "embed_out", 0, c.d_model);
  for (int64_t l = 0; l < c.n_layer; ++l)
    for (std::string_view kind : Gpt<float>::kBlockActivations)
      add("blocks." + std::to_string(l) + "." + std::string(kind), std::string(kind), l,
          kind.starts_with("mlp_") && kind != "mlp_in" ? c.d_mlp() : c.d_model);
  add("final_in", "final_in", 0, c.d_model);
  token_counts_.assign(static_cast<size_t>(c.vocab_size), 0.0);
  const int64_t widest = std::max(c.d_model, c.d_mlp());
  gram_scratch_.resize(static_cast<size_t>(widest * widest));
}

bool RankTelemetry::mine(size_t param) const {
  return owner_.empty() || !comm_ || owner_[param] == comm_->rank();
}

void RankTelemetry::begin() {
  for (Act& a : acts_) std::fill(a.gram.begin(), a.gram.end(), 0.0);
  std::fill(token_counts_.begin(), token_counts_.end(), 0.0);
  weights_ = nlohmann::json::object();
  seconds_ = 0;
}

void RankTelemetry::add_activations(TrainModel& model, const int32_t* idx, int64_t n_tokens) {
  const auto t0 = Clock::now();
  for (Act& a : acts_) {
    Tensor x = model.activation_host(a.kind, a.layer);  // [N, width]
    const int64_t w = a.width;
    gram(x.size(0), w, 1.0f, x.data<float>(), w, 0.0f, gram_scratch_.data(), w);
    for (int64_t i = 0; i < w * w; ++i) a.gram[i] += double(gram_scratch_[i]);
  }
  for (int64_t i = 0; i < n_tokens; ++i) token_counts_[idx[i]] += 1;
  seconds_ += seconds_since(t0);
}

void RankTelemetry::add_gradients(TrainModel& model) {
  const auto t0 = Clock::now();
  const float* grads = model.grads_host();  // [P], parameters in specs() order
  int64_t offset = 0;
  for (size_t i = 0; i < model.specs().size(); offset += model.specs()[i].numel(), ++i) {
    const ParamSpec& s = model.specs()[i];
    if (s.shape.size() != 2 || !mine(i)) continue;
    MatrixRanks r = matrix_ranks(grads + offset, s.shape[0], s.shape[1]);
    weights_[s.name] = {{"input", input_activation(s.name)},
                        {"grad_nr", num(r.nuclear_rank())},
                        {"grad_st", num(r.stable_rank())}};
  }
  seconds_ += seconds_since(t0);
}

nlohmann::json RankTelemetry::finish(
    TrainModel& model, int64_t step,
    const std::function<std::span<const float>(size_t)>& update_of) {
  const auto t0 = Clock::now();
  const int rank = comm_ ? comm_->rank() : 0, world = comm_ ? comm_->world() : 1;
  if (world > 1) {  // every rank's tokens
    for (Act& a : acts_) comm_->host_sum(a.gram.data(), int64_t(a.gram.size()));
    comm_->host_sum(token_counts_.data(), int64_t(token_counts_.size()));
  }
  nlohmann::json act = nlohmann::json::object();
  double n_tokens = 0, max_count = 0;
  for (double c : token_counts_) n_tokens += c, max_count = std::max(max_count, c);
  // The one-hot token matrix X [N, V]: XᵀX = diag(counts), so st = N / max count = 1 / p_max.
  act["tokens"] = {{"st", num(n_tokens / max_count)}, {"p_max", num(max_count / n_tokens)}};
  for (size_t k = 0; k < acts_.size(); ++k)
    if (int(k % size_t(world)) == rank)
      act[acts_[k].key] = {{"st", num(gram_stable_rank(acts_[k].gram, acts_[k].width))}};

  const float* params = weights_.empty() ? nullptr : model.params_host();  // [P]
  int64_t offset = 0;
  for (size_t i = 0; i < model.specs().size(); offset += model.specs()[i].numel(), ++i) {
    const ParamSpec& s = model.specs()[i];
    if (s.shape.size() != 2 || !weights_.contains(s.name)) continue;
    std::span<const float> delta = update_of(i);
    if (delta.size() != size_t(s.numel())) continue;
    const float* after = params + offset;
    double before2 = 0;  // ‖W_before‖² with W_before = W_after − ΔW
    for (size_t j = 0; j < delta.size(); ++j) {
      const double b = double(after[j]) - double(delta[j]);
      before2 += b * b;
    }
    MatrixRanks u = matrix_ranks(delta.data(), s.shape[0], s.shape[1]);
    weights_[s.name]["update_st"] = num(u.stable_rank());
    weights_[s.name]["update_rel"] = num(std::sqrt(u.fro2 / before2));
  }
  if (world > 1) {  // every rank's share of the spectra to every rank
    const nlohmann::json mine = {{"act", act}, {"weights", weights_}};
    for (const std::string& piece : comm_->all_gather_strings(mine.dump())) {
      const nlohmann::json theirs = nlohmann::json::parse(piece);
      act.update(theirs["act"]);
      weights_.update(theirs["weights"]);
    }
  }
  for (auto& [name, w] : weights_.items()) {
    const double nr = w["grad_nr"].is_number() ? w["grad_nr"].get<double>() : NAN;
    auto ratio = [&](const std::string& key) {
      const nlohmann::json& st = act[key]["st"];
      return st.is_number() && st.get<double>() > 0 ? num(nr / st.get<double>()) : nullptr;
    };
    w["ratio"] = ratio(w["input"].get<std::string>());
    if (std::string alt = alt_input_activation(name); !alt.empty()) {
      w["alt_input"] = alt;
      w["alt_ratio"] = ratio(alt);
    }
  }
  seconds_ += seconds_since(t0);
  return {{"step", step},
          {"tokens", static_cast<int64_t>(n_tokens)},
          {"seconds", seconds_},
          {"act", std::move(act)},
          {"weights", weights_}};
}

}  // namespace muongpt
