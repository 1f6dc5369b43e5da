// The local API over a real unix socket in a temporary directory: answers and errors
// cross intact, bad requests get an error, oversized ones are cut off, and a client
// waits (bounded) for an agent that is starting.
#include "local_api_server.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "cppnet/local_api.h"

namespace cppnet::test {
namespace {

using nlohmann::json;

class LocalApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cppnet-api-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/agent.sock";
  }
  void TearDown() override {
    server_.reset();
    std::string cmd = "rm -rf " + dir_;
    (void)!system(cmd.c_str());
  }
  void Serve() {
    auto s = LocalApiServer::Start(
        path_,
        [](const std::string& m, const json& p) -> absl::StatusOr<json> {
          if (m == "echo") return p;
          if (m == "busy") return absl::FailedPreconditionError("network x has active endpoints");
          return absl::InvalidArgumentError("unknown method \"" + m + "\"");
        },
        geteuid());
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  // A raw exchange: what a client that does not speak the protocol gets back.
  std::string Raw(const std::string& bytes) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path_.c_str(), sizeof(a.sun_path) - 1);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    (void)!send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    std::string in;
    char buf[512];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) in.append(buf, n);
    close(fd);
    return in;
  }
  std::string dir_, path_;
  std::unique_ptr<LocalApiServer> server_;
};

TEST_F(LocalApiTest, AnswersAndErrorsCrossIntact) {
  Serve();
  auto r = CallAgent("echo", {{"subnet", "198.19.9.0/24"}, {"n", 7}}, absl::ZeroDuration(), path_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["subnet"], "198.19.9.0/24");
  EXPECT_EQ((*r)["n"], 7);
  auto e = CallAgent("busy", json::object(), absl::ZeroDuration(), path_);
  EXPECT_TRUE(absl::IsFailedPrecondition(e.status()));
  EXPECT_EQ(e.status().message(), "network x has active endpoints");
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);  // root only, as the agent runs it
}

TEST_F(LocalApiTest, BadRequestsGetAnErrorOrNothing) {
  Serve();
  json a = json::parse(Raw("{not json\n"));
  EXPECT_EQ(a["ok"], false);
  EXPECT_EQ(a["code"], static_cast<int>(absl::StatusCode::kInvalidArgument));
  a = json::parse(Raw("{\"params\": {}}\n"));
  EXPECT_EQ(a["ok"], false);
  a = json::parse(Raw(std::string(100000, '[') + "\n"));  // nesting bounded before parsing
  EXPECT_EQ(a["ok"], false);
  EXPECT_EQ(Raw(std::string(kMaxApiMessageBytes + 10, 'x')), "");  // cut off, no answer
  EXPECT_TRUE(
      CallAgent("echo", json::object(), absl::ZeroDuration(), path_).ok());  // still serving
}

TEST_F(LocalApiTest, WaitsABoundedTimeForTheAgent) {
  const absl::Time t0 = absl::Now();
  auto r = CallAgent("echo", json::object(), absl::Milliseconds(300), path_);
  EXPECT_TRUE(absl::IsUnavailable(r.status()));
  EXPECT_GE(absl::Now() - t0, absl::Milliseconds(300));
  EXPECT_NE(r.status().message().find("cppnet-agent is not running on this host (" + path_),
            std::string::npos)
      << r.status();
  std::thread later([&] {
    absl::SleepFor(absl::Milliseconds(200));  // the agent comes up while the client waits
    Serve();
  });
  r = CallAgent("echo", {{"x", 1}}, absl::Seconds(5), path_);
  later.join();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["x"], 1);
}

}  // namespace
}  // namespace cppnet::test
