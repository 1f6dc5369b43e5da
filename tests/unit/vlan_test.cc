#include "cppnet/vlan.h"

#include <gtest/gtest.h>

namespace cppnet {
namespace {

bool HostHas(const std::string& ifname) { return ifname == "eth0" || ifname == "eth1"; }

NetworkCreateArgs Args(std::vector<std::string> subnets, std::vector<std::string> opts,
                       std::string name = "vlan10") {
  NetworkCreateArgs a;
  a.name = name;
  a.subnets = std::move(subnets);
  a.options = std::move(opts);
  return a;
}

TEST(VlanNetwork, DockerStyleMacvlanOnATrunk) {
  NetworkCreateArgs a = Args({"10.10.90.0/24"}, {"parent=eth1.19"}, "vlan19");
  a.gateways = {"10.10.90.1"};
  auto n = BuildVlanNetwork(a, {}, HostHas);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(n->driver, "macvlan");
  EXPECT_EQ(n->mode, "bridge");
  EXPECT_EQ(n->trunk, "eth1");
  EXPECT_EQ(n->vlan, 19);
  EXPECT_EQ(FormatIp4(n->subnets4[0].gateway), "10.10.90.1");
  // Round trip through the networks.d file.
  auto back = ParseVlanNetwork(SerializeVlanNetwork(*n));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(SerializeVlanNetwork(*back), SerializeVlanNetwork(*n));
}

TEST(VlanNetwork, DualStackIpvlanWithRangesAndDefaults) {
  NetworkCreateArgs a =
      Args({"192.168.216.0/24", "2001:db8:abc8::/64"}, {"parent=eth0", "ipvlan_mode=l3"}, "ipv");
  a.driver = "ipvlan";
  a.gateways = {"2001:db8:abc8::10"};
  a.ipv6 = true;
  a.ip_range = "192.168.216.128/25";
  a.aux_addresses = {"my-router=192.168.216.129"};
  auto n = BuildVlanNetwork(a, {}, HostHas);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(n->vlan, 0);  // untagged
  EXPECT_EQ(n->mode, "l3");
  EXPECT_EQ(FormatIp4(n->subnets4[0].gateway), "192.168.216.1");  // default: first address
  EXPECT_EQ(FormatIp6(n->subnets6[0].gateway), "2001:db8:abc8::10");
  EXPECT_EQ(FormatIp4(n->aux_addresses.at("my-router")), "192.168.216.129");
  auto back = ParseVlanNetwork(SerializeVlanNetwork(*n));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(SerializeVlanNetwork(*back), SerializeVlanNetwork(*n));
}

TEST(VlanNetwork, RejectsWithDockersWording) {
  auto existing = BuildVlanNetwork(
      [] {
        NetworkCreateArgs a = Args({"10.2.0.0/24"}, {"parent=eth1.10"}, "vlan10");
        a.driver = "ipvlan";
        return a;
      }(),
      {}, HostHas);
  ASSERT_TRUE(existing.ok());
  struct Case {
    NetworkCreateArgs args;
    const char* error;
  };
  auto with = [](NetworkCreateArgs a, auto f) {
    f(a);
    return a;
  };
  const Case cases[] = {
      {Args({"10.3.0.0/24"}, {"parent=eth1.5000"}, "v"),
       "vlan id must be between 1-4094, received: 5000"},
      {Args({"10.3.0.0/24"}, {"parent=eth1.0"}, "v"),
       "vlan id must be between 1-4094, received: 0"},
      {Args({"10.3.0.0/24"}, {"parent=eth1.x"}, "v"), "unable to parse vlan id x"},
      {Args({"10.3.0.0/24"}, {"parent=eth9"}, "v"),
       "parent interface was not found on the host: eth9"},
      {Args({"10.3.0.0/24"}, {"parent=eth9.10"}, "v"),
       "parent interface was not found on the host: eth9"},
      {with(Args({"10.3.0.0/24"}, {"parent=eth1.10"}, "v2"), [](auto& a) { a.driver = "ipvlan"; }),
       "network vlan10 is already using parent interface eth1.10"},
      {with(Args({"10.2.0.0/24"}, {"parent=eth1.11"}, "g"),
            [](auto& a) { a.gateways = {"10.1.0.1"}; }),
       "invalid gateway 10.1.0.1: parent subnet 10.2.0.0/24 doesn't contain this address"},
      {with(Args({"10.4.0.0/24"}, {"parent=eth1.11"}, "r"),
            [](auto& a) { a.ip_range = "10.5.0.0/25"; }),
       "invalid ip-range 10.5.0.0/25: no --subnet contains this range"},
      {with(Args({"10.4.0.0/24"}, {"parent=eth1.11"}, "r"),
            [](auto& a) { a.ip_range = "10.4.0.7/25"; }),
       "invalid ip-range 10.4.0.7/25"},
      {with(Args({"10.4.0.0/24"}, {"parent=eth1.11"}, "x"),
            [](auto& a) { a.aux_addresses = {"gw=10.9.0.1"}; }),
       "invalid auxiliary address gw=10.9.0.1: no --subnet contains this address"},
      {Args({"10.4.0.0/24"}, {"parent=eth1.11", "macvlan_mode=fast"}, "m"),
       "requested macvlan mode 'fast' is not valid, 'bridge' mode is the macvlan driver default"},
      {with(Args({"10.4.0.0/24"}, {"parent=eth1.11", "ipvlan_mode=l4"}, "m"),
            [](auto& a) { a.driver = "ipvlan"; }),
       "requested ipvlan mode 'l4' is not valid, 'l2' mode is the ipvlan driver default"},
      {with(Args({"10.4.0.0/24"}, {"parent=eth1.11"}, "d"), [](auto& a) { a.driver = "bridge"; }),
       "unknown driver \"bridge\": use macvlan or ipvlan"},
      {Args({"10.4.0.0/24"}, {}, "p"), "-o parent is required"},
      {Args({}, {"parent=eth1.11"}, "s"), "an IPv4 --subnet is required"},
      {Args({"10.4.0.0/24", "2001:db8::/64"}, {"parent=eth1.11"}, "s6"),
       "IPv6 subnet 2001:db8::/64 needs --ipv6"},
      {with(Args({"10.4.0.0/24"}, {"parent=eth1.11"}, "s6"), [](auto& a) { a.ipv6 = true; }),
       "--ipv6 needs an IPv6 --subnet"},
      {Args({"10.4.0.0/24"}, {"parent=eth1.11"}, "vlan10"),
       "network with name vlan10 already exists"},
      {Args({"10.2.0.128/25"}, {"parent=eth1.12"}, "o"),
       "subnet 10.2.0.128/25 overlaps network vlan10 (10.2.0.0/24)"},
      {Args({"10.6.0.0/24"}, {"parent=eth1.10"}, "samevlan"),
       "network vlan10 already uses VLAN 10 on eth1"},
      {Args({"10.4.0.0/24"}, {"parent=eth1.11"}, "bad/name"), "invalid network name \"bad/name\""},
      {Args({"10.4.0.0/24"}, {"parent=eth1.11", "mtu=9000"}, "o2"),
       "unknown option \"mtu\" for the macvlan driver"},
  };
  for (const Case& c : cases) {
    auto n = BuildVlanNetwork(c.args, {*existing}, HostHas);
    ASSERT_FALSE(n.ok()) << c.error;
    EXPECT_NE(n.status().message().find(c.error), std::string::npos)
        << n.status().message() << " / want: " << c.error;
  }
}

}  // namespace
}  // namespace cppnet
