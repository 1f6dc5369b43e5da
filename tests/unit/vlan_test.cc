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
  a.ip_ranges = {"192.168.216.128/25"};
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
            [](auto& a) { a.ip_ranges = {"10.5.0.0/25"}; }),
       "invalid ip-range 10.5.0.0/25: no --subnet contains this range"},
      {with(Args({"10.4.0.0/24"}, {"parent=eth1.11"}, "r"),
            [](auto& a) { a.ip_ranges = {"10.4.0.7/25"}; }),
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

// Several subnets per family, each --ip-range and --gateway on the subnet that contains
// it whatever the order (Docker's consolidation), IPv6 ranges included.
TEST(VlanNetwork, SeveralSubnetsWithTheirOwnRangesAndGateways) {
  NetworkCreateArgs a =
      Args({"10.20.0.0/24", "10.21.0.0/24", "2001:db8:20::/64"}, {"parent=eth1.20"}, "multi");
  a.ipv6 = true;
  a.ip_ranges = {"10.21.0.128/25", "2001:db8:20::8000/113", "10.20.0.64/26"};
  a.gateways = {"10.21.0.254", "10.20.0.1"};
  auto n = BuildVlanNetwork(a, {}, HostHas);
  ASSERT_TRUE(n.ok()) << n.status().message();
  ASSERT_EQ(n->subnets4.size(), 2u);
  EXPECT_EQ(FormatPrefix4(*n->subnets4[0].ip_range), "10.20.0.64/26");
  EXPECT_EQ(FormatIp4(n->subnets4[0].gateway), "10.20.0.1");
  EXPECT_EQ(FormatPrefix4(*n->subnets4[1].ip_range), "10.21.0.128/25");
  EXPECT_EQ(FormatIp4(n->subnets4[1].gateway), "10.21.0.254");
  EXPECT_EQ(FormatPrefix6(*n->subnets6[0].ip_range), "2001:db8:20::8000/113");
  EXPECT_EQ(FormatIp6(n->subnets6[0].gateway), "2001:db8:20::1");  // default
  auto back = ParseVlanNetwork(SerializeVlanNetwork(*n));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(SerializeVlanNetwork(*back), SerializeVlanNetwork(*n));
  // A file of an earlier version: one top-level ip_range.
  auto old = ParseVlanNetwork(R"({"name":"o","driver":"macvlan","mode":"bridge","parent":"eth1.9",
      "trunk":"eth1","vlan":9,"subnets":[{"subnet":"10.9.0.0/24","gateway":"10.9.0.1"}],
      "ip_range":"10.9.0.128/25","aux_addresses":{},"ipv6":false,"internal":false})");
  ASSERT_TRUE(old.ok()) << old.status().message();
  EXPECT_EQ(FormatPrefix4(*old->subnets4[0].ip_range), "10.9.0.128/25");
}

TEST(VlanNetwork, WithoutParentInternalWithItsOwnKey) {
  auto a = BuildVlanNetwork(Args({"10.40.0.0/24"}, {}, "lone1"), {}, HostHas);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_TRUE(a->parentless());
  EXPECT_TRUE(a->internal);  // as Docker makes it
  EXPECT_EQ(a->local_id, 1);
  auto b = BuildVlanNetwork(Args({"10.41.0.0/24"}, {}, "lone2"), {*a}, HostHas);
  ASSERT_TRUE(b.ok()) << b.status().message();  // two of them do not share "a VLAN"
  EXPECT_EQ(b->local_id, 2);
  EXPECT_NE(a->TrunkKey(0), b->TrunkKey(0));
  auto back = ParseVlanNetwork(SerializeVlanNetwork(*b));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->local_id, 2);
  EXPECT_EQ(back->TrunkKey(0), b->TrunkKey(0));
}

TEST(VlanNetwork, Ipv6OnlyL3sAndIpvlanFlags) {
  NetworkCreateArgs a = Args({"2001:db8:30::/64"}, {"parent=eth1.30"}, "v6only");
  a.ipv4 = false;
  a.ipv6 = true;
  auto n = BuildVlanNetwork(a, {}, HostHas);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_TRUE(n->subnets4.empty());
  auto back = ParseVlanNetwork(SerializeVlanNetwork(*n));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_FALSE(back->ipv4);
  NetworkCreateArgs b =
      Args({"10.31.0.0/24"}, {"parent=eth1.31", "ipvlan_mode=l3s", "ipvlan_flag=private"}, "f");
  b.driver = "ipvlan";
  auto f = BuildVlanNetwork(b, {}, HostHas);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->mode, "l3s");
  EXPECT_EQ(f->flag, "private");
  back = ParseVlanNetwork(SerializeVlanNetwork(*f));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->flag, "private");
}

TEST(VlanNetwork, ConsolidationErrorsInDockersWording) {
  auto with = [](NetworkCreateArgs a, auto f) {
    f(a);
    return a;
  };
  const std::pair<NetworkCreateArgs, const char*> cases[] = {
      {with(Args({"10.4.0.0/24", "10.5.0.0/24"}, {"parent=eth1.11"}, "m"),
            [](auto& a) { a.ip_ranges = {"10.6.0.0/25"}; }),
       "no matching subnet for range 10.6.0.0/25"},
      {with(Args({"10.4.0.0/24", "10.5.0.0/24"}, {"parent=eth1.11"}, "m"),
            [](auto& a) { a.gateways = {"10.6.0.1"}; }),
       "no matching subnet for gateway 10.6.0.1"},
      {with(Args({"10.4.0.0/24", "10.5.0.0/24"}, {"parent=eth1.11"}, "m"),
            [](auto& a) {
              a.ip_ranges = {"10.4.0.0/25", "10.4.0.128/25"};
            }),
       "cannot configure multiple ranges (10.4.0.128/25, 10.4.0.0/25) on the same subnet "
       "(10.4.0.0/24)"},
      {with(Args({"10.4.0.0/24", "10.5.0.0/24"}, {"parent=eth1.11"}, "m"),
            [](auto& a) {
              a.gateways = {"10.4.0.1", "10.4.0.2"};
            }),
       "cannot configure multiple gateways (10.4.0.2, 10.4.0.1) for the same subnet (10.4.0.0/24)"},
      {Args({"10.4.0.0/24", "10.4.0.128/25"}, {"parent=eth1.11"}, "m"),
       "multiple overlapping subnet configuration is not allowed"},
      {with(Args({"10.4.0.0/24"}, {"parent=eth1.11"}, "m"),
            [](auto& a) {
              a.gateways = {"10.4.0.1", "10.4.0.2"};
            }),
       "every ip-range or gateway must have a corresponding subnet"},
      {with(Args({"2001:db8::/64"}, {"parent=eth1.11"}, "m"), [](auto& a) { a.ipv4 = false; }),
       "IPv4 or IPv6 must be enabled"},
      {with(Args({"10.4.0.0/24", "2001:db8::/64"}, {"parent=eth1.11"}, "m"),
            [](auto& a) {
              a.ipv4 = false;
              a.ipv6 = true;
            }),
       "IPv4 subnet 10.4.0.0/24 on a network with --ipv4=false"},
      {with(Args({"10.4.0.0/24"}, {"parent=eth1.11", "ipvlan_flag=loud"}, "m"),
            [](auto& a) { a.driver = "ipvlan"; }),
       "requested ipvlan flag 'loud' is not valid, 'bridge' is the ipvlan driver default"},
      {Args({"10.4.0.0/24"}, {"parent=eth1.11", "ipvlan_flag=private"}, "m"),
       "unknown option \"ipvlan_flag\" for the macvlan driver"},
  };
  for (const auto& [args, error] : cases) {
    auto n = BuildVlanNetwork(args, {}, HostHas);
    ASSERT_FALSE(n.ok()) << error;
    EXPECT_NE(n.status().message().find(error), std::string::npos)
        << n.status().message() << " / want: " << error;
  }
}

}  // namespace
}  // namespace cppnet
