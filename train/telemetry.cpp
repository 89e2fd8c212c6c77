#include "train/telemetry.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/comm.h"
#include "core/error.h"
#ifdef MUONGPT_HAVE_CUDA
#include "train/spectra_cuda.h"
#endif

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

// The linear algebra where the model lives: the GPU's takes every weight matrix's shape up front
// (its scratch is planned once).
std::unique_ptr<Spectra> make_spectra(const Model& model, const std::vector<int64_t>& widths) {
  if (model.device() == Device::cpu) return make_cpu_spectra(widths);
#ifdef MUONGPT_HAVE_CUDA
  std::vector<std::pair<int64_t, int64_t>> matrices;
  for (const ParamSpec& s : model.specs())
    if (s.shape.size() == 2) matrices.emplace_back(s.shape[0], s.shape[1]);
  return make_cuda_spectra(widths, matrices, model.stream());
#else
  fail("telemetry", "a GPU model in a build without CUDA");
#endif
}

// JSON number, or null for values that are not finite (e.g. a ratio over a zero norm).
nlohmann::json num(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}

}  // namespace

std::string input_activation(const std::string& param) {
  if (param == "embed.weight") return "tokens";
  if (param == "head.weight") return "final_in";
  auto [block, field] = split_block(param);
  if (field == "attn.wq" || field == "attn.wk" || field == "attn.wv") return block + "attn_in";
  if (field == "attn.wo") return block + "attn_out";
  if (field == "mlp.w1" || field == "mlp.w3") return block + "mlp_in";  // w3: swiglu
  if (field == "mlp.w2") return block + "mlp_act";
  return "";
}

std::string alt_input_activation(const std::string& param) {
  auto [block, field] = split_block(param);
  if (field == "attn.wo") return block + "attn_in";
  if (field == "mlp.w2") return block + "mlp_pre";
  return "";
}

std::vector<RankTelemetry::Act> RankTelemetry::activations(const ModelConfig& c) {
  std::vector<Act> acts = {{"embed_out", "embed_out", 0, c.d_model}};
  for (int64_t l = 0; l < c.n_layer; ++l)
    for (const BlockActivation& b : block_activations(c))
      acts.push_back({"blocks." + std::to_string(l) + "." + std::string(b.name),
                      std::string(b.name), l, b.width});
  acts.push_back({"final_in", "final_in", 0, c.d_model});
  return acts;
}

size_t RankTelemetry::planned_bytes(const ModelConfig& cfg, int64_t every) {
  size_t bytes = 0;
  if (every > 0)
    for (const Act& a : activations(cfg)) bytes += sizeof(double) * size_t(a.width * a.width);
  return bytes;
}

RankTelemetry::RankTelemetry(Model& model, int64_t every, Comm* comm, std::vector<int> owner,
                             bool on_demand)
    : every_(every), comm_(comm), owner_(std::move(owner)) {
  if (every <= 0 && !on_demand) return;
  const ModelConfig& c = model.config();
  acts_ = activations(c);
  std::vector<int64_t> widths;
  for (const Act& a : acts_) widths.push_back(a.width);
  spectra_ = make_spectra(model, widths);
  token_counts_.assign(static_cast<size_t>(c.vocab_size), 0.0);
}

bool RankTelemetry::mine(size_t param) const {
  return owner_.empty() || !comm_ || owner_[param] == comm_->rank();
}

void RankTelemetry::begin() {
  spectra_->zero_grams();
  std::fill(token_counts_.begin(), token_counts_.end(), 0.0);
  weights_ = nlohmann::json::object();
  seconds_ = 0;
}

void RankTelemetry::add_activations(Model& model, const int32_t* idx, int64_t n_tokens) {
  model.synchronize();  // so that the GPU's forward is not timed as telemetry, nor the Grams not
  const auto t0 = Clock::now();
  for (size_t k = 0; k < acts_.size(); ++k)
    spectra_->add_gram(k, model.activation(acts_[k].kind, acts_[k].layer));  // [N, width]
  for (int64_t i = 0; i < n_tokens; ++i) token_counts_[idx[i]] += 1;
  model.synchronize();
  seconds_ += seconds_since(t0);
}

void RankTelemetry::add_gradients(Model& model) {
  const auto t0 = Clock::now();
  const std::vector<ParamSlot> slots = model.param_slots();
  std::vector<size_t> which;
  std::vector<MatrixRef> grads;
  for (size_t i = 0; i < slots.size(); ++i)
    if (slots[i].shape.size() == 2 && mine(i)) {
      which.push_back(i);
      grads.push_back({slots[i].grad, slots[i].shape[0], slots[i].shape[1]});
    }
  const std::vector<MatrixRanks> r = spectra_->ranks(grads, /*nuclear=*/true);
  for (size_t j = 0; j < which.size(); ++j) {
    const std::string& name = slots[which[j]].name;
    weights_[name] = {{"input", input_activation(name)},
                      {"grad_nr", num(r[j].nuclear_rank())},
                      {"grad_st", num(r[j].stable_rank())}};
  }
  seconds_ += seconds_since(t0);
}

nlohmann::json RankTelemetry::finish(
    Model& model, int64_t step, const std::function<std::span<const float>(size_t)>& update_of) {
  const auto t0 = Clock::now();
  const int rank = comm_ ? comm_->rank() : 0, world = comm_ ? comm_->world() : 1;
  if (world > 1) {  // every rank's tokens
    spectra_->sum_grams(*comm_);
    comm_->host_sum(token_counts_.data(), int64_t(token_counts_.size()));
  }
  nlohmann::json act = nlohmann::json::object();
  double n_tokens = 0, max_count = 0;
  for (double c : token_counts_) n_tokens += c, max_count = std::max(max_count, c);
  // The one-hot token matrix X [N, V]: XᵀX = diag(counts), so st = N / max count = 1 / p_max.
  act["tokens"] = {{"st", num(n_tokens / max_count)}, {"p_max", num(max_count / n_tokens)}};
  std::vector<size_t> ks;
  for (size_t k = 0; k < acts_.size(); ++k)
    if (int(k % size_t(world)) == rank) ks.push_back(k);
  const std::vector<double> st = spectra_->gram_stable_ranks(ks);
  for (size_t j = 0; j < ks.size(); ++j) act[acts_[ks[j]].key] = {{"st", num(st[j])}};

  const std::vector<ParamSlot> slots = model.param_slots();
  std::vector<size_t> which;
  std::vector<MatrixRef> deltas, afters;
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].shape.size() != 2 || !weights_.contains(slots[i].name)) continue;
    std::span<const float> delta = update_of(i);
    if (delta.size() != size_t(slots[i].numel())) continue;
    which.push_back(i);
    deltas.push_back({delta.data(), slots[i].shape[0], slots[i].shape[1]});
    afters.push_back({slots[i].value, slots[i].shape[0], slots[i].shape[1]});
  }
  const std::vector<MatrixRanks> u = spectra_->ranks(deltas, /*nuclear=*/false);  // st only
  const std::vector<double> before2 = spectra_->distances2(afters, deltas);       // W_after − ΔW
  for (size_t j = 0; j < which.size(); ++j) {
    nlohmann::json& w = weights_[slots[which[j]].name];
    w["update_st"] = num(u[j].stable_rank());
    w["update_rel"] = num(std::sqrt(u[j].fro2 / before2[j]));
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
