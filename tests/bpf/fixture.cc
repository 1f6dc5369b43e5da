// The process-wide part of the BPF packet tests: a network namespace of its own
// (the programs' FIB lookups see its underlay veth and the host-gw peer's neighbour
// entry, never the machine's) and the datapath loaded once.
#include <sched.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "fixture.h"

namespace cppnet::test {
Datapath* g_dp = nullptr;
int g_underlay = 1;
std::string g_skip;

uint64_t Packets(uint32_t id) {
  auto s = ReadStats(g_dp->maps().stats());
  return s.ok() ? (*s)[id].packets : ~0ull;
}
uint64_t DatapathTest::Counter(uint32_t id) { return Packets(id); }
}  // namespace cppnet::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (GTEST_FLAG_GET(list_tests)) return RUN_ALL_TESTS();  // ctest's discovery
  if (geteuid() == 0) {
    if (unshare(CLONE_NEWNET) != 0) {
      fprintf(stderr, "unshare(CLONE_NEWNET): %s\n", strerror(errno));
      return 1;
    }
    const std::string setup =
        std::string("ip link set lo up && ip link add ") + cppnet::test::kUnderlayName +
        " type veth peer name cpt-under1 && ip link set " + cppnet::test::kUnderlayName +
        " up && ip link set cpt-under1 up && ip addr add 198.18.0.1/24 dev " +
        cppnet::test::kUnderlayName + " && ip neigh add 198.18.0.4 lladdr 02:00:00:00:00:04 dev " +
        cppnet::test::kUnderlayName + " nud permanent && sysctl -qw net.ipv4.conf.all.forwarding=1";
    if (system(setup.c_str()) != 0) {
      fprintf(stderr, "cannot set up the test namespace: %s\n", setup.c_str());
      return 1;
    }
    cppnet::test::g_underlay = static_cast<int>(if_nametoindex(cppnet::test::kUnderlayName));
  }
  auto dp = cppnet::Datapath::Load("");
  if (!dp.ok()) {
    if (geteuid() != 0 || absl::IsPermissionDenied(dp.status()) ||
        dp.status().message().find("Operation not permitted") != std::string::npos) {
      cppnet::test::g_skip = absl::StrCat("cannot load BPF programs (", dp.status().message(), ")");
      return RUN_ALL_TESTS();
    }
    fprintf(stderr, "cannot load the datapath: %s\n", std::string(dp.status().message()).c_str());
    return 1;
  }
  cppnet::test::g_dp = dp->get();
  return RUN_ALL_TESTS();
}
