#include "log.h"

#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace cppnet {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<bool> g_journal{false};

struct Repeats {
  absl::Time window_start;
  int seen = 0;  // in this window
};
std::mutex g_mu;                            // guards the rest
std::map<std::string, Repeats>* g_repeats;  // by message (level letter first)
std::string* g_sink = nullptr;

constexpr char kLetter[] = {'E', 'W', 'I', 'D'};
constexpr int kPriority[] = {3, 4, 6, 7};  // syslog: err, warning, info, debug

void Write(LogLevel level, const std::string& text, absl::Time now) {
  const int i = static_cast<int>(level);
  const std::string line =
      g_journal ? absl::StrCat("<", kPriority[i], ">", text, "\n")
                : absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now, absl::UTCTimeZone()),
                               " ", std::string(1, kLetter[i]), " ", text, "\n");
  if (g_sink)
    g_sink->append(line);
  else
    fputs(line.c_str(), stderr);
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(const std::string& name) {
  if (name == "error") return LogLevel::kError;
  if (name == "warn" || name == "warning") return LogLevel::kWarn;
  if (name == "info") return LogLevel::kInfo;
  if (name == "debug") return LogLevel::kDebug;
  return absl::InvalidArgumentError(
      absl::StrCat("log level \"", name, "\": not one of error, warn, info, debug"));
}

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
bool LogEnabled(LogLevel level) { return static_cast<int>(level) <= g_level; }
void SetLogToJournal(bool journal) { g_journal = journal; }

bool StderrIsJournal() {
  // systemd sets JOURNAL_STREAM=<device>:<inode> of the stream it connected.
  const char* js = getenv("JOURNAL_STREAM");
  if (!js) return false;
  std::pair<std::string, std::string> parts = absl::StrSplit(js, ':');
  uint64_t dev = 0, ino = 0;
  struct stat st {};
  return absl::SimpleAtoi(parts.first, &dev) && absl::SimpleAtoi(parts.second, &ino) &&
         fstat(2, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

void SetLogSink(std::string* sink) {
  std::lock_guard<std::mutex> l(g_mu);
  g_sink = sink;
}

void EmitLog(LogLevel level, const std::string& message, absl::Time now) {
  std::lock_guard<std::mutex> l(g_mu);
  if (!g_repeats) g_repeats = new std::map<std::string, Repeats>;  // lives to the exit
  // Windows that have passed: their suppressed counts, then the entry goes.
  for (auto it = g_repeats->begin(); it != g_repeats->end();) {
    if (now - it->second.window_start < kRepeatWindow) {
      ++it;
      continue;
    }
    if (it->second.seen > kRepeatBurst) {
      const LogLevel lv = static_cast<LogLevel>(it->first[0] - '0');
      Write(lv,
            absl::StrCat(it->first.substr(1), " (repeated ", it->second.seen - kRepeatBurst,
                         " more times in ", absl::FormatDuration(kRepeatWindow), ", not logged)"),
            now);
    }
    it = g_repeats->erase(it);
  }
  const std::string key = absl::StrCat(static_cast<int>(level), message);
  Repeats& r = (*g_repeats)[key];
  if (r.seen == 0) r.window_start = now;
  if (++r.seen > kRepeatBurst) return;
  Write(level, message, now);
}

}  // namespace cppnet
