#include "cppnet/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace cppnet {

absl::StatusOr<FileLock> FileLock::Acquire(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("lock ", path, ": ", strerror(errno)));
  if (flock(fd, LOCK_EX) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("lock ", path, ": ", strerror(err)));
  }
  return FileLock(fd);
}

FileLock::~FileLock() {
  if (fd_ >= 0) close(fd_);
}

}  // namespace cppnet
