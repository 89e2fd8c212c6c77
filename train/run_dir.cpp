#include "train/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "core/error.h"

namespace muongpt {

namespace {

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

// What the holder wrote into the lock file: "pid <n> on <host>".
std::string read_owner(int fd) {
  char buf[256] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string owner = n > 0 ? std::string(buf, size_t(n)) : "";
  while (!owner.empty() && (owner.back() == '\n' || owner.back() == '\0')) owner.pop_back();
  return owner.empty() ? "another process" : owner;
}

}  // namespace

RunLock::RunLock(const std::string& run_dir) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) fail(run_dir, "cannot create the run directory: ", ec.message());
  const std::string path = (std::filesystem::path(run_dir) / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0) fail(path, "cannot open the run's lock file: ", std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string owner = read_owner(fd_);
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      fail(run_dir, "is in use by ", owner,
           ": one process writes a run at a time (wait for it to end, or choose another [run] "
           "name)");
    fail(path, "cannot lock the run directory: ", std::strerror(err));
  }
  const std::string owner = "pid " + std::to_string(::getpid()) + " on " + host_name() + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, owner.data(), owner.size(), 0) < 0)
    fail(path, "cannot write the run's lock file: ", std::strerror(errno));
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace muongpt
