// Files that change under a running loader, and paths that are not regular files: each is one
// Error naming the file, on the thread that asked for data, never a signal or a hang.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <future>

#include "data/loader.h"
#include "data_testing.h"

namespace muongpt {
namespace {

using testing::error_of;
namespace fs = std::filesystem;

constexpr auto kPrompt = std::chrono::seconds(5);

// The Error message of f(), run on another thread. When f has not returned within kPrompt (a
// regression blocked in open(2) on the FIFO), the test fails and this side opens the FIFO to
// release it, so that the test ends instead of hanging CI.
template <typename F>
std::string prompt_error(F f, const std::string& fifo) {
  auto result = std::async(std::launch::async, [&] { return error_of(f); });
  if (result.wait_for(kPrompt) == std::future_status::ready) return result.get();
  ADD_FAILURE() << "still blocked after " << kPrompt.count() << " s: " << fifo;
  const int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);  // releases a blocked reader
  const int r = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // releases a blocked writer
  if (w >= 0) ::close(w);  // the reader then sees the end of the file
  std::string e = result.get();
  if (r >= 0) ::close(r);  // only now: a writer must not meet a pipe without readers (SIGPIPE)
  return e;
}

class ChangingFilesTest : public testing::TempDirTest {
 protected:
  // Shards of n tokens each: an EOT every 50 tokens, the rest 1..49.
  std::vector<std::string> make(const std::string& prefix, int shards, int64_t n) {
    std::vector<std::string> out;
    for (int s = 0; s < shards; ++s) {
      std::vector<uint16_t> t(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) t[i] = i % 50 == 0 ? kEot : static_cast<uint16_t>(i % 50);
      char name[64];
      std::snprintf(name, sizeof(name), "%s_%06d.bin", prefix.c_str(), s + 1);
      out.push_back(write_tokens(name, t));
    }
    return out;
  }
  static void truncate_to(const std::string& path, off_t size) {
    ASSERT_EQ(::truncate(path.c_str(), size), 0) << path;
  }
  std::string make_fifo(const std::string& name) const {
    const std::string p = path(name);
    EXPECT_EQ(::mkfifo(p.c_str(), 0600), 0) << p;
    return p;
  }
};

// A shard truncated while the loader is in use (the old reader mapped it and died by SIGBUS on
// the next window): next() throws an Error naming the file, with or without the prefetch
// thread, and the process lives on.
TEST_F(ChangingFilesTest, ShardTruncatedUnderTheTrainLoaderIsAnErrorOnNext) {
  const int64_t n = 200000;  // 401,024 bytes, more than the loader reads ahead
  for (SampleMode mode : {SampleMode::contiguous, SampleMode::bos_aligned}) {
    for (bool prefetch : {false, true}) {
      const std::string prefix = std::string(prefetch ? "async_" : "sync_") +
                                 (mode == SampleMode::contiguous ? "c" : "b") + "_train";
      const auto files = make(prefix, 2, n);
      LoaderOptions o;
      o.pattern = path(prefix + "_*.bin");
      o.batch = 4;
      o.seq = 64;
      o.mode = mode;
      o.prefetch = prefetch;
      DataLoader dl(o);
      std::vector<int32_t> buf(static_cast<size_t>(o.batch * (o.seq + 1)));
      dl.next(buf.data());
      for (const std::string& f : files) truncate_to(f, 0);
      // What was read before the truncation (read-ahead, a prefetched batch) is still served.
      std::string e;
      int calls = 0;
      while (e.empty() && ++calls < 5000) e = error_of([&] { dl.next(buf.data()); });
      EXPECT_EQ(e, files[0] + ": the file shrank from 401024 to 0 bytes while in use")
          << sample_mode_name(mode) << " prefetch " << prefetch << " after " << calls << " calls";
      // It stays an error (not a crash, not a hang) when asked again.
      EXPECT_NE(error_of([&] { dl.next(buf.data()); }), "");
    }
  }
}

TEST_F(ChangingFilesTest, ShardTruncatedUnderTheValLoaderIsAnErrorOnBatch) {
  const auto files = make("v_val", 2, 20000);
  ValLoader v(path("v_val_*.bin"), 40000, 2, 64, 0, 1);
  std::vector<int32_t> buf(2 * 65);
  v.batch(0, buf.data());
  truncate_to(files[1], 2048);
  v.batch(1, buf.data());  // in the first shard, untouched
  EXPECT_EQ(error_of([&] { v.batch(v.num_batches() - 1, buf.data()); }),
            files[1] + ": the file shrank from 41024 to 2048 bytes while in use");
}

// A named pipe or a directory that the glob matches is refused at once: open(2) of a FIFO
// without O_NONBLOCK waits for a writer forever.
TEST_F(ChangingFilesTest, FifoOrDirectoryMatchedByTheGlobIsRefusedPromptly) {
  make("d_train", 2, 500);
  const std::string fifo = make_fifo("d_train_000003.bin");
  LoaderOptions o;
  o.pattern = path("d_train_*.bin");
  o.batch = 1;
  o.seq = 16;
  EXPECT_EQ(prompt_error([&] { DataLoader dl(o); }, fifo),
            fifo + ": not a regular file (a named pipe)");
  EXPECT_EQ(prompt_error([&] { ValLoader v(o.pattern, 100, 1, 16, 0, 1); }, fifo),
            fifo + ": not a regular file (a named pipe)");
  ::unlink(fifo.c_str());

  fs::create_directories(path("d_train_000004.bin"));
  EXPECT_EQ(error_of([&] { DataLoader dl(o); }),
            path("d_train_000004.bin") + ": not a regular file (a directory)");
}

TEST_F(ChangingFilesTest, VocabularyThatIsNotARegularFileIsRefusedPromptly) {
  const std::string fifo = make_fifo("gpt2.tiktoken");
  EXPECT_EQ(prompt_error([&] { Gpt2Tokenizer::load(fifo); }, fifo),
            fifo + ": not a regular file (a named pipe)");
  fs::create_directories(path("vocab_dir"));
  EXPECT_EQ(error_of([&] { Gpt2Tokenizer::load(path("vocab_dir")); }),
            path("vocab_dir") + ": not a regular file (a directory)");
}

// write_shard writes `path.tmp` first: a FIFO there must not block it either.
TEST_F(ChangingFilesTest, WriterRefusesAFifoInPlaceOfItsTemporaryFile) {
  const std::string fifo = make_fifo("w.bin.tmp");
  const uint16_t t[3] = {kEot, 1, 2};
  EXPECT_EQ(prompt_error([&] { write_shard(path("w.bin"), t, 3); }, fifo),
            fifo + ": not a regular file (a named pipe)");
  EXPECT_FALSE(fs::exists(path("w.bin")));
}

}  // namespace
}  // namespace muongpt
