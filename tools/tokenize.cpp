// `muongpt tokenize`: text (.txt = one document, .jsonl = one {"text": ...} per line) to GPT-2
// token shards. Every document is prefixed with EOT; the first --val-tokens tokens go to
// <prefix>_val_000000.bin, the rest to <prefix>_train_000001.bin, ... of --shard-tokens each.
// Documents are encoded by a pool of threads; the output does not depend on the thread count.
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cxxopts.hpp>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "core/error.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "tools/commands.h"
#include "tools/format.h"

namespace muongpt {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int64_t kChunkBytes = 1 << 20;  // documents are handed to workers in ~1 MB chunks
constexpr int64_t kChunkDocs = 1024;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// One document as read: the text of a .txt file, or one line of a .jsonl file (parsed by the
// worker, so that JSON decoding runs in parallel too).
struct Item {
  std::string data;
  int32_t file = 0;
  int64_t line = 0;  // 1-based line of a .jsonl file; 0 for a .txt file
};

// The document text of an item; an Error naming file:line for a bad JSON line.
std::string_view item_text(const Item& item, const std::vector<std::string>& files,
                           std::string& storage) {
  if (item.line == 0) return item.data;
  const std::string where = files[item.file] + ":" + std::to_string(item.line);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(item.data);
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    const size_t k = what.find("] ");
    fail(where, "not valid JSON: ", k == std::string::npos ? what : what.substr(k + 2));
  }
  if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
    fail(where, "expected a JSON object with a string field \"text\"");
  storage = j["text"].get<std::string>();
  return storage;
}

// Reads the documents of the inputs in order.
class DocReader {
 public:
  explicit DocReader(const std::vector<std::string>& inputs) : inputs_(inputs) {}

  // The next item, or false at the end of the last input.
  bool next(Item& item) {
    for (;;) {
      if (!in_.is_open()) {
        if (index_ >= inputs_.size()) return false;
        const std::string& path = inputs_[index_++];
        jsonl_ = ends_with(path, ".jsonl");
        line_ = 0;
        in_.open(path, std::ios::binary);
        if (!in_) fail(path, "cannot open");
        if (!jsonl_) {  // the whole file is one document
          in_.seekg(0, std::ios::end);
          const auto size = static_cast<size_t>(in_.tellg());
          in_.seekg(0);
          item.data.resize(size);
          if (!in_.read(item.data.data(), static_cast<std::streamsize>(size)))
            fail(path, "read error");
          item.file = static_cast<int32_t>(index_ - 1);
          item.line = 0;
          bytes_ += static_cast<int64_t>(size);
          in_.close();
          return true;
        }
      }
      if (!std::getline(in_, item.data)) {
        if (in_.bad()) fail(inputs_[index_ - 1], "read error");
        in_.close();
        continue;
      }
      ++line_;
      bytes_ += static_cast<int64_t>(item.data.size()) + 1;
      if (item.data.find_first_not_of(" \t\r\n") == std::string::npos) continue;  // blank line
      item.file = static_cast<int32_t>(index_ - 1);
      item.line = line_;
      return true;
    }
  }
  int64_t bytes_read() const { return bytes_; }

 private:
  const std::vector<std::string>& inputs_;
  size_t index_ = 0;
  std::ifstream in_;
  bool jsonl_ = false;
  int64_t line_ = 0;
  int64_t bytes_ = 0;
};

// Takes the token stream in order and writes the val shard, then train shards.
class ShardSink {
 public:
  ShardSink(std::string dir, std::string prefix, int64_t val_tokens, int64_t shard_tokens)
      : dir_(std::move(dir)),
        prefix_(std::move(prefix)),
        val_tokens_(val_tokens),
        shard_tokens_(shard_tokens),
        val_done_(val_tokens == 0) {}

  void add(const std::vector<uint16_t>& tokens) {
    buf_.insert(buf_.end(), tokens.begin(), tokens.end());
    total_ += static_cast<int64_t>(tokens.size());
    size_t used = 0;
    if (!val_done_ && static_cast<int64_t>(buf_.size()) >= val_tokens_) {
      write("val", 0, buf_.data(), val_tokens_);
      used = static_cast<size_t>(val_tokens_);
      val_done_ = true;
    }
    if (val_done_)
      while (static_cast<int64_t>(buf_.size() - used) >= shard_tokens_) {
        write("train", train_index_++, buf_.data() + used, shard_tokens_);
        used += static_cast<size_t>(shard_tokens_);
      }
    if (used > 0) buf_.erase(buf_.begin(), buf_.begin() + static_cast<long>(used));
  }

  void finish() {
    if (!val_done_ || (val_tokens_ > 0 && buf_.empty() && train_index_ == 1))
      fail("tokenize", "the inputs hold ", total_, " tokens, not more than --val-tokens ",
           val_tokens_, ": nothing is left for a train shard");
    if (!buf_.empty())
      write("train", train_index_++, buf_.data(), static_cast<int64_t>(buf_.size()));
    buf_.clear();
    if (train_index_ == 1) fail("tokenize", "the inputs hold no documents");
  }

  int64_t total() const { return total_; }
  int64_t train_shards() const { return train_index_ - 1; }
  int64_t train_tokens() const { return total_ - val_tokens_; }

 private:
  void write(const char* split, int64_t index, const uint16_t* t, int64_t n) {
    char name[64];
    std::snprintf(name, sizeof(name), "_%s_%06lld.bin", split, static_cast<long long>(index));
    write_shard((fs::path(dir_) / (prefix_ + name)).string(), t, n);
  }
  std::string dir_, prefix_;
  int64_t val_tokens_, shard_tokens_;
  bool val_done_;
  int64_t train_index_ = 1;
  int64_t total_ = 0;
  std::vector<uint16_t> buf_;
};

struct Chunk {
  int64_t seq = 0;
  std::vector<Item> items;
  int64_t input_bytes = 0;  // of the input files, for the progress bar
};

struct Encoded {
  std::vector<uint16_t> tokens;
  int64_t docs = 0, text_bytes = 0, input_bytes = 0;
  std::exception_ptr error;  // a bad input line: raised when this chunk's turn comes
};

// The worker pool: chunks in, encoded chunks out (collected by sequence number).
class Pool {
 public:
  Pool(const Gpt2Tokenizer& tok, const std::vector<std::string>& files, int threads)
      : tok_(tok), files_(files) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { run(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
      abort_ = true;
    }
    work_cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  // Hands a chunk to the workers; first waits while `limit` chunks are in flight, passing the
  // encoded chunks that are ready, in order, to `sink`.
  template <typename Sink>
  void push(Chunk chunk, int64_t limit, Sink&& sink) {
    std::unique_lock<std::mutex> lock(mu_);
    drain(lock, sink, [&] { return next_seq_ - next_out_ < limit; });
    chunk.seq = next_seq_++;
    work_.push_back(std::move(chunk));
    work_cv_.notify_one();
  }

  // Waits for every chunk and passes the rest to `sink`.
  template <typename Sink>
  void finish(Sink&& sink) {
    std::unique_lock<std::mutex> lock(mu_);
    closing_ = true;
    work_cv_.notify_all();
    drain(lock, sink, [&] { return next_out_ == next_seq_; });
  }

 private:
  template <typename Sink, typename Done>
  void drain(std::unique_lock<std::mutex>& lock, Sink& sink, Done done) {
    for (;;) {
      if (error_) std::rethrow_exception(error_);
      auto it = done_.find(next_out_);
      if (it != done_.end()) {
        Encoded e = std::move(it->second);
        done_.erase(it);
        ++next_out_;
        if (e.error) std::rethrow_exception(e.error);
        lock.unlock();
        sink(e);
        lock.lock();
        continue;
      }
      if (done()) return;
      done_cv_.wait(lock);
    }
  }

  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    std::vector<int32_t> ids;
    std::string storage;
    for (;;) {
      work_cv_.wait(lock, [&] { return abort_ || closing_ || !work_.empty(); });
      if (abort_ || work_.empty()) return;
      Chunk c = std::move(work_.front());
      work_.pop_front();
      lock.unlock();
      Encoded e;
      try {
        e.input_bytes = c.input_bytes;
        for (const Item& item : c.items) {
          const std::string_view d = item_text(item, files_, storage);
          ids.clear();
          ids.push_back(kEot);
          tok_.encode_append(d, ids);
          e.tokens.insert(e.tokens.end(), ids.begin(), ids.end());  // ids < 50257 fit uint16
          e.text_bytes += static_cast<int64_t>(d.size());
          ++e.docs;
        }
      } catch (const Error&) {
        e.error = std::current_exception();
      } catch (...) {
        std::lock_guard<std::mutex> relock(mu_);
        error_ = std::current_exception();  // out of memory and the like: stop at once
      }
      lock.lock();
      done_.emplace(c.seq, std::move(e));
      done_cv_.notify_all();
    }
  }

  const Gpt2Tokenizer& tok_;
  const std::vector<std::string>& files_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<Chunk> work_;
  std::map<int64_t, Encoded> done_;
  int64_t next_seq_ = 0, next_out_ = 0;
  bool closing_ = false, abort_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> workers_;
};

// The command line, checked.
struct TokenizeOptions {
  std::string vocab, dir, prefix;
  int64_t shard_tokens = 0, val_tokens = 0;
  int threads = 1;
  bool force = false;
  std::vector<std::string> inputs;
};

cxxopts::Options tokenize_cli() {
  cxxopts::Options opts(
      "muongpt tokenize",
      "Tokenize text into GPT-2 token shards (FineWeb format). Each INPUT is a .txt file (one "
      "document) or a .jsonl file (one JSON object per line with a string field \"text\"). Every "
      "document is prefixed with <|endoftext|> (50256). The first --val-tokens tokens go to "
      "<prefix>_val_000000.bin, the rest to <prefix>_train_000001.bin, ...");
  opts.positional_help("INPUT...");
  opts.add_options()("vocab", "gpt2.tiktoken rank file (tools/fetch_vocab.sh)",
                     cxxopts::value<std::string>())("output-dir", "directory for the shards",
                                                    cxxopts::value<std::string>())(
      "prefix", "shard file name prefix", cxxopts::value<std::string>()->default_value("data"))(
      "shard-tokens", "tokens per train shard",
      cxxopts::value<int64_t>()->default_value("100000000"))(
      "val-tokens", "tokens for the val shard (0: none)",
      cxxopts::value<int64_t>()->default_value("0"))(
      "threads", "encoding threads (default: all cores)", cxxopts::value<int>())(
      "force", "replace shards with this prefix already in the output directory")(
      "h,help", "show this help")("inputs", "input files",
                                  cxxopts::value<std::vector<std::string>>());
  opts.parse_positional({"inputs"});
  return opts;
}

// The options, or nothing after printing --help.
std::optional<TokenizeOptions> parse_tokenize_options(int argc, char** argv) {
  cxxopts::Options opts = tokenize_cli();
  auto args = parse_command_line(opts, argc, argv);
  if (args.count("help")) {
    std::cout << opts.help() << std::endl;
    return std::nullopt;
  }
  if (!args.count("vocab")) fail("tokenize", "--vocab FILE is required (see --help)");
  if (!args.count("output-dir")) fail("tokenize", "--output-dir DIR is required (see --help)");
  if (!args.count("inputs")) fail("tokenize", "no INPUT files given (see --help)");
  TokenizeOptions o;
  o.vocab = args["vocab"].as<std::string>();
  o.dir = args["output-dir"].as<std::string>();
  o.prefix = args["prefix"].as<std::string>();
  o.shard_tokens = args["shard-tokens"].as<int64_t>();
  o.val_tokens = args["val-tokens"].as<int64_t>();
  o.threads = args.count("threads")
                  ? args["threads"].as<int>()
                  : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  o.force = args.count("force") > 0;
  o.inputs = args["inputs"].as<std::vector<std::string>>();
  if (o.prefix.empty() || o.prefix.find('/') != std::string::npos)
    fail("tokenize", "--prefix '", o.prefix, "' must be a non-empty file name without '/'");
  if (o.shard_tokens < 1 || o.shard_tokens > kShardMaxTokens)
    fail("tokenize", "--shard-tokens ", o.shard_tokens, " must be in [1, ", kShardMaxTokens, "]");
  if (o.val_tokens < 0 || o.val_tokens > kShardMaxTokens)
    fail("tokenize", "--val-tokens ", o.val_tokens, " must be in [0, ", kShardMaxTokens, "]");
  if (o.threads < 1 || o.threads > 1024)
    fail("tokenize", "--threads ", o.threads, " must be in [1, 1024]");
  return o;
}

// Checks every input before any work; returns their total size in bytes (for the progress bar).
int64_t check_inputs(const std::vector<std::string>& inputs) {
  int64_t input_total = 0;
  for (const std::string& in : inputs) {
    if (!ends_with(in, ".txt") && !ends_with(in, ".jsonl"))
      fail(in,
           "unsupported input: expected a .txt file (one document) or a .jsonl file (one JSON "
           "object with a \"text\" field per line)");
    std::error_code ec;
    const auto st = fs::status(in, ec);
    if (!fs::exists(st)) fail(in, "no such file");
    if (!fs::is_regular_file(st)) fail(in, "is not a regular file");
    input_total += static_cast<int64_t>(fs::file_size(in, ec));
  }
  return input_total;
}

// Creates the output directory; shards of an earlier run with this prefix are removed with
// --force and refused without it, so that no stale shard joins the new ones.
void prepare_output_dir(const TokenizeOptions& o) {
  std::error_code ec;
  fs::create_directories(o.dir, ec);
  if (ec) fail(o.dir, "cannot create the output directory: ", ec.message());
  std::vector<fs::path> existing;
  for (const auto& e : fs::directory_iterator(o.dir, ec)) {
    const std::string name = e.path().filename().string();
    if (ends_with(name, ".bin") &&
        (name.rfind(o.prefix + "_val_", 0) == 0 || name.rfind(o.prefix + "_train_", 0) == 0))
      existing.push_back(e.path());
  }
  if (!existing.empty()) {
    if (!o.force)
      fail(o.dir, "already holds ", existing.size(), " shard(s) named ", o.prefix,
           "_{val,train}_*.bin; pass --force to replace them or choose another --prefix");
    for (const auto& p : existing) fs::remove(p, ec);
  }
}

// Counts the encoded chunks and, on a terminal, redraws a progress bar at most 5 times a second.
class Progress {
 public:
  explicit Progress(int64_t input_total) : input_total_(input_total) {}

  void count(const Encoded& e, int64_t tokens) {
    docs_ += e.docs;
    text_bytes_ += e.text_bytes;
    input_done_ += e.input_bytes;
    const auto now = Clock::now();
    if (tty_ && now - last_bar_ > std::chrono::milliseconds(200)) {
      last_bar_ = now;
      const double dt = std::chrono::duration<double>(now - t0_).count();
      const double frac = input_total_ > 0 ? double(input_done_) / double(input_total_) : 1.0;
      std::fprintf(stderr, "\rtokenize: %s / %s  %5.1f%%  %.1f MB/s  %s tokens  ETA %s\033[K",
                   human_bytes(double(input_done_)).c_str(),
                   human_bytes(double(input_total_)).c_str(), 100.0 * frac,
                   double(text_bytes_) / 1e6 / std::max(dt, 1e-9), with_commas(tokens).c_str(),
                   human_seconds(frac > 0 ? dt * (1 - frac) / frac : 0).c_str());
    }
  }

  // Clears the bar; returns the seconds since the start.
  double finish() const {
    const double dt = std::max(std::chrono::duration<double>(Clock::now() - t0_).count(), 1e-9);
    if (tty_) std::fprintf(stderr, "\r\033[K");
    return dt;
  }

  int64_t docs() const { return docs_; }
  int64_t text_bytes() const { return text_bytes_; }

 private:
  int64_t docs_ = 0, text_bytes_ = 0;
  int64_t input_total_, input_done_ = 0;
  Clock::time_point t0_ = Clock::now();
  Clock::time_point last_bar_ = t0_;
  bool tty_ = ::isatty(STDERR_FILENO) != 0;
};

// Reads the inputs in chunks, encodes them on `threads` workers and hands the encoded chunks,
// in input order, to `consume`.
template <typename Consume>
void encode_inputs(const std::vector<std::string>& inputs, const Gpt2Tokenizer& tok, int threads,
                   Consume&& consume) {
  Pool pool(tok, inputs, threads);
  DocReader reader(inputs);
  Chunk chunk;
  Item item;
  int64_t chunk_bytes = 0, read_before = 0;
  const int64_t limit = 2 * int64_t(threads) + 2;
  auto flush = [&] {
    chunk.input_bytes = reader.bytes_read() - read_before;
    read_before = reader.bytes_read();
    pool.push(std::move(chunk), limit, consume);
    chunk = Chunk{};
    chunk_bytes = 0;
  };
  while (reader.next(item)) {
    chunk_bytes += static_cast<int64_t>(item.data.size());
    chunk.items.push_back(std::move(item));
    item = Item{};
    if (chunk_bytes >= kChunkBytes || static_cast<int64_t>(chunk.items.size()) >= kChunkDocs)
      flush();
  }
  if (!chunk.items.empty()) flush();
  pool.finish(consume);
}

void report(const TokenizeOptions& o, const Progress& p, const ShardSink& sink, double dt) {
  std::printf(
      "tokenized %s documents (%s of text) into %s tokens in %.2f s: %.2f MB/s, %.2fM "
      "tokens/s, %d thread%s\n",
      with_commas(p.docs()).c_str(), human_bytes(double(p.text_bytes())).c_str(),
      with_commas(sink.total()).c_str(), dt, double(p.text_bytes()) / 1e6 / dt,
      double(sink.total()) / 1e6 / dt, o.threads, o.threads == 1 ? "" : "s");
  std::printf("wrote %s%s train shard%s (%s tokens) to %s\n",
              o.val_tokens > 0
                  ? ("1 val shard (" + with_commas(o.val_tokens) + " tokens) and ").c_str()
                  : "",
              std::to_string(sink.train_shards()).c_str(), sink.train_shards() == 1 ? "" : "s",
              with_commas(sink.train_tokens()).c_str(), o.dir.c_str());
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  const std::optional<TokenizeOptions> o = parse_tokenize_options(argc, argv);
  if (!o) return 0;  // --help
  const int64_t input_total = check_inputs(o->inputs);
  const Gpt2Tokenizer tok = Gpt2Tokenizer::load(o->vocab);
  prepare_output_dir(*o);

  Progress progress(input_total);
  ShardSink sink(o->dir, o->prefix, o->val_tokens, o->shard_tokens);
  encode_inputs(o->inputs, tok, o->threads, [&](const Encoded& e) {
    sink.add(e.tokens);
    progress.count(e, sink.total());
  });
  sink.finish();
  const double dt = progress.finish();
  report(*o, progress, sink, dt);
  return 0;
}

}  // namespace muongpt
