#include "cppnet/subnet_env.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace cppnet {
namespace {

TEST(SubnetEnv, RendersFlanneldVariables) {
  SubnetEnv e{Prefix4{0x0a050000, 16}, Prefix4{0x0a053400, 24}, 1450, false};
  EXPECT_EQ(RenderSubnetEnv(e),
            "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.52.1/"
            "24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n");
}

TEST(SubnetEnv, RendersTheIpv6VariablesInFlanneldsOrder) {
  SubnetEnv e{Prefix4{0x0a050000, 16}, Prefix4{0x0a053400, 24}, 1430, true};
  e.network6 = *ParsePrefix6("2001:db8:100::/48");
  e.subnet6 = *ParsePrefix6("2001:db8:100:34::/64");
  const std::string text = RenderSubnetEnv(e);
  EXPECT_EQ(text,
            "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.52.1/24\n"
            "FLANNEL_IPV6_NETWORK=2001:db8:100::/48\nFLANNEL_IPV6_SUBNET=2001:db8:100:34::1/64\n"
            "FLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n");
  auto path = std::filesystem::temp_directory_path() / ("cppnet-env6-" + std::to_string(getpid()));
  ASSERT_TRUE(WriteFileAtomically(path.string(), text).ok());
  auto back = ReadSubnetEnvFile(path.string());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(FormatPrefix6(*back->subnet6), "2001:db8:100:34::/64");
  EXPECT_EQ(FormatPrefix6(*back->network6), "2001:db8:100::/48");
  EXPECT_EQ(FormatPrefix6(*ReadSubnet6FromEnvFile(path.string())), "2001:db8:100:34::/64");
  std::filesystem::remove(path);
}

TEST(SubnetEnv, Ipv6OnlyHasNoIpv4Variables) {
  SubnetEnv e{Prefix4{}, Prefix4{}, 1430, false};
  e.network6 = *ParsePrefix6("2001:db8:100::/48");
  e.subnet6 = *ParsePrefix6("2001:db8:100:34::/64");
  const std::string text = RenderSubnetEnv(e);
  EXPECT_EQ(text,
            "FLANNEL_IPV6_NETWORK=2001:db8:100::/48\nFLANNEL_IPV6_SUBNET=2001:db8:100:34::1/64\n"
            "FLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n");
  auto path = std::filesystem::temp_directory_path() / ("cppnet-env6o-" + std::to_string(getpid()));
  ASSERT_TRUE(WriteFileAtomically(path.string(), text).ok());
  auto back = ReadSubnetEnvFile(path.string());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->subnet.len, 0);
  EXPECT_EQ(FormatPrefix6(*back->subnet6), "2001:db8:100:34::/64");
  ASSERT_TRUE(WriteFileAtomically(path.string(), "FLANNEL_MTU=1430\n").ok());
  EXPECT_FALSE(ReadSubnetEnvFile(path.string()).ok());
  std::filesystem::remove(path);
}

TEST(SubnetEnv, WritesAtomicallyAndReadsBack) {
  auto dir = std::filesystem::temp_directory_path() / ("cppnet-env-" + std::to_string(getpid()));
  std::string path = (dir / "flannel" / "subnet.env").string();
  SubnetEnv e{Prefix4{0x0a050000, 16}, Prefix4{0x0a053400, 24}, 1450, true};
  ASSERT_TRUE(WriteFileAtomically(path, RenderSubnetEnv(e)).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), RenderSubnetEnv(e));
  auto back = ReadSubnetFromEnvFile(path);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(FormatPrefix4(*back), "10.5.52.0/24");
  std::filesystem::remove_all(dir);
}

TEST(SubnetEnv, ErrorsNameThePath) {
  auto st = WriteFileAtomically("/proc/cppnet-no/subnet.env", "x");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/proc/cppnet-no"), std::string::npos) << st.message();
  EXPECT_FALSE(ReadSubnetFromEnvFile("/nonexistent/subnet.env").has_value());
}

}  // namespace
}  // namespace cppnet
