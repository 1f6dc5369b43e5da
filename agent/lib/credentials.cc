#include "cppnet/credentials.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace cppnet {

absl::Status ReadSecretFile(const char* flag, const std::string& path, std::string* secret) {
  std::ifstream f(path);
  if (!f) return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": ", strerror(errno)));
  std::getline(f, *secret);
  if (!secret->empty() && secret->back() == '\r') secret->pop_back();
  if (secret->empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": empty"));
  return absl::OkStatus();
}

std::string ScrubPasswordArg(int argc, char** argv) {
  bool found = false;
  for (int i = 1; i < argc; i++) {
    char* value = nullptr;
    if (strcmp(argv[i], "--etcd-password") == 0 && i + 1 < argc)
      value = argv[i + 1];
    else if (strncmp(argv[i], "--etcd-password=", 16) == 0)
      value = argv[i] + 16;
    if (!value) continue;
    memset(value, 'x', strlen(value));
    found = true;
  }
  return found ? "--etcd-password on the command line was readable by every user of this host "
                 "(/proc/PID/cmdline); "
                 "use --etcd-password-file or CPPNET_ETCD_PASSWORD"
               : "";
}

}  // namespace cppnet
