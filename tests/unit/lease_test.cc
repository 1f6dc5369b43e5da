#include "cppnet/lease.h"

#include <gtest/gtest.h>

namespace cppnet {
namespace {

const char* kPrefix = "/coreos.com/network/subnets/";

NetworkConfig Vxlan() {
  return *ParseNetworkConfig(R"({"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}})");
}

std::string VxLease(const char* ip, const char* mac) {
  return std::string(R"({"PublicIP":")") + ip +
         R"(","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":")" + mac + R"("}})";
}

TEST(Lease, ParsesFlanneldJsonWithUnknownFields) {
  auto l = ParseLease(R"({"PublicIP":"198.18.0.7","PublicIPv6":null,"BackendType":"vxlan",
      "BackendData":{"VNI":1,"VtepMAC":"5a:1b:2c:3d:4e:5f"},"Future":{"x":1}})");
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(FormatIp4(l->public_ip), "198.18.0.7");
  EXPECT_EQ(l->backend_type, "vxlan");
  EXPECT_EQ(l->vni, 1u);
  EXPECT_EQ(FormatMac(*l->vtep_mac), "5a:1b:2c:3d:4e:5f");
}

TEST(Lease, SerializesExactlyAsFlanneld) {
  Lease l{0xc6120003, "vxlan", 1, VtepMacFor(0xc6120003)};
  EXPECT_EQ(
      SerializeLease(l),
      R"({"PublicIP":"198.18.0.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:63:c6:12:00:03"}})");
  auto back = ParseLease(SerializeLease(l));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->public_ip, l.public_ip);
  EXPECT_EQ(back->vtep_mac, l.vtep_mac);
}

TEST(Lease, UdpLeaseCarriesTheCppnetMark) {
  Lease l{0xc6120003, "udp", 0, std::nullopt, true};
  EXPECT_EQ(
      SerializeLease(l),
      R"({"PublicIP":"198.18.0.3","PublicIPv6":null,"BackendType":"udp","BackendData":{"CppnetDatapath":1}})");
  auto back = ParseLease(SerializeLease(l));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->cppnet_datapath);
  auto flanneld = ParseLease(R"({"PublicIP":"198.18.0.4","BackendType":"udp"})");
  ASSERT_TRUE(flanneld.ok());
  EXPECT_FALSE(flanneld->cppnet_datapath);
  EXPECT_FALSE(
      ParseLease(R"({"PublicIP":"198.18.0.4","BackendData":{"CppnetDatapath":"x"}})").ok());
}

TEST(Lease, RejectsMalformed) {
  for (const char* bad :
       {"", "{", R"({"BackendType":"vxlan"})", R"({"PublicIP":"1.2.3"})",
        R"({"PublicIP":"0.0.0.0"})", R"({"PublicIP":"198.18.0.1","BackendData":{"VNI":"x"}})",
        R"({"PublicIP":"198.18.0.1","BackendData":{"VtepMAC":"zz"}})"})
    EXPECT_FALSE(ParseLease(bad).ok()) << bad;
}

TEST(Lease, SelectsValidPeersAndSkipsTheRestWithReasons) {
  std::vector<LeaseRecord> recs = {
      {std::string(kPrefix) + "198.19.1.0-24", VxLease("198.18.0.1", "0e:00:00:00:00:01"),
       10},  // ours
      {std::string(kPrefix) + "198.19.2.0-24", VxLease("198.18.0.2", "0e:00:00:00:00:02"), 11},
      {std::string(kPrefix) + "198.19.3.0-25", VxLease("198.18.0.3", "0e:00:00:00:00:03"),
       12},  // other len: ok
      {std::string(kPrefix) + "10.9.0.0-24", VxLease("198.18.0.4", "0e:00:00:00:00:04"), 13},
      {std::string(kPrefix) + "198.19.5.0-24", "{not json", 14},
      {std::string(kPrefix) + "198.19.6.1-24", VxLease("198.18.0.6", "0e:00:00:00:00:06"), 15},
      {std::string(kPrefix) + "198.19.7.0-24", R"({"PublicIP":"198.18.0.7"})", 16},  // udp lease
      {std::string(kPrefix) + "198.19.8.0-24",
       R"({"PublicIP":"198.18.0.8","BackendType":"vxlan","BackendData":{"VNI":1}})", 17},
      {std::string(kPrefix) + "198.19.2.0-23", VxLease("198.18.0.9", "0e:00:00:00:00:09"),
       18},  // overlaps older
      {std::string(kPrefix) + "198.19.0.0-23", VxLease("198.18.0.10", "0e:00:00:00:00:0a"),
       19},  // overlaps ours
      {std::string(kPrefix) + "198.19.9.0-24", VxLease("198.18.0.11", "01:00:00:00:00:0b"),
       20},  // multicast MAC
      {"/coreos.com/network/config", "{}", 1},
  };
  LeaseSet s = SelectPeerLeases(Vxlan(), kPrefix, Prefix4{0xc6130100, 24}, recs);
  ASSERT_EQ(s.routes.size(), 2u);
  EXPECT_TRUE(s.routes.count(Prefix4{0xc6130200, 24}));
  EXPECT_TRUE(s.routes.count(Prefix4{0xc6130300, 25}));
  std::map<std::string, std::string> why;
  for (const auto& k : s.skipped) why[k.key.substr(std::string(kPrefix).size())] = k.reason;
  EXPECT_EQ(why.size(), 8u);
  EXPECT_NE(why["10.9.0.0-24"].find("outside the Network"), std::string::npos);
  EXPECT_NE(why["198.19.5.0-24"].find("not valid JSON"), std::string::npos);
  EXPECT_NE(why["198.19.6.1-24"].find("host bits"), std::string::npos);
  EXPECT_NE(why["198.19.7.0-24"].find("backend type \"udp\""), std::string::npos);
  EXPECT_NE(why["198.19.8.0-24"].find("without a VtepMAC"), std::string::npos);
  EXPECT_NE(why["198.19.2.0-23"].find("overlaps the older lease 198.19.2.0/24"), std::string::npos);
  EXPECT_NE(why["198.19.0.0-23"].find("overlaps our subnet"), std::string::npos);
  EXPECT_NE(why["198.19.9.0-24"].find("not unicast"), std::string::npos);
}

TEST(Lease, DualStackFlanneldLeaseGivesItsIpv4Route) {
  // What a dual-stack flanneld host publishes: both subnets in the key, PublicIPv6 and
  // BackendV6Data beside the IPv4 fields.
  const std::vector<LeaseRecord> recs = {
      {std::string(kPrefix) + "198.19.253.0-24&2001:db8:100:fd::-64",
       R"({"PublicIP":"198.18.0.5","PublicIPv6":"2001:db8::5","BackendType":"vxlan",)"
       R"("BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:05"},)"
       R"("BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:00:00:00:06"}})",
       7}};
  LeaseSet s = SelectPeerLeases(Vxlan(), kPrefix, Prefix4{0xc6130100, 24}, recs);
  ASSERT_EQ(s.routes.size(), 1u) << (s.skipped.empty() ? "" : s.skipped[0].reason);
  EXPECT_EQ(s.routes.begin()->first, (Prefix4{0xc613fd00, 24}));
  EXPECT_EQ(s.routes.begin()->second.lease.public_ip, 0xc6120005u);
}

NetworkConfig DualStack() {
  auto c = ParseNetworkConfig(
      R"({"Network":"198.19.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:100::/48",)"
      R"("Backend":{"Type":"vxlan"}})");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

std::string DualLease(const char* ip, const char* ip6, const char* mac6, bool cppnet = false) {
  return absl::StrCat(
      R"({"PublicIP":")", ip, R"(","PublicIPv6":")", ip6,
      R"(","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"},)",
      R"("BackendV6Data":{"VNI":1,"VtepMAC":")", mac6, "\"", cppnet ? R"(,"CppnetDatapath":1)" : "",
      "}}");
}

TEST(Lease, DualStackLeasesRouteBothFamiliesByFlannelsRules) {
  const std::string p = kPrefix;
  const std::vector<LeaseRecord> recs = {
      {p + "198.19.5.0-24&2001:db8:100:5::-64",
       DualLease("198.18.0.5", "2001:db8::5", "0e:00:00:00:00:06"), 5},
      // Outside the IPv6Network: IPv4 only.
      {p + "198.19.6.0-24&2001:db8:999:6::-64",
       DualLease("198.18.0.6", "2001:db8::6", "0e:00:00:00:00:07"), 6},
      // IPv6 subnet overlapping the older lease's: IPv4 only.
      {p + "198.19.7.0-24&2001:db8:100:5::-64",
       DualLease("198.18.0.7", "2001:db8::7", "0e:00:00:00:00:08"), 7},
      // A PublicIPv6 that is no global unicast: the lease is invalid.
      {p + "198.19.8.0-24&2001:db8:100:8::-64",
       DualLease("198.18.0.8", "fe80::8", "0e:00:00:00:00:09"), 8},
      // IPv4-only key of an IPv4-only host.
      {p + "198.19.9.0-24", VxLease("198.18.0.9", "0e:00:00:00:00:0a"), 9},
  };
  LeaseSet s = SelectPeerLeases(DualStack(), kPrefix, std::nullopt, recs);
  ASSERT_EQ(s.routes.size(), 4u);
  const PeerRoute& r5 = s.routes.at(Prefix4{0xc6130500, 24});
  ASSERT_TRUE(r5.subnet6.has_value());
  EXPECT_EQ(FormatPrefix6(*r5.subnet6), "2001:db8:100:5::/64");
  EXPECT_EQ(FormatIp6(r5.lease.public_ip6), "2001:db8::5");
  EXPECT_EQ(FormatMac(*r5.lease.vtep_mac6), "0e:00:00:00:00:06");
  EXPECT_FALSE(r5.lease.cppnet_datapath6);
  EXPECT_FALSE(s.routes.at(Prefix4{0xc6130600, 24}).subnet6.has_value());
  EXPECT_FALSE(s.routes.at(Prefix4{0xc6130700, 24}).subnet6.has_value());
  EXPECT_FALSE(s.routes.at(Prefix4{0xc6130900, 24}).subnet6.has_value());
  std::map<std::string, std::string> why;
  for (const auto& k : s.skipped) why[k.key.substr(p.size())] = k.reason;
  EXPECT_NE(why["198.19.6.0-24&2001:db8:999:6::-64"].find("outside the IPv6Network"),
            std::string::npos);
  EXPECT_NE(why["198.19.7.0-24&2001:db8:100:5::-64"].find("overlaps the older lease"),
            std::string::npos);
  EXPECT_NE(why["198.19.8.0-24&2001:db8:100:8::-64"].find("not a global unicast"),
            std::string::npos);
  // Without EnableIPv6 the same records give IPv4 routes only.
  LeaseSet v4 = SelectPeerLeases(Vxlan(), kPrefix, std::nullopt, recs);
  EXPECT_FALSE(v4.routes.at(Prefix4{0xc6130500, 24}).subnet6.has_value());
}

TEST(Lease, SerializesTheIpv6PartAsFlanneldReadsIt) {
  Lease l{0xc6120001, "vxlan", 1, VtepMacFor(0xc6120001)};
  l.public_ip6 = *ParseIp6("2001:db8::1");
  l.vni6 = 1;
  l.vtep_mac6 = l.vtep_mac;
  const std::string json = SerializeLease(l);
  EXPECT_EQ(json, R"({"PublicIP":"198.18.0.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan",)"
                  R"("BackendData":{"VNI":1,"VtepMAC":"0e:63:c6:12:00:01"},)"
                  R"("BackendV6Data":{"VNI":1,"VtepMAC":"0e:63:c6:12:00:01","CppnetDatapath":1}})");
  auto back = ParseLease(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->public_ip6, l.public_ip6);
  EXPECT_TRUE(back->cppnet_datapath6);
  for (const char* bad : {R"({"PublicIP":"198.18.0.1","PublicIPv6":7})",
                          R"({"PublicIP":"198.18.0.1","PublicIPv6":"ff02::1"})",
                          R"({"PublicIP":"198.18.0.1","PublicIPv6":"198.18.0.1"})",
                          R"({"PublicIP":"198.18.0.1","BackendV6Data":{"VNI":-1}})",
                          R"({"PublicIP":"198.18.0.1","BackendV6Data":{"VtepMAC":"zz"}})"})
    EXPECT_FALSE(ParseLease(bad).ok()) << bad;
}

TEST(Lease, Ipv6OnlyNetworkRoutesIpv6OnlyKeys) {
  auto cfg = ParseNetworkConfig(
      R"({"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48",)"
      R"("Backend":{"Type":"vxlan"}})");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  const std::string p = kPrefix;
  auto v6lease = [](const char* ip6, const char* mac) {
    return absl::StrCat(R"({"PublicIPv6":")", ip6, R"(","BackendType":"vxlan",)",
                        R"("BackendV6Data":{"VNI":1,"VtepMAC":")", mac, R"("}})");
  };
  const std::vector<LeaseRecord> recs = {
      {p + "2001:db8:100:5::-64", v6lease("2001:db8::5", "0e:00:00:00:00:05"), 5},
      {p + "2001:db8:100:4::-63", v6lease("2001:db8::6", "0e:00:00:00:00:06"), 6},  // overlaps
      {p + "198.19.7.0-24", VxLease("198.18.0.7", "0e:00:00:00:00:07"), 7},         // IPv4 key
      {p + "2001:db8:100:8::-64", R"({"PublicIPv6":"2001:db8::8","BackendType":"vxlan"})", 8},
      {p + "2001:db8:100:1::-64", v6lease("2001:db8::1", "0e:00:00:00:00:01"), 9},  // ours
  };
  std::vector<const ParsedLeaseRecord*> ptrs;
  std::vector<ParsedLeaseRecord> parsed;
  for (const LeaseRecord& r : recs) parsed.push_back(ParseLeaseRecord(kPrefix, r));
  for (const auto& r : parsed) ptrs.push_back(&r);
  LeaseSet s = SelectPeerLeases(*cfg, std::nullopt, ptrs, *ParsePrefix6("2001:db8:100:1::/64"));
  EXPECT_TRUE(s.routes.empty());
  ASSERT_EQ(s.routes6only.size(), 1u);
  const PeerRoute& r = s.routes6only.begin()->second;
  EXPECT_EQ(FormatPrefix6(*r.subnet6), "2001:db8:100:5::/64");
  EXPECT_EQ(FormatIp6(r.lease.public_ip6), "2001:db8::5");
  std::map<std::string, std::string> why;
  for (const auto& k : s.skipped) why[k.key.substr(p.size())] = k.reason;
  EXPECT_NE(why["2001:db8:100:4::-63"].find("overlaps the older lease"), std::string::npos);
  EXPECT_NE(why["198.19.7.0-24"].find("not an IPv6-only subnet"), std::string::npos);
  EXPECT_NE(why["2001:db8:100:8::-64"].find("without a VtepMAC"), std::string::npos);
  EXPECT_EQ(why.count("2001:db8:100:1::-64"), 0u);
  // An IPv6-only key in an IPv4 network is skipped, with why.
  LeaseSet v4 = SelectPeerLeases(Vxlan(), kPrefix, std::nullopt, recs);
  EXPECT_TRUE(v4.routes6only.empty());
  EXPECT_EQ(v4.routes.size(), 1u);
}

TEST(Lease, FreeIpv6SubnetsAreInRangeAndFree) {
  NetworkConfig cfg = DualStack();
  cfg.ipv6_network = *ParsePrefix6("2001:db8:100::/62");  // four /64s; Min skips the first
  cfg.ipv6_subnet_min = ParsePrefix6("2001:db8:100:1::/64")->addr;
  cfg.ipv6_subnet_max = ParsePrefix6("2001:db8:100:3::/64")->addr;
  std::mt19937_64 rng(1);
  auto free = FreeSubnets6(cfg, {*ParsePrefix6("2001:db8:100:2::/64")}, 8, rng);
  std::set<std::string> got;
  for (const Prefix6& f : free) got.insert(FormatPrefix6(f));
  EXPECT_EQ(got, (std::set<std::string>{"2001:db8:100:1::/64", "2001:db8:100:3::/64"}));
}

TEST(Lease, OlderLeaseWinsRegardlessOfListingOrder) {
  std::vector<LeaseRecord> recs = {
      {std::string(kPrefix) + "198.19.2.0-23", VxLease("198.18.0.9", "0e:00:00:00:00:09"), 5},
      {std::string(kPrefix) + "198.19.2.0-24", VxLease("198.18.0.2", "0e:00:00:00:00:02"), 50},
  };
  LeaseSet s = SelectPeerLeases(Vxlan(), kPrefix, std::nullopt, recs);
  ASSERT_EQ(s.routes.size(), 1u);
  EXPECT_TRUE(s.routes.count(Prefix4{0xc6130200, 23}));
}

TEST(Lease, FreeSubnetsRespectRangeAndTaken) {
  auto cfg = *ParseNetworkConfig(R"({"Network":"198.19.0.0/22","SubnetLen":24})");
  EXPECT_EQ(FreeSubnets(cfg, {}, 100).size(), 3u);  // .1 .2 .3 (SubnetMin skips the first)
  auto free = FreeSubnets(cfg, {Prefix4{0xc6130100, 24}, Prefix4{0xc6130300, 24}}, 100);
  ASSERT_EQ(free.size(), 1u);
  EXPECT_EQ(FormatPrefix4(free[0]), "198.19.2.0/24");
  EXPECT_TRUE(FreeSubnets(cfg, {Prefix4{0xc6130000, 22}}, 100).empty());
}

// Hostile etcd values: bounded before parsing, never re-serialised into a message.
TEST(Lease, DeepOrHugeValuesAreRefusedWithoutRecursion) {
  std::string deep = R"({"PublicIP":"198.18.0.9","BackendData":)" + std::string(100000, '[') +
                     std::string(100000, ']') + "}";
  auto l = ParseLease(deep);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("more than the limit"), std::string::npos)
      << l.status().message();
  std::string nested =
      R"({"PublicIP":"198.18.0.9","x":)" + std::string(65, '[') + std::string(65, ']') + "}";
  l = ParseLease(nested);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("nested deeper than 64"), std::string::npos)
      << l.status().message();
  // Brackets inside strings do not count.
  EXPECT_TRUE(
      ParseLease(R"({"PublicIP":"198.18.0.9","note":")" + std::string(200, '[') + R"("})").ok());
  // A mistyped field is described, not dumped.
  std::string vni = R"({"PublicIP":"198.18.0.9","BackendType":"vxlan","BackendData":{"VNI":)" +
                    std::string(60, '[') + std::string(60, ']') + "}}";
  l = ParseLease(vni);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().message(),
            "lease: BackendData: VNI must be an integer (got an array of 1 entries)");
  auto c = ParseNetworkConfig(R"({"Network":"198.19.0.0/16","SubnetLen":")" +
                              std::string(1000, 'x') + R"("})");
  ASSERT_FALSE(c.ok());
  EXPECT_LT(c.status().message().size(), 200u) << c.status().message();
}

TEST(Lease, SkippedHostileLeaseNamesItsKey) {
  std::vector<LeaseRecord> recs = {
      {std::string(kPrefix) + "198.19.5.0-24",
       R"({"PublicIP":)" + std::string(100, '[') + std::string(100, ']') + "}", 1}};
  LeaseSet s = SelectPeerLeases(Vxlan(), kPrefix, std::nullopt, recs);
  ASSERT_EQ(s.skipped.size(), 1u);
  EXPECT_EQ(s.skipped[0].key, std::string(kPrefix) + "198.19.5.0-24");
  EXPECT_NE(s.skipped[0].reason.find("nested deeper"), std::string::npos);
}

}  // namespace
}  // namespace cppnet

namespace cppnet {
namespace {

TEST(Lease, FreeSubnetsHandlesLargeAndNestedTakenSets) {
  auto cfg = *ParseNetworkConfig(R"({"Network":"198.19.0.0/16","SubnetLen":30})");
  std::vector<Prefix4> taken;
  for (uint32_t i = 1; i <= 10000; i++) taken.push_back(Prefix4{0xc6130000 + i * 4, 30});
  taken.push_back(Prefix4{0xc613c000, 18});  // covers 198.19.192.0 - 198.19.255.255
  auto free = FreeSubnets(cfg, taken, 1 << 20);
  // 16383 candidates (SubnetMin skips the first), minus 10000 taken, minus the /18's 4096 (none
  // overlap).
  EXPECT_EQ(free.size(), 16383u - 10000u - 4096u);
  for (const Prefix4& f : free)
    for (const Prefix4& t : {Prefix4{0xc613c000, 18}, Prefix4{0xc6130004, 30}})
      EXPECT_FALSE(f.overlaps(t));
}

TEST(Lease, SelectionScalesToTenThousandLeases) {
  auto cfg = *ParseNetworkConfig(
      R"({"Network":"198.19.0.0/16","SubnetLen":30,"Backend":{"Type":"vxlan"}})");
  std::vector<LeaseRecord> recs;
  for (uint32_t i = 1; i <= 10000; i++)
    recs.push_back(
        {"/p/" + FormatSubnetKey(Prefix4{0xc6130000 + i * 4, 30}),
         R"({"PublicIP":"198.18.0.9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:09"}})",
         static_cast<int64_t>(i)});
  recs.push_back(
      {"/p/198.19.0.0-20",
       R"({"PublicIP":"198.18.0.8","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:08"}})",
       99999});
  LeaseSet s = SelectPeerLeases(cfg, "/p/", std::nullopt, recs);
  EXPECT_EQ(s.routes.size(), 10000u);
  ASSERT_EQ(s.skipped.size(), 1u);  // the newer /20 overlaps many older /30s
  EXPECT_NE(s.skipped[0].reason.find("overlaps the older lease 198.19.0.4/30"), std::string::npos)
      << s.skipped[0].reason;
}

}  // namespace
}  // namespace cppnet
