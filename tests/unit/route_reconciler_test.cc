// The route reconciler against an in-memory route table: by difference, static
// entries untouched, what an earlier run left cleaned up; and the desired state per
// backend (host-gw reachability, DirectRouting).
#include "route_reconciler.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace cppnet::test {
namespace {

const char* kPrefix = "/coreos.com/network/subnets/";

class FakeRouteTable : public RouteTable {
 public:
  std::map<Prefix4, cppnet_route> routes;
  std::map<uint32_t, cppnet_peer> peers;
  std::map<Prefix6, cppnet_route6> routes6;
  int writes = 0;
  size_t capacity = SIZE_MAX;  // of routes, as a map's max_entries

  absl::StatusOr<std::vector<RouteEntry>> List() override {
    std::vector<RouteEntry> v;
    for (const auto& [s, r] : routes) v.push_back(RouteEntry{s, r});
    return v;
  }
  absl::Status Upsert(const Prefix4& s, const cppnet_route& r) override {
    if (!routes.count(s) && routes.size() >= capacity)
      return absl::ResourceExhaustedError("map cppnet_routes is full");
    writes++;
    routes[s] = r;
    return absl::OkStatus();
  }
  absl::Status Delete(const Prefix4& s) override {
    writes++;
    routes.erase(s);
    return absl::OkStatus();
  }
  absl::StatusOr<std::map<uint32_t, cppnet_peer>> ListPeers() override { return peers; }
  absl::Status SetPeer(uint32_t slot, const cppnet_peer& p) override {
    writes++;
    if (p.public_ip == 0)
      peers.erase(slot);
    else
      peers[slot] = p;
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<Route6Entry>> List6() override {
    std::vector<Route6Entry> v;
    for (const auto& [s, r] : routes6) v.push_back(Route6Entry{s, r});
    return v;
  }
  absl::Status Upsert6(const Prefix6& s, const cppnet_route6& r) override {
    writes++;
    routes6[s] = r;
    return absl::OkStatus();
  }
  absl::Status Delete6(const Prefix6& s) override {
    writes++;
    routes6.erase(s);
    return absl::OkStatus();
  }
  std::map<Ip6Bytes, uint32_t> peers6;
  absl::StatusOr<std::map<Ip6Bytes, uint32_t>> ListPeers6() override { return peers6; }
  absl::Status SetPeer6(const Ip6Bytes& a, uint32_t n) override {
    writes++;
    if (n)
      peers6[a] = n;
    else
      peers6.erase(a);
    return absl::OkStatus();
  }
};

NetworkConfig Config(const char* backend) {
  auto c =
      ParseNetworkConfig(absl::StrCat(R"({"Network":"198.19.0.0/16","Backend":)", backend, "}"));
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

std::map<std::string, ParsedLeaseRecord> Leases(std::vector<std::pair<const char*, uint32_t>> v,
                                                const char* type = "vxlan") {
  std::map<std::string, ParsedLeaseRecord> out;
  int64_t rev = 10;
  for (const auto& [subnet, ip] : v) {
    Lease l{ip, type, std::string(type) == "vxlan" ? 1u : 0u,
            std::string(type) == "vxlan" ? std::optional<Mac>(VtepMacFor(ip)) : std::nullopt};
    const std::string key = std::string(kPrefix) + subnet;
    out[key] = ParseLeaseRecord(kPrefix, LeaseRecord{key, SerializeLease(l), rev++});
  }
  return out;
}

std::vector<const ParsedLeaseRecord*> Records(const std::map<std::string, ParsedLeaseRecord>& m) {
  std::vector<const ParsedLeaseRecord*> v;
  for (const auto& [key, r] : m) v.push_back(&r);
  return v;
}

Mac MacOfRoute6(const cppnet_route6& r) {
  Mac m;
  std::copy(r.vtep_mac, r.vtep_mac + 6, m.begin());
  return m;
}

const std::vector<Prefix4> kUnderlay = {Prefix4{0xc6120001, 24}};  // 198.18.0.1/24
const Prefix4 kOwn{0xc6130100, 24};
const Prefix4 kS2{0xc6130200, 24}, kS3{0xc6130300, 24}, kS9{0xc6130900, 24};

DesiredRoutes Want(const NetworkConfig& cfg, const std::map<std::string, ParsedLeaseRecord>& l) {
  return ComputeRoutes(cfg, kOwn, Records(l), kUnderlay, kPrefix, "eth0");
}

cppnet_route Static(uint32_t via) {
  cppnet_route r{};
  r.public_ip = htonl(via);
  r.backend = CPPNET_BACKEND_VXLAN;
  r.origin = CPPNET_ORIGIN_STATIC;
  return r;
}

TEST(RouteReconcilerTest, InstallsAndRemovesByDifference) {
  FakeRouteTable t;
  RouteReconciler rec(&t);
  const NetworkConfig cfg = Config(R"({"Type":"vxlan"})");
  auto leases = Leases({{"198.19.1.0-24", 0xc6120001},
                        {"198.19.2.0-24", 0xc6120002},
                        {"198.19.3.0-24", 0xc6120003}});
  auto n = rec.Apply(Want(cfg, leases));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2);  // our own lease is not a route
  ASSERT_EQ(t.routes.size(), 2u);
  EXPECT_EQ(t.routes[kS2].backend, CPPNET_BACKEND_VXLAN);
  EXPECT_EQ(t.routes[kS2].vni, 1u);
  EXPECT_EQ(t.routes[kS2].port, 8472);
  EXPECT_EQ(0, memcmp(t.routes[kS2].vtep_mac, VtepMacFor(0xc6120002).data(), 6));
  EXPECT_EQ(t.peers.size(), 2u);  // one slot per peer
  // The same state again: no write at all.
  const int writes = t.writes;
  ASSERT_TRUE(rec.Apply(Want(cfg, leases)).ok());
  EXPECT_EQ(t.writes, writes);
  // One lease gone: one route deleted, its peer slot freed, nothing else written.
  leases.erase(std::string(kPrefix) + "198.19.3.0-24");
  ASSERT_TRUE(rec.Apply(Want(cfg, leases)).ok());
  EXPECT_EQ(t.routes.count(kS3), 0u);
  EXPECT_EQ(t.peers.size(), 1u);
  EXPECT_EQ(t.writes, writes + 2);
}

TEST(RouteReconcilerTest, NeverTouchesStaticEntries) {
  FakeRouteTable t;
  t.routes[kS2] = Static(0xc6120009);  // an operator's route for a leased subnet
  t.routes[kS9] = Static(0xc6120009);  // and for one no lease has
  RouteReconciler rec(&t);
  const NetworkConfig cfg = Config(R"({"Type":"vxlan"})");
  auto leases = Leases({{"198.19.2.0-24", 0xc6120002}, {"198.19.3.0-24", 0xc6120003}});
  ASSERT_TRUE(rec.Apply(Want(cfg, leases)).ok());
  EXPECT_EQ(t.routes[kS2].origin, CPPNET_ORIGIN_STATIC);
  EXPECT_EQ(ntohl(t.routes[kS2].public_ip), 0xc6120009u);
  EXPECT_EQ(t.routes.count(kS9), 1u);
  // A static route over a lease route: it wins, survives lease changes and the lease's
  // deletion; removed, the lease's route comes back.
  ASSERT_TRUE(rec.SetStatic(kS3, Static(0xc6120008)).ok());
  leases = Leases({{"198.19.2.0-24", 0xc6120002}, {"198.19.3.0-24", 0xc6120004}});
  ASSERT_TRUE(rec.Apply(Want(cfg, leases)).ok());
  EXPECT_EQ(ntohl(t.routes[kS3].public_ip), 0xc6120008u);
  ASSERT_TRUE(rec.Apply(Want(cfg, Leases({}))).ok());
  EXPECT_EQ(t.routes.size(), 3u);
  EXPECT_EQ(rec.Statics().size(), 3u);
  // The peers array knows the static routes' peer too.
  auto want = PeerSlots({{0xc6120009, {kS2, kS9}}, {0xc6120008, {kS3}}});
  ASSERT_EQ(want.size(), t.peers.size());
  for (const auto& [slot, p] : want) {
    ASSERT_TRUE(t.peers.count(slot)) << slot;
    EXPECT_EQ(0, memcmp(&t.peers[slot], &p, sizeof(p))) << slot;
  }
  EXPECT_TRUE(absl::IsNotFound(rec.RemoveStatic(Prefix4{0xc6130700, 24})));
  ASSERT_TRUE(rec.RemoveStatic(kS3).ok());
  ASSERT_TRUE(rec.Apply(Want(cfg, leases)).ok());
  EXPECT_EQ(t.routes[kS3].origin, CPPNET_ORIGIN_LEASE);
  EXPECT_EQ(ntohl(t.routes[kS3].public_ip), 0xc6120004u);
  EXPECT_TRUE(absl::IsFailedPrecondition(rec.RemoveStatic(kS3)));
}

TEST(RouteReconcilerTest, CleansUpWhatAnEarlierRunLeft) {
  FakeRouteTable t;
  const NetworkConfig cfg = Config(R"({"Type":"vxlan"})");
  auto leases = Leases({{"198.19.2.0-24", 0xc6120002}});
  {
    RouteReconciler before(&t);
    ASSERT_TRUE(before
                    .Apply(Want(cfg, Leases({{"198.19.2.0-24", 0xc6120002},
                                             {"198.19.3.0-24", 0xc6120003}})))
                    .ok());
  }
  const int writes = t.writes;
  RouteReconciler after(&t);  // a restart while 198.19.3.0/24's lease went away
  ASSERT_TRUE(after.Apply(Want(cfg, leases)).ok());
  EXPECT_EQ(t.routes.size(), 1u);
  EXPECT_EQ(t.writes, writes + 2);  // the route and its peer slot; kS2 untouched
}

TEST(RouteReconcilerTest, HostGwOnlyForPeersOnOurSegment) {
  const NetworkConfig cfg = Config(R"({"Type":"host-gw"})");
  auto want =
      Want(cfg, Leases({{"198.19.2.0-24", 0xc6120002}, {"198.19.3.0-24", 0xc6121003}}, "host-gw"));
  ASSERT_EQ(want.routes.size(), 1u);
  EXPECT_EQ(want.routes[kS2].backend, CPPNET_BACKEND_HOSTGW);
  EXPECT_EQ(want.routes[kS2].port, 0);
  ASSERT_EQ(want.skipped.size(), 1u);
  EXPECT_EQ(want.skipped[0].key, std::string(kPrefix) + "198.19.3.0-24");
  EXPECT_EQ(want.skipped[0].reason,
            "network is unreachable: host-gw peer 198.18.16.3 of 198.19.3.0/24 is not on the L2 "
            "segment of eth0");
}

TEST(RouteReconcilerTest, DirectRoutingPicksHostGwOnLinkAndVxlanElsewhere) {
  const NetworkConfig cfg = Config(R"({"Type":"vxlan","DirectRouting":true})");
  auto want = Want(cfg, Leases({{"198.19.2.0-24", 0xc6120002}, {"198.19.3.0-24", 0xc6121003}}));
  ASSERT_EQ(want.routes.size(), 2u);
  EXPECT_EQ(want.routes[kS2].backend, CPPNET_BACKEND_HOSTGW);
  EXPECT_EQ(want.routes[kS3].backend, CPPNET_BACKEND_VXLAN);
  EXPECT_EQ(want.routes[kS3].port, 8472);
  EXPECT_TRUE(want.skipped.empty());
}

TEST(RouteReconcilerTest, UdpPeersWithoutTheCppnetMarkAreUserspacePeers) {
  const NetworkConfig cfg = Config(R"({"Type":"udp"})");
  auto leases = Leases({{"198.19.2.0-24", 0xc6120002}}, "udp");  // flanneld's: no BackendData
  Lease cpp{0xc6120003, "udp", 0, std::nullopt, true};
  const std::string key = std::string(kPrefix) + "198.19.3.0-24";
  leases[key] = ParseLeaseRecord(kPrefix, LeaseRecord{key, SerializeLease(cpp), 20});
  auto want = Want(cfg, leases);
  ASSERT_EQ(want.routes.size(), 2u);
  EXPECT_EQ(want.routes[kS2].flags & CPPNET_ROUTE_USERSPACE_PEER, CPPNET_ROUTE_USERSPACE_PEER);
  EXPECT_EQ(want.routes[kS3].flags & CPPNET_ROUTE_USERSPACE_PEER, 0);
  EXPECT_EQ(want.routes[kS3].port, 8285);
}

// A tunnel peer on the underlay's segment is its own next hop (no route lookup per packet);
// one beyond it goes where the underlay's routes say.
TEST(RouteReconcilerTest, OnLinkTunnelPeersAreMarkedAsTheirOwnNextHop) {
  const NetworkConfig cfg = Config(R"({"Type":"vxlan"})");
  auto want = Want(cfg, Leases({{"198.19.2.0-24", 0xc6120002}, {"198.19.3.0-24", 0xc6121003}}));
  ASSERT_EQ(want.routes.size(), 2u);
  EXPECT_EQ(want.routes[kS2].flags, CPPNET_ROUTE_ONLINK);
  EXPECT_EQ(want.routes[kS3].flags, 0);
  const NetworkConfig gw = Config(R"({"Type":"host-gw"})");
  want = Want(gw, Leases({{"198.19.2.0-24", 0xc6120002}}, "host-gw"));
  EXPECT_EQ(want.routes[kS2].flags, 0);  // host-gw names its next hop anyway
}

ParsedLeaseRecord Record(const std::string& subnet_key, uint32_t ip, int64_t rev) {
  const std::string key = std::string(kPrefix) + subnet_key;
  return ParseLeaseRecord(
      kPrefix, LeaseRecord{key, SerializeLease(Lease{ip, "vxlan", 1, VtepMacFor(ip)}), rev});
}

TEST(SubnetIndexTest, FindsEveryOverlapAndNothingElse) {
  SubnetIndex idx;
  idx.Add(Record("198.19.2.0-24", 1, 1));
  idx.Add(Record("198.19.8.0-21", 2, 2));
  EXPECT_TRUE(idx.Overlaps(Record("198.19.2.0-24", 3, 3)));    // the same subnet
  EXPECT_TRUE(idx.Overlaps(Record("198.19.2.128-25", 3, 3)));  // inside one
  EXPECT_TRUE(idx.Overlaps(Record("198.19.0.0-16", 3, 3)));    // around both
  EXPECT_TRUE(idx.Overlaps(Record("198.19.12.0-24", 3, 3)));   // inside the /21, above its start
  EXPECT_FALSE(idx.Overlaps(Record("198.19.3.0-24", 3, 3)));
  EXPECT_FALSE(idx.Overlaps(Record("198.19.16.0-24", 3, 3)));
  EXPECT_FALSE(idx.Overlaps(Record("198.19.1.0-24", 3, 3)));
  idx.Remove(Record("198.19.8.0-21", 2, 2));
  EXPECT_FALSE(idx.Overlaps(Record("198.19.12.0-24", 3, 3)));
  // Keys that are no subnet have nothing to overlap with.
  EXPECT_FALSE(idx.Overlaps(Record("junk", 3, 3)));
}

// Lease by lease through ApplyLeases (what the agent does for a lease that overlaps no other)
// ends in the same maps as Apply over all leases.
TEST(RouteReconcilerTest, LeaseByLeaseEqualsTheWhole) {
  const NetworkConfig cfg = Config(R"({"Type":"vxlan"})");
  FakeRouteTable inc, whole;
  RouteReconciler a(&inc), b(&whole);
  std::map<std::string, ParsedLeaseRecord> leases;
  uint32_t seed = 7;
  auto rnd = [&] { return seed = seed * 1103515245 + 12345, (seed >> 8) % 64; };
  for (int step = 0; step < 400; step++) {
    // 64 subnets, 8 PublicIPs: peers with one route and with several, shared slots.
    const uint32_t n = rnd(), ip = 0xc6120000 + 2 + rnd() % 8 * 0x10001;
    const std::string subnet = absl::StrCat("198.19.", 10 + n, ".0-24");
    const std::string key = std::string(kPrefix) + subnet;
    std::vector<Prefix4> gone;
    if (auto it = leases.find(key); it != leases.end()) {
      gone.push_back(*it->second.subnet);
      leases.erase(it);
    }
    std::map<std::string, ParsedLeaseRecord> one;
    if (step % 3 != 2) {
      leases[key] = Record(subnet, ip, step);
      one[key] = leases[key];
    }
    a.ApplyLeases(gone, {}, Want(cfg, one));
    ASSERT_TRUE(b.Apply(Want(cfg, leases)).ok());
    ASSERT_EQ(inc.routes.size(), whole.routes.size()) << step;
    for (const auto& [s, r] : whole.routes)
      ASSERT_EQ(0, memcmp(&inc.routes[s], &r, sizeof(r))) << step;
    ASSERT_EQ(inc.peers.size(), whole.peers.size()) << step;
    for (const auto& [slot, p] : whole.peers)
      ASSERT_EQ(0, memcmp(&inc.peers[slot], &p, sizeof(p))) << step;
    ASSERT_EQ(a.lease_routes(), static_cast<int64_t>(leases.size()));
  }
}

// A full route map: what does not fit waits (counted), nothing else breaks; room made by a
// deleted lease goes to the waiting routes.
TEST(RouteReconcilerTest, RoutesWaitForRoomInAFullMap) {
  const NetworkConfig cfg = Config(R"({"Type":"vxlan"})");
  FakeRouteTable t;
  t.capacity = 3;
  RouteReconciler rec(&t);
  auto leases = Leases({{"198.19.2.0-24", 0xc6120002},
                        {"198.19.3.0-24", 0xc6120003},
                        {"198.19.4.0-24", 0xc6120004},
                        {"198.19.5.0-24", 0xc6120005},
                        {"198.19.6.0-24", 0xc6120006}});
  auto n = rec.Apply(Want(cfg, leases));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3);
  EXPECT_EQ(rec.pending(), 2);
  EXPECT_EQ(t.routes.size(), 3u);
  EXPECT_EQ(t.peers.size(), 3u);  // peers only of installed routes
  // One lease goes (lease by lease): a waiting route takes its place.
  const std::string gone_key = std::string(kPrefix) + "198.19.2.0-24";
  leases.erase(gone_key);
  rec.ApplyLeases({kS2}, {}, DesiredRoutes{});
  EXPECT_EQ(rec.pending(), 1);
  EXPECT_EQ(t.routes.size(), 3u);
  EXPECT_EQ(t.routes.count(kS2), 0u);
  // A waiting lease deleted stops waiting; with room, everything is in.
  t.capacity = 10;
  ASSERT_TRUE(rec.Apply(Want(cfg, leases)).ok());
  EXPECT_EQ(rec.pending(), 0);
  EXPECT_EQ(t.routes.size(), 4u);
  EXPECT_EQ(t.peers.size(), 4u);
}

}  // namespace

TEST(RouteReconcilerTest, Ipv6RoutesFollowTheLeasesIpv6Part) {
  auto cfg = ParseNetworkConfig(
      R"({"Network":"198.19.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:100::/48",)"
      R"("Backend":{"Type":"vxlan","DirectRouting":true}})");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  std::map<std::string, ParsedLeaseRecord> leases;
  auto add = [&](const char* key, uint32_t ip, const char* ip6, bool cppnet) {
    Lease l{ip, "vxlan", 1, VtepMacFor(ip)};
    l.public_ip6 = *ParseIp6(ip6);
    l.vni6 = 1;
    l.vtep_mac6 = VtepMacFor(ip + 100);
    std::string json = SerializeLease(l);  // ours carries the mark; flanneld's does not
    if (!cppnet) json.erase(json.find(R"(,"CppnetDatapath":1)"), 19);
    const std::string k = std::string(kPrefix) + key;
    leases[k] = ParseLeaseRecord(kPrefix, LeaseRecord{k, json, 10});
  };
  add("198.19.2.0-24&2001:db8:100:2::-64", 0xc6120002, "2001:db8:1::2", true);  // off-link
  add("198.19.3.0-24&2001:db8:100:3::-64", 0xc6120003, "2001:db8::3", false);   // on-link
  const std::vector<Prefix6> underlay6 = {*ParsePrefix6("2001:db8::/64")};
  DesiredRoutes want = ComputeRoutes(*cfg, kOwn, Records(leases), kUnderlay, kPrefix, "eth0",
                                     *ParsePrefix6("2001:db8:100:1::/64"), underlay6);
  ASSERT_EQ(want.routes6.size(), 2u);
  const cppnet_route6& r2 = want.routes6.at(*ParsePrefix6("2001:db8:100:2::/64"));
  EXPECT_EQ(r2.backend, CPPNET_BACKEND_VXLAN);       // DirectRouting: not on our IPv6 segment
  EXPECT_EQ(r2.flags & CPPNET_ROUTE_OUTER_CSUM, 0);  // a cppnet peer takes checksum 0
  EXPECT_EQ(MacOfRoute6(r2), VtepMacFor(0xc6120002 + 100));
  const cppnet_route6& r3 = want.routes6.at(*ParsePrefix6("2001:db8:100:3::/64"));
  EXPECT_EQ(r3.backend, CPPNET_BACKEND_HOSTGW);
  EXPECT_EQ(FromBytes6(r3.public_ip6), *ParseIp6("2001:db8::3"));
  FakeRouteTable t;
  RouteReconciler rec(&t);
  auto n = rec.Apply(want);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 4);
  EXPECT_EQ(t.routes6.size(), 2u);
  EXPECT_EQ(t.peers6.size(), 2u);
  leases.erase(std::string(kPrefix) + "198.19.3.0-24&2001:db8:100:3::-64");
  ASSERT_TRUE(rec.Apply(ComputeRoutes(*cfg, kOwn, Records(leases), kUnderlay, kPrefix, "eth0",
                                      *ParsePrefix6("2001:db8:100:1::/64"), underlay6))
                  .ok());
  EXPECT_EQ(t.routes6.size(), 1u);
  EXPECT_EQ(t.peers6.size(), 1u);
  // A kernel vxlan peer (no mark) gets the outer checksum.
  add("198.19.4.0-24&2001:db8:100:4::-64", 0xc6120004, "2001:db8:1::4", false);
  want = ComputeRoutes(*cfg, kOwn, Records(leases), kUnderlay, kPrefix, "eth0",
                       *ParsePrefix6("2001:db8:100:1::/64"), underlay6);
  EXPECT_NE(want.routes6.at(*ParsePrefix6("2001:db8:100:4::/64")).flags & CPPNET_ROUTE_OUTER_CSUM,
            0);
}

}  // namespace cppnet::test
