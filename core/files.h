// Opening the files users name (shards, vocabularies, configs, checkpoints) so that bad input is
// an Error naming the path, never a hang or a signal: anything that is not a regular file (a
// directory, a named pipe, a device, a socket) is refused, and opening never blocks (open(2) of a
// FIFO without O_NONBLOCK waits for a writer forever).
#pragma once

#include <cstdint>
#include <string>

namespace muongpt {

// An owned file descriptor, closed when it goes out of scope.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor();
  FileDescriptor(FileDescriptor&& o) noexcept : fd_(o.release()) {}
  FileDescriptor& operator=(FileDescriptor&& o) noexcept;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;

  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Opens `path` read-only (close-on-exec, blocking reads) if it is a regular file (symlinks are
// followed). Errors name the path: "no such file", "not a regular file (a named pipe)" (or a
// directory, a character device, ...), "permission denied", "cannot open: <strerror>", and for
// too many open files the limit and how to raise it.
FileDescriptor open_regular_file(const std::string& path);

// The same check without opening: for code that reads the file through a library that opens it
// itself (a stream, a parser). Throws what open_regular_file() throws.
void check_regular_file(const std::string& path);

// Creates or truncates `path` for writing (mode 0644 before the umask), refusing anything that
// is not a regular file like open_regular_file(), without blocking on a FIFO.
FileDescriptor create_regular_file(const std::string& path);

// The size of an open file in bytes (fstat).
int64_t file_size(int fd, const std::string& path);

// Reads up to n bytes at `offset` with pread(2), retrying interrupted and partial reads; returns
// the bytes read, fewer than n only at the end of the file. An I/O error is an Error naming the
// path. Safe to call from several threads on one descriptor.
int64_t read_at(int fd, const std::string& path, int64_t offset, void* out, int64_t n);

// Writes all n bytes, retrying partial writes; an Error naming the path otherwise.
void write_all(int fd, const std::string& path, const void* data, int64_t n);

// The whole content of a regular file of at most max_bytes bytes (a larger one is an Error, not
// an allocation that could exhaust memory).
std::string read_regular_file(const std::string& path, int64_t max_bytes);

// Raises this process's soft limit on open files, within its hard limit, to at least
// needed + 256 (room for sockets and libraries): a loader keeps one descriptor open per shard,
// FineWeb-100B has 1030 shards, and the usual soft limit is 1024. Returns the soft limit now.
int64_t raise_open_file_limit(int64_t needed);

}  // namespace muongpt
