#include "core/files.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace muongpt {

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a named pipe";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "neither a file nor a directory";
}

[[noreturn]] void fail_not_regular(const std::string& path, mode_t mode) {
  fail(path, "not a regular file (", kind_of(mode), ")");
}

[[noreturn]] void fail_open(const std::string& path, int err, const char* verb) {
  if (err == ENOENT && std::strcmp(verb, "create") == 0)
    fail(path, "cannot create: its directory does not exist");
  if (err == ENOENT) fail(path, "no such file");
  if (err == EACCES) fail(path, "permission denied");
  if (err == EMFILE) {
    struct rlimit r {};
    ::getrlimit(RLIMIT_NOFILE, &r);
    fail(path, "cannot ", verb, ": too many open files (this process may have ",
         static_cast<int64_t>(r.rlim_cur), "; raise the limit with ulimit -n)");
  }
  fail(path, "cannot ", verb, ": ", std::strerror(err));
}

// After an open with O_NONBLOCK (so that a FIFO does not block it): refuses what is not a
// regular file and turns blocking I/O back on.
FileDescriptor checked(FileDescriptor f, const std::string& path) {
  struct stat st;
  if (::fstat(f.get(), &st) != 0) fail(path, "cannot stat: ", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail_not_regular(path, st.st_mode);
  const int flags = ::fcntl(f.get(), F_GETFL);
  if (flags < 0 || ::fcntl(f.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
    fail(path, "cannot set blocking mode: ", std::strerror(errno));
  return f;
}

}  // namespace

FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0) ::close(fd_);
}

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

FileDescriptor open_regular_file(const std::string& path) {
  int fd;
  do fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) fail_open(path, errno, "open");
  return checked(FileDescriptor(fd), path);
}

void check_regular_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) fail_open(path, errno, "stat");
  if (!S_ISREG(st.st_mode)) fail_not_regular(path, st.st_mode);
}

FileDescriptor create_regular_file(const std::string& path) {
  int fd;
  do fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, 0644);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    // A FIFO without a reader (ENXIO) or a directory (EISDIR): say what the path is.
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) fail_not_regular(path, st.st_mode);
    fail_open(path, err, "create");
  }
  return checked(FileDescriptor(fd), path);
}

int64_t file_size(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) fail(path, "cannot stat: ", std::strerror(errno));
  return static_cast<int64_t>(st.st_size);
}

int64_t read_at(int fd, const std::string& path, int64_t offset, void* out, int64_t n) {
  auto* p = static_cast<char*>(out);
  int64_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd, p + got, static_cast<size_t>(n - got), offset + got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail(path, "cannot read ", n, " bytes at byte ", offset, ": ", std::strerror(errno));
    if (r == 0) break;  // end of file
    got += r;
  }
  return got;
}

void write_all(int fd, const std::string& path, const void* data, int64_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, static_cast<size_t>(n));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail(path, "write failed: ", std::strerror(w < 0 ? errno : EIO));
    p += w;
    n -= w;
  }
}

std::string read_regular_file(const std::string& path, int64_t max_bytes) {
  const FileDescriptor f = open_regular_file(path);
  const int64_t size = file_size(f.get(), path);
  if (size > max_bytes)
    fail(path, "the file has ", size, " bytes, more than the ", max_bytes, " this reader accepts");
  std::string out(static_cast<size_t>(size), '\0');
  out.resize(static_cast<size_t>(read_at(f.get(), path, 0, out.data(), size)));
  return out;
}

int64_t raise_open_file_limit(int64_t needed) {
  constexpr int64_t kSpare = 256;
  struct rlimit r {};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
  const int64_t want = needed + kSpare;
  if (r.rlim_cur != RLIM_INFINITY && static_cast<int64_t>(r.rlim_cur) < want) {
    rlim_t target = static_cast<rlim_t>(want);
    if (r.rlim_max != RLIM_INFINITY) target = std::min(target, r.rlim_max);
    if (target > r.rlim_cur) {
      r.rlim_cur = target;
      ::setrlimit(RLIMIT_NOFILE, &r);  // best effort: an open past the limit still says so
      ::getrlimit(RLIMIT_NOFILE, &r);
    }
  }
  return r.rlim_cur == RLIM_INFINITY ? INT64_MAX : static_cast<int64_t>(r.rlim_cur);
}

}  // namespace muongpt
