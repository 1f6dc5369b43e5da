// One line per event on stderr, stable wording, with a level. Under systemd (stderr connected to
// the journal, JOURNAL_STREAM) each line starts with its syslog priority in sd-daemon's "<N>"
// form instead of a timestamp, so `journalctl -p err` finds the errors; otherwise
// "<RFC 3339 time> <E|W|I|D> message". The same message repeated within kRepeatWindow is
// logged kRepeatBurst times, then counted, and the count logged once the window has passed.
#pragma once
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace cppnet {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

inline constexpr absl::Duration kRepeatWindow = absl::Seconds(30);
inline constexpr int kRepeatBurst = 5;

// "error", "warn", "info", "debug"; anything else is an error naming the value.
absl::StatusOr<LogLevel> ParseLogLevel(const std::string& name);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
// Decides the output form once (journal or not); called by main before anything is logged,
// and by tests with the answer they want.
void SetLogToJournal(bool journal);
bool StderrIsJournal();
// Writes one line (rate limited as above). `now` for tests; absl::Now() otherwise.
void EmitLog(LogLevel level, const std::string& message, absl::Time now = absl::Now());
// Where EmitLog writes (stderr unless a test captures it); nullptr restores stderr.
void SetLogSink(std::string* sink);

template <typename... Args>
void Log(LogLevel level, const Args&... args) {
  if (LogEnabled(level)) EmitLog(level, absl::StrCat(args...));
}
#define LOG_DEBUG(...) ::cppnet::Log(::cppnet::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) ::cppnet::Log(::cppnet::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) ::cppnet::Log(::cppnet::LogLevel::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) ::cppnet::Log(::cppnet::LogLevel::kError, __VA_ARGS__)

}  // namespace cppnet
