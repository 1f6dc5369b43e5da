// Host-wide serialisation between the agent, cppnetctl and CNI plugin runs.
#pragma once
#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace cppnet {

// An exclusive flock on a file under /run/cppnet, released when this object goes.
// Fails closed: a lock that cannot be taken is an error naming the file and the cause,
// never a silent run without it.
class FileLock {
 public:
  static absl::StatusOr<FileLock> Acquire(const std::string& path);
  FileLock(FileLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  FileLock& operator=(FileLock&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace cppnet
