// The run directory's lock: one process at a time writes a run. Two fresh runs with the same
// name, or a resume while the run still trains, would otherwise interleave their metrics and
// delete each other's half-written checkpoints. The lock is an flock() on <run>/.lock, which
// the kernel releases when its process ends however it ends, so a run killed by SIGKILL never
// blocks its own resume; the file holds the owner's pid and host for the error message.
#pragma once

#include <string>

namespace muongpt {

class RunLock {
 public:
  // Creates the directory if needed and takes its lock; Error naming the directory and the
  // process that holds it when another one does.
  explicit RunLock(const std::string& run_dir);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace muongpt
