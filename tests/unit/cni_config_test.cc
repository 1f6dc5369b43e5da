#include "cppnet/cni_config.h"

#include <gtest/gtest.h>

namespace cppnet {
namespace {

TEST(CniConfig, MistypedFieldsAreNamed) {
  for (const char* field :
       {"cniVersion", "name", "type", "network", "subnetFile", "configDir", "bridge"}) {
    auto c = ParseCniConfig(std::string(R"({")") + field + R"(":7})");
    ASSERT_FALSE(c.ok()) << field;
    EXPECT_TRUE(absl::IsInvalidArgument(c.status())) << field;
    EXPECT_EQ(c.status().message(), std::string("network configuration: field \"") + field +
                                        "\" must be a string (got 7)");
  }
  auto c = ParseCniConfig(R"({"ipam":"host-local"})");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "network configuration: field \"ipam\" must be an object (got \"host-local\")");
  EXPECT_TRUE(
      ParseCniConfig(R"({"cniVersion":"1.0.0","network":"overlay","ipam":{},"prevResult":null})")
          .ok());
}

TEST(CniConfig, UndecodableInputIsRefusedBounded) {
  for (const std::string& bad :
       {std::string("[1]"), std::string("{"), std::string(70, '[') + std::string(70, ']'),
        "{\"prevResult\":" + std::string(100000, '[') + std::string(100000, ']') + "}",
        "{\"x\":\"" + std::string(kMaxCniConfigBytes, 'a') + "\"}"}) {
    auto c = ParseCniConfig(bad);
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(absl::IsOutOfRange(c.status())) << c.status().message();
  }
}

VlanNetwork Vlan10() {
  VlanNetwork n;
  n.name = "vlan10";
  n.subnets4.push_back({Prefix4{0xc6120a00, 24}, 0xc6120a01});
  n.subnets6.push_back({Prefix6{static_cast<unsigned __int128>(0x20010db800100000ULL) << 64, 64},
                        (static_cast<unsigned __int128>(0x20010db800100000ULL) << 64) | 1});
  return n;
}

TEST(CniConfig, RuntimeRangesMustFitTheNetwork) {
  auto check = [](const char* ipam) {
    return CheckRuntimeRanges(nlohmann::json::parse(ipam), Vlan10());
  };
  EXPECT_TRUE(
      check(
          R"({"ranges":[[{"subnet":"198.18.10.0/24","rangeStart":"198.18.10.128","gateway":"198.18.10.1"}]]})")
          .ok());
  EXPECT_TRUE(
      check(R"({"ranges":[[{"subnet":"198.18.10.0/24","rangeStart":"198.18.10.2"}]]})").ok());
  EXPECT_TRUE(
      check(R"({"ranges":[[{"subnet":"2001:db8:10::/64","rangeStart":"2001:db8:10::8000"}]]})")
          .ok());
  EXPECT_TRUE(check(R"({"type":"dhcp"})").ok());
  EXPECT_EQ(check(R"({"ranges":[[{"subnet":"198.18.99.0/24"}]]})").message(),
            "ipam: range 198.18.99.0/24 is outside the subnets of network vlan10");
  EXPECT_EQ(check(R"({"ranges":[[{"subnet":"198.18.0.0/16"}]]})").message(),
            "ipam: range 198.18.0.0/16 is outside the subnets of network vlan10");
  EXPECT_EQ(check(R"({"ranges":[[{"subnet":"198.18.10.0/24"}]]})").message(),
            "ipam: range 198.18.10.0/24 covers the gateway 198.18.10.1 of network vlan10");
  EXPECT_EQ(check(R"({"ranges":[[{"subnet":"2001:db8:10::/64","gateway":"2001:db8:10::fe"}]]})")
                .message(),
            "ipam: range 2001:db8:10::/64 covers the gateway 2001:db8:10::1 of network vlan10");
  EXPECT_EQ(check(R"({"ranges":[[{"subnet":"2001:db8:99::/64"}]]})").message(),
            "ipam: range 2001:db8:99::/64 is outside the subnets of network vlan10");
  EXPECT_EQ(check(R"({"ranges":{}})").message(), "ipam: \"ranges\" must be an array");
  EXPECT_EQ(check(R"({"ranges":[[{"subnet":5}]]})").message(),
            "ipam: every range needs a \"subnet\" string");
  EXPECT_EQ(check(R"({"ranges":[[{"subnet":"nonsense"}]]})").message(),
            "ipam: range subnet \"nonsense\" is not a CIDR");
}

}  // namespace
}  // namespace cppnet
