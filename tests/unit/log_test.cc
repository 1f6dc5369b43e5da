// The agent's log: levels, journald priorities, and repeated messages counted, not repeated.
#include "log.h"

#include <gtest/gtest.h>

#include "absl/strings/str_split.h"

namespace cppnet {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogSink(&out_);
    SetLogLevel(LogLevel::kInfo);
    SetLogToJournal(false);
    // A clean slate for the repeat tracking: every earlier window has passed.
    EmitLog(LogLevel::kDebug, "reset", absl::Now() + absl::Hours(1000));
    out_.clear();
  }
  void TearDown() override { SetLogSink(nullptr); }
  std::vector<std::string> Lines() const { return absl::StrSplit(out_, '\n', absl::SkipEmpty()); }
  std::string out_;
};

TEST_F(LogTest, LevelsFilterAndLettersMark) {
  LOG_DEBUG("not shown at info");
  LOG_INFO("an info line");
  LOG_ERROR("an error line");
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 2u) << out_;
  EXPECT_NE(lines[0].find(" I an info line"), std::string::npos);
  EXPECT_NE(lines[1].find(" E an error line"), std::string::npos);
  SetLogLevel(LogLevel::kDebug);
  LOG_DEBUG("shown at debug");
  EXPECT_NE(out_.find(" D shown at debug"), std::string::npos);
  SetLogLevel(LogLevel::kError);
  LOG_WARN("hidden at error");
  EXPECT_EQ(out_.find("hidden"), std::string::npos);
}

TEST_F(LogTest, JournalLinesCarryTheSyslogPriority) {
  SetLogToJournal(true);
  LOG_ERROR("etcd unreachable");
  LOG_WARN("a warning");
  LOG_INFO("news");
  EXPECT_EQ(out_, "<3>etcd unreachable\n<4>a warning\n<6>news\n");
}

TEST_F(LogTest, RepeatsAreCountedAfterABurst) {
  const absl::Time t0 = absl::Now() + absl::Hours(2000);
  for (int i = 0; i < 50; i++) EmitLog(LogLevel::kWarn, "same", t0 + absl::Milliseconds(i));
  EmitLog(LogLevel::kWarn, "other", t0 + absl::Seconds(1));
  EXPECT_EQ(Lines().size(), static_cast<size_t>(kRepeatBurst) + 1) << out_;
  // After the window, the count of what was left out, then the message again.
  EmitLog(LogLevel::kWarn, "same", t0 + kRepeatWindow + absl::Seconds(1));
  auto lines = Lines();
  ASSERT_EQ(lines.size(), static_cast<size_t>(kRepeatBurst) + 3) << out_;
  EXPECT_NE(lines[kRepeatBurst + 1].find(" W same (repeated 45 more times in 30s, not logged)"),
            std::string::npos)
      << lines[kRepeatBurst + 1];
  EXPECT_NE(lines[kRepeatBurst + 2].find(" W same"), std::string::npos);
}

TEST(LogLevelTest, ParsesTheFourNamesOnly) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("error"), LogLevel::kError);
  auto bad = ParseLogLevel("loud");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("\"loud\""), std::string::npos);
}

}  // namespace
}  // namespace cppnet
