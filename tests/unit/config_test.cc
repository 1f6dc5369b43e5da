#include "cppnet/config.h"

#include <gtest/gtest.h>

namespace cppnet {
namespace {

TEST(Config, VxlanWithDefaults) {
  auto c = ParseNetworkConfig(R"({"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->subnet_len, 24);
  EXPECT_EQ(FormatIp4(c->subnet_min), "10.5.1.0");
  EXPECT_EQ(FormatIp4(c->subnet_max), "10.5.255.0");
  EXPECT_EQ(c->backend.type, CPPNET_BACKEND_VXLAN);
  EXPECT_EQ(c->backend.vni, 1u);
  EXPECT_EQ(c->backend.port, 8472);
  EXPECT_EQ(c->ContainerMtu(1500), 1450);
}

TEST(Config, SubnetLenDefaultForSmallNetworks) {
  auto c = ParseNetworkConfig(R"({"Network":"10.5.0.0/23"})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->subnet_len, 25);
}

TEST(Config, MissingBackendIsUdpAndKeysAreCaseInsensitive) {
  auto c = ParseNetworkConfig(R"({"network":"10.5.0.0/16","subnetlen":26,"Unknown":true})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->backend.type, CPPNET_BACKEND_UDP);
  EXPECT_EQ(c->backend.port, 8285);
  EXPECT_EQ(c->subnet_len, 26);
  EXPECT_EQ(c->ContainerMtu(1500), 1472);
}

TEST(Config, ExplicitRangeAndBackendOptions) {
  auto c =
      ParseNetworkConfig(R"({"Network":"198.19.0.0/16","SubnetLen":24,"SubnetMin":"198.19.10.0",
      "SubnetMax":"198.19.20.0","Backend":{"Type":"vxlan","VNI":42,"Port":4789,"DirectRouting":true}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(FormatIp4(c->subnet_min), "198.19.10.0");
  EXPECT_EQ(FormatIp4(c->subnet_max), "198.19.20.0");
  EXPECT_EQ(c->backend.vni, 42u);
  EXPECT_EQ(c->backend.port, 4789);
  EXPECT_TRUE(c->backend.direct_routing);
}

struct BadCase {
  const char* json;
  const char* error;
};

TEST(Config, DualStackDefaultsAsFlanneld) {
  auto c = ParseNetworkConfig(
      R"({"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/48",
          "Backend":{"Type":"vxlan"}})");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c->enable_ipv4);
  EXPECT_TRUE(c->enable_ipv6);
  EXPECT_EQ(FormatPrefix6(*c->ipv6_network), "2001:db8::/48");
  EXPECT_EQ(c->ipv6_subnet_len, 64);
  EXPECT_EQ(FormatIp6(c->ipv6_subnet_min), "2001:db8:0:1::");
  EXPECT_EQ(FormatIp6(c->ipv6_subnet_max), "2001:db8:0:ffff::");
  auto small = ParseNetworkConfig(
      R"({"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/120",
          "Backend":{"Type":"host-gw"}})");
  ASSERT_TRUE(small.ok()) << small.status().message();
  EXPECT_EQ(small->ipv6_subnet_len, 122);
  // IPv6 only: no Network needed, the IPv4 fields stay empty.
  auto v6only = ParseNetworkConfig(
      R"({"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48",)"
      R"("Backend":{"Type":"vxlan"}})");
  ASSERT_TRUE(v6only.ok()) << v6only.status();
  EXPECT_FALSE(v6only->enable_ipv4);
  EXPECT_EQ(v6only->subnet_len, 0);
  EXPECT_EQ(v6only->ipv6_subnet_len, 64);
  // flanneld's udp backend (its default) is IPv4 only.
  auto udp = ParseNetworkConfig(
      R"({"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/48"})");
  ASSERT_FALSE(udp.ok());
  EXPECT_EQ(
      udp.status().message(),
      "config: EnableIPv6 with the udp backend: udp carries IPv4 only (use vxlan or host-gw)");
  // IPv6 fields are ignored unless EnableIPv6 is set.
  auto off = ParseNetworkConfig(R"({"Network":"10.5.0.0/16","IPv6Network":"garbage"})");
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->ipv6_network.has_value());
}

TEST(Config, RejectsBadConfigNamingFieldAndValue) {
  const BadCase cases[] = {
      {"not json", "config: not valid JSON"},
      {"[1,2]", "not an object"},
      {"{}", "Network is missing"},
      {R"({"Network":"10.5.0.0/40"})", "invalid prefix \"10.5.0.0/40\""},
      {R"({"Network":"10.5.0.0/16","SubnetLen":31})", "SubnetLen must be less than /31 (got 31)"},
      {R"({"Network":"10.5.0.0/16","SubnetLen":17})",
       "network must be able to accommodate at least four subnets"},
      {R"({"Network":"10.5.0.0/16","SubnetLen":"24"})", "SubnetLen must be an integer"},
      {R"({"Network":"10.5.0.0/16","SubnetMin":"10.6.0.0"})",
       "SubnetMin is not in the range of the Network (10.6.0.0"},
      {R"({"Network":"10.5.0.0/16","SubnetMax":"10.5.3.7"})",
       "SubnetMax is not on a SubnetLen boundary (10.5.3.7"},
      {R"({"Network":"10.5.0.0/16","SubnetMin":"10.5.9.0","SubnetMax":"10.5.3.0"})",
       "is greater than SubnetMax"},
      {R"({"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8::/48"})",
       "udp carries IPv4 only"},
      {R"({"Network":"10.5.0.0/16","Backend":{"Type":"gre"}})", "unknown backend type \"gre\""},
      {R"({"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}})",
       "VNI must be between 0 and 16777215"},
      {R"({"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","Port":70000}})",
       "Port must be between 1 and 65535"},
      {R"({"Network":"10.5.0.0/16","Backend":"vxlan"})", "Backend must be an object"},
      {R"({"Network":"10.5.0.0/16","EnableIPv4":false})",
       "EnableIPv4 is false and EnableIPv6 is not true"},
      {R"({"EnableIPv4":false,"EnableIPv6":true,"Backend":{"Type":"vxlan"}})",
       "EnableIPv6 is true but IPv6Network is missing"},
      {R"({"Network":"10.5.0.0/16","EnableIPv6":"yes"})", "EnableIPv6 must be true or false"},
      {R"({"Network":"10.5.0.0/16","EnableIPv6":true})",
       "EnableIPv6 is true but IPv6Network is missing"},
      {R"({"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"10.6.0.0/16"})",
       "IPv6Network: \"10.6.0.0\" is not an IPv6 address"},
      {R"({"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/48","IPv6SubnetLen":127})",
       "IPv6SubnetLen must be less than /127 (got 127)"},
      {R"({"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/64","IPv6SubnetLen":65})",
       "IPv6Network must be able to accommodate at least four subnets"},
      {R"({"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/48","IPv6SubnetMin":"2001:db9::"})",
       "IPv6SubnetMin is not in the range of the IPv6Network (2001:db9::"},
      {R"({"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/48","IPv6SubnetMax":"2001:db8:0:5::1"})",
       "IPv6SubnetMax is not on a IPv6SubnetLen boundary (2001:db8:0:5::1"},
  };
  for (const BadCase& c : cases) {
    auto r = ParseNetworkConfig(c.json);
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_NE(r.status().message().find(c.error), std::string::npos)
        << r.status().message() << " for " << c.json;
  }
}

}  // namespace
}  // namespace cppnet

namespace cppnet {
namespace {

TEST(Config, BackendNamesIdsAndPortsRoundTrip) {
  for (const char* name : {"vxlan", "udp", "host-gw"}) {
    auto id = BackendFromName(name);
    ASSERT_TRUE(id.has_value()) << name;
    EXPECT_STREQ(BackendName(*id), name);
  }
  EXPECT_FALSE(BackendFromName("gre").has_value());
  EXPECT_EQ(DefaultBackendPort(*BackendFromName("vxlan")), 8472);
  EXPECT_EQ(DefaultBackendPort(*BackendFromName("udp")), 8285);
  EXPECT_EQ(DefaultBackendPort(*BackendFromName("host-gw")), 0);
}

}  // namespace
}  // namespace cppnet
