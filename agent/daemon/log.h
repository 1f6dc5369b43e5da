// One line per event on stderr (journald adds the host and unit), stable wording.
#pragma once
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace cppnet {

template <typename... Args>
void Log(char level, const Args&... args) {
  std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), " ",
                   std::string(1, level), " ", args..., "\n");
  fputs(line.c_str(), stderr);
}
#define LOG_INFO(...) ::cppnet::Log('I', __VA_ARGS__)
#define LOG_WARN(...) ::cppnet::Log('W', __VA_ARGS__)
#define LOG_ERROR(...) ::cppnet::Log('E', __VA_ARGS__)

}  // namespace cppnet
