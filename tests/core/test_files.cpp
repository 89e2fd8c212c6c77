// core/files.h: opening user files without blocking, refusing what is not a regular file. (Its
// tests live here, in test_data, next to the data readers that use it.)
#include "core/files.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_testing.h"

namespace muongpt {
namespace {

using testing::error_of;
namespace fs = std::filesystem;

class FilesTest : public testing::TempDirTest {};

TEST_F(FilesTest, OpensRegularFilesAndReadsThem) {
  const std::string p = write_bytes("a.txt", "hello, world");
  FileDescriptor f = open_regular_file(p);
  ASSERT_TRUE(f);
  EXPECT_EQ(file_size(f.get(), p), 12);
  char buf[16] = {};
  EXPECT_EQ(read_at(f.get(), p, 7, buf, 16), 5);  // short only at the end of the file
  EXPECT_EQ(std::string(buf, 5), "world");
  FileDescriptor g = std::move(f);
  EXPECT_FALSE(f);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_TRUE(g);
  EXPECT_EQ(read_regular_file(p, 12), "hello, world");
  EXPECT_EQ(error_of([&] { read_regular_file(p, 11); }),
            p + ": the file has 12 bytes, more than the 11 this reader accepts");
  EXPECT_EQ(error_of([&] { check_regular_file(p); }), "");
  // Through a symlink: what counts is the file it names.
  fs::create_symlink(p, path("link.txt"));
  EXPECT_EQ(read_regular_file(path("link.txt"), 100), "hello, world");
}

TEST_F(FilesTest, RefusesWhatIsNotARegularFileWithoutBlocking) {
  const std::string fifo = path("pipe");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  fs::create_directories(path("dir"));
  const std::string missing = path("missing");
  // open(2) of a FIFO with no writer would block without O_NONBLOCK; it returns at once here.
  EXPECT_EQ(error_of([&] { open_regular_file(fifo); }),
            fifo + ": not a regular file (a named pipe)");
  EXPECT_EQ(error_of([&] { open_regular_file(path("dir")); }),
            path("dir") + ": not a regular file (a directory)");
  EXPECT_EQ(error_of([&] { open_regular_file("/dev/null"); }),
            "/dev/null: not a regular file (a character device)");
  EXPECT_EQ(error_of([&] { open_regular_file(missing); }), missing + ": no such file");
  EXPECT_EQ(error_of([&] { check_regular_file(fifo); }),
            fifo + ": not a regular file (a named pipe)");
  EXPECT_EQ(error_of([&] { check_regular_file(path("dir")); }),
            path("dir") + ": not a regular file (a directory)");
  EXPECT_EQ(error_of([&] { check_regular_file(missing); }), missing + ": no such file");
  EXPECT_EQ(error_of([&] { read_regular_file(fifo, 10); }),
            fifo + ": not a regular file (a named pipe)");
  // Writing: a FIFO without a reader (open fails with ENXIO) and a directory are named as such.
  EXPECT_EQ(error_of([&] { create_regular_file(fifo); }),
            fifo + ": not a regular file (a named pipe)");
  EXPECT_EQ(error_of([&] { create_regular_file(path("dir")); }),
            path("dir") + ": not a regular file (a directory)");
  EXPECT_EQ(error_of([&] { create_regular_file(path("no/such/dir/f")); }),
            path("no/such/dir/f") + ": cannot create: its directory does not exist");
}

TEST_F(FilesTest, CreatesAndTruncatesRegularFiles) {
  const std::string p = write_bytes("out.bin", "old content");
  {
    FileDescriptor f = create_regular_file(p);
    write_all(f.get(), p, "new", 3);
  }
  EXPECT_EQ(testing::read_file(p), "new");
}

TEST_F(FilesTest, RaisesTheOpenFileLimitWithinTheHardLimit) {
  struct rlimit before {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &before), 0);
  auto value = [](rlim_t v) { return v == RLIM_INFINITY ? INT64_MAX : static_cast<int64_t>(v); };
  const int64_t now = raise_open_file_limit(100);
  EXPECT_GE(now, std::min<int64_t>(100 + 256, value(before.rlim_max)));
  EXPECT_GE(now, value(before.rlim_cur));  // never lowered
}

}  // namespace
}  // namespace muongpt
