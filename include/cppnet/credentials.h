// Secrets on the command line and in files (etcd passwords).
#pragma once
#include <string>

#include "absl/status/status.h"

namespace cppnet {

// The first line of `path` (without CR/LF) into *secret; errors name the flag, the file
// and the cause, and an empty secret is one.
absl::Status ReadSecretFile(const char* flag, const std::string& path, std::string* secret);

// Credentials in argv are readable by every user (/proc/PID/cmdline): overwrites the
// value of --etcd-password in argv and returns a warning to log, empty when absent.
std::string ScrubPasswordArg(int argc, char** argv);

}  // namespace cppnet
