// VLAN networks: trunk demultiplexing, endpoint egress per mode, ipvlan l3 proxying
// and next-hop learning, registry conflicts.
#include <tuple>

#include "fixture.h"

namespace cppnet::test {
namespace {

// ---- VLAN networks. The test harness runs programs on lo (ifindex 1): lo plays the
// trunk and, for the endpoint program, the endpoint's host veth. Other endpoints get
// ifindexes no interface has, so flooding (bpf_clone_redirect) sends nothing anywhere.
const Mac kTrunkMac{0x02, 0x77, 0, 0, 0, 0x01};
const Mac kEp{0x02, 0x42, 0, 0, 0, 0x10}, kEp2{0x02, 0x42, 0, 0, 0, 0x11},
    kWire{0x02, 0x42, 0, 0, 0, 0x99};
const Mac kBcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr uint32_t kFakePort = 900007, kFakePort2 = 900008;

class VlanTest : public DatapathTest {
 protected:
  void TearDown() override {
    if (IsSkipped()) return;
    VlanMaps m = g_dp->vlan_maps();
    for (uint32_t p : {1u, kFakePort, kFakePort2}) ASSERT_TRUE(UnregisterVlanEndpoint(m, p).ok());
    EXPECT_TRUE(ListVlanNets(m.net())->empty());
    EXPECT_TRUE(ListVlanAddrs(m.ep())->empty());
  }
  void Add(uint16_t vlan, uint8_t mode, uint32_t port, const Mac& mac,
           std::vector<uint32_t> ip4 = {}, std::vector<unsigned __int128> ip6 = {}) {
    VlanEndpointSpec s{.network = "t",
                       .trunk_ifindex = 1,
                       .trunk_mac = kTrunkMac,
                       .vlan = vlan,
                       .mode = mode,
                       .host_ifindex = port,
                       .mac = mac,
                       .ipv4 = ip4,
                       .ipv6 = ip6};
    auto st = RegisterVlanEndpoint(g_dp->vlan_maps(), s);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  static Bytes Tagged(const Mac& dst, const Mac& src, uint16_t tpid, uint16_t tci,
                      const Bytes& rest) {
    return Cat({Bytes(dst.begin(), dst.end()), Bytes(src.begin(), src.end()),
                Bytes{static_cast<uint8_t>(tpid >> 8), static_cast<uint8_t>(tpid),
                      static_cast<uint8_t>(tci >> 8), static_cast<uint8_t>(tci)},
                rest});
  }
  static Bytes Arp(uint16_t op, const Mac& sha, uint32_t spa, uint32_t tpa) {
    Bytes b{0x00, 0x01, 0x08, 0x00, 6, 4, 0, static_cast<uint8_t>(op)};
    b.insert(b.end(), sha.begin(), sha.end());
    for (int i = 3; i >= 0; i--) b.push_back(static_cast<uint8_t>(spa >> (8 * i)));
    b.insert(b.end(), 6, 0);
    for (int i = 3; i >= 0; i--) b.push_back(static_cast<uint8_t>(tpa >> (8 * i)));
    return b;
  }
  static Bytes Ip6(unsigned __int128 src, unsigned __int128 dst) {
    Bytes b{0x60, 0, 0, 0, 0, 8, 17, 64};
    for (unsigned __int128 a : {src, dst})
      for (int i = 15; i >= 0; i--) b.push_back(static_cast<uint8_t>(a >> (8 * i)));
    Bytes udp = Udp(1, 2, {});
    b.insert(b.end(), udp.begin(), udp.end());
    return b;
  }
  static void ExpectVerdict(int prog, const Bytes& in, int verdict, const char* what) {
    EXPECT_EQ(RunProg(prog, in).retval, static_cast<uint32_t>(verdict)) << what;
  }
};

const uint32_t kV1 = 0xc6120a02, kV2 = 0xc6120a03, kV9 = 0xc6120a09;  // 198.18.10.2/.3/.9
const unsigned __int128 kV6 = (static_cast<unsigned __int128>(0x20010db800000010ULL) << 64) | 2;

// Trunk ingress, macvlan: a frame of the VLAN to an endpoint's MAC loses its tag and is
// switched into the endpoint; everything that is not a VLAN network's stays untouched.
TEST_F(VlanTest, TrunkUntagsFramesForAMacvlanEndpoint) {
  Add(10, CPPNET_VLAN_MACVLAN_BRIDGE, kFakePort, kEp);
  const int prog = g_dp->trunk_prog_fd();
  const Bytes ip = Ip4(kV2, kV1, Tcp(1, 2, 20));
  const Bytes payload = Cat({Bytes{0x08, 0x00}, ip});  // inner ethertype + IPv4
  uint64_t rx = Counter(CPPNET_CNT_VLAN_RX);
  RunResult r = RunProg(prog, Tagged(kEp, kWire, 0x8100, 10, payload));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  EXPECT_EQ(Hex(r.out),
            Hex(Cat({Eth(kEp, kWire, 0x0800), ip})));  // the tag is gone, nothing else changed
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_RX), rx + 1);
  ExpectVerdict(prog, Tagged(kEp, kWire, 0x8100, 0xa00a, payload), TC_ACT_REDIRECT,
                "priority bits keep the VLAN");

  const PassCase cases[] = {
      {"another VLAN (no network uses it here)", Tagged(kEp, kWire, 0x8100, 20, payload)},
      {"untagged frame to the endpoint's MAC (the network is tagged)",
       Cat({Eth(kEp, kWire, 0x0800), ip})},
      {"VLAN 10 to another MAC", Tagged(kEp2, kWire, 0x8100, 10, payload)},
      {"802.1ad service tag (QinQ)",
       Tagged(kEp, kWire, 0x88a8, 10, Cat({Bytes{0x81, 0x00, 0x00, 0x0a}, payload}))},
      {"stacked 802.1Q tags",
       Tagged(kEp, kWire, 0x8100, 10, Cat({Bytes{0x81, 0x00, 0x00, 0x0a}, payload}))},
      {"wrong ethertype (not a tag) to the endpoint's MAC", Cat({Eth(kEp, kWire, 0x88b5), ip})},
      {"ARP on the trunk, untagged", Cat({Eth(kBcast, kWire, 0x0806), Arp(1, kWire, kV2, kV1)})},
  };
  for (const PassCase& c : cases) {
    RunResult p = RunProg(prog, c.frame);
    EXPECT_EQ(p.retval, static_cast<uint32_t>(TC_ACT_OK)) << c.name;
    EXPECT_EQ(p.out, c.frame) << c.name;
  }
  uint64_t truncated = Counter(CPPNET_CNT_DROP_TRUNCATED);
  Bytes cut = Tagged(kEp, kWire, 0x8100, 10, {});
  cut.resize(16);  // the tag claims 4 bytes, 2 are there
  ExpectVerdict(prog, cut, TC_ACT_SHOT, "truncated tag");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_TRUNCATED), truncated + 1);

  // Broadcast of the VLAN: a copy to each endpoint, the tagged original consumed.
  rx = Counter(CPPNET_CNT_VLAN_RX);
  ExpectVerdict(
      prog, Tagged(kBcast, kWire, 0x8100, 10, Cat({Bytes{0x08, 0x06}, Arp(1, kWire, kV2, kV1)})),
      TC_ACT_SHOT, "VLAN broadcast");
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_RX), rx + 1);
  // Our own endpoint's frame reflected by the switch: bridge mode switched it already.
  uint64_t looped = Counter(CPPNET_CNT_DROP_VLAN_LOOP);
  ExpectVerdict(prog, Tagged(kBcast, kEp, 0x8100, 10, payload), TC_ACT_SHOT, "looped broadcast");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_LOOP), looped + 1);
}

// Untagged network on the trunk: broadcast reaches the endpoints and the host.
TEST_F(VlanTest, UntaggedNetworkSharesBroadcastWithTheHost) {
  Add(0, CPPNET_VLAN_MACVLAN_BRIDGE, kFakePort, kEp);
  const int prog = g_dp->trunk_prog_fd();
  const Bytes arp = Cat({Eth(kBcast, kWire, 0x0806), Arp(1, kWire, kV2, kV1)});
  RunResult r = RunProg(prog, arp);
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(r.out, arp);
  ExpectVerdict(prog, Cat({Eth(kEp, kWire, 0x0800), Ip4(kV2, kV1, Tcp(1, 2, 0))}), TC_ACT_REDIRECT,
                "to the endpoint");
  ExpectVerdict(prog, Tagged(kEp, kWire, 0x8100, 10, Bytes{0x08, 0x00}), TC_ACT_OK,
                "VLAN 10 is not this network");
}

// Trunk ingress, ipvlan: endpoints share the trunk's MAC and are found by IP (IPv4,
// ARP target, IPv6); l3 takes no broadcast.
TEST_F(VlanTest, TrunkDemultiplexesIpvlanByAddress) {
  Add(20, CPPNET_VLAN_IPVLAN_L2, kFakePort, kTrunkMac, {kV1}, {kV6});
  Add(20, CPPNET_VLAN_IPVLAN_L2, kFakePort2, kTrunkMac, {kV2});
  const int prog = g_dp->trunk_prog_fd();
  ExpectVerdict(
      prog,
      Tagged(kTrunkMac, kWire, 0x8100, 20, Cat({Bytes{0x08, 0x00}, Ip4(kV9, kV1, Tcp(1, 2, 0))})),
      TC_ACT_REDIRECT, "IPv4 to an endpoint");
  ExpectVerdict(
      prog, Tagged(kTrunkMac, kWire, 0x8100, 20, Cat({Bytes{0x08, 0x06}, Arp(2, kWire, kV9, kV2)})),
      TC_ACT_REDIRECT, "ARP reply to an endpoint");
  ExpectVerdict(prog,
                Tagged(kTrunkMac, kWire, 0x8100, 20, Cat({Bytes{0x86, 0xdd}, Ip6(kV6 + 7, kV6)})),
                TC_ACT_REDIRECT, "IPv6 to an endpoint");
  ExpectVerdict(
      prog,
      Tagged(kTrunkMac, kWire, 0x8100, 20, Cat({Bytes{0x08, 0x00}, Ip4(kV1, kV9, Tcp(1, 2, 0))})),
      TC_ACT_OK, "IPv4 to an address no endpoint has");
  ExpectVerdict(
      prog, Tagged(kEp, kWire, 0x8100, 20, Cat({Bytes{0x08, 0x00}, Ip4(kV9, kV1, Tcp(1, 2, 0))})),
      TC_ACT_OK, "to another MAC");
  ExpectVerdict(
      prog,
      Tagged(kBcast, kTrunkMac, 0x8100, 20, Cat({Bytes{0x08, 0x06}, Arp(1, kTrunkMac, kV1, kV9)})),
      TC_ACT_SHOT, "our own broadcast reflected");
}

// An endpoint's frames (tc ingress of its host veth, here lo): switched to a local
// endpoint or sent to the trunk, per mode. The 802.1Q tag is pushed as skb metadata
// (the NIC or veth inserts it), so the bytes stay as they were: the integration test
// reads the tag on the wire.
TEST_F(VlanTest, EndpointFramesAreSwitchedOrSentTaggedPerMode) {
  const int prog = g_dp->vlan_port_prog_fd();
  const Bytes ip = Ip4(kV1, kV2, Tcp(1, 2, 20));
  uint64_t no_port = Counter(CPPNET_CNT_DROP_VLAN_NO_PORT);
  ExpectVerdict(prog, Cat({Eth(kEp2, kEp, 0x0800), ip}), TC_ACT_SHOT, "not an endpoint");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_NO_PORT), no_port + 1);

  Add(10, CPPNET_VLAN_MACVLAN_BRIDGE, 1, kEp, {kV1}, {kV6});
  Add(10, CPPNET_VLAN_MACVLAN_BRIDGE, kFakePort, kEp2, {kV2});
  uint64_t local = Counter(CPPNET_CNT_VLAN_LOCAL), tx = Counter(CPPNET_CNT_VLAN_TX);
  ExpectVerdict(prog, Cat({Eth(kEp2, kEp, 0x0800), ip}), TC_ACT_REDIRECT,
                "bridge: to a local endpoint");
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_LOCAL), local + 1);
  RunResult r = RunProg(prog, Cat({Eth(kWire, kEp, 0x0800), ip}));
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT)) << "bridge: to the wire";
  EXPECT_EQ(Hex(r.out), Hex(Cat({Eth(kWire, kEp, 0x0800), ip})));
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_TX), tx + 1);
  ExpectVerdict(prog, Cat({Eth(kBcast, kEp, 0x0806), Arp(1, kEp, kV1, kV2)}), TC_ACT_REDIRECT,
                "broadcast: wire");
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_TX), tx + 2);
  uint64_t spoof = Counter(CPPNET_CNT_DROP_VLAN_SOURCE);
  ExpectVerdict(prog, Cat({Eth(kWire, kEp2, 0x0800), ip}), TC_ACT_SHOT,
                "another endpoint's source MAC");
  ExpectVerdict(prog, Cat({Eth(kWire, kEp, 0x0800), Ip4(kV2, kV9, Tcp(1, 2, 20))}), TC_ACT_SHOT,
                "another endpoint's IPv4 address");
  ExpectVerdict(prog, Cat({Eth(kWire, kEp, 0x0800), Ip4(kV9, kV2, Tcp(1, 2, 20))}), TC_ACT_SHOT,
                "an address no endpoint has");
  ExpectVerdict(prog, Cat({Eth(kBcast, kEp, 0x0806), Arp(1, kEp, kV2, kV9)}), TC_ACT_SHOT,
                "ARP as another endpoint");
  ExpectVerdict(prog, Cat({Eth(kBcast, kEp, 0x0806), Arp(1, kEp2, kV1, kV9)}), TC_ACT_SHOT,
                "ARP with another sender MAC");
  ExpectVerdict(prog, Cat({Eth(kWire, kEp, 0x86dd), Ip6(kV6 + 1, kV6 + 7)}), TC_ACT_SHOT,
                "an IPv6 address not its own");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_SOURCE), spoof + 6);
  ExpectVerdict(prog, Cat({Eth(kWire, kEp, 0x86dd), Ip6(kV6, kV6 + 7)}), TC_ACT_REDIRECT,
                "its own IPv6 address");
  const unsigned __int128 kLinkLocal =
      static_cast<unsigned __int128>(0xfe80000000000000ULL) << 64 | 0x42;
  ExpectVerdict(prog, Cat({Eth(kWire, kEp, 0x86dd), Ip6(kLinkLocal, kV6 + 7)}), TC_ACT_REDIRECT,
                "IPv6 link-local");
  ExpectVerdict(prog, Cat({Eth(kBcast, kEp, 0x0806), Arp(1, kEp, 0, kV9)}), TC_ACT_REDIRECT,
                "ARP probe (sender 0)");
  // VLAN hopping: a tag of the endpoint's own, in the data or in the skb's metadata.
  uint64_t tagged = Counter(CPPNET_CNT_DROP_VLAN_TAGGED);
  ExpectVerdict(prog, Tagged(kWire, kEp, 0x8100, 20, Cat({Bytes{0x08, 0x00}, ip})), TC_ACT_SHOT,
                "802.1Q tag");
  ExpectVerdict(prog,
                Tagged(kWire, kEp, 0x88a8, 20, Cat({Bytes{0x81, 0x00, 0, 20, 0x08, 0x00}, ip})),
                TC_ACT_SHOT, "802.1ad tag");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_TAGGED), tagged + 2);

  // private and vepa: nothing is switched locally, everything goes out tagged.
  for (uint8_t mode : {CPPNET_VLAN_MACVLAN_PRIVATE, CPPNET_VLAN_MACVLAN_VEPA}) {
    for (uint32_t p : {1u, kFakePort})
      ASSERT_TRUE(UnregisterVlanEndpoint(g_dp->vlan_maps(), p).ok());
    Add(10, mode, 1, kEp, {kV1});
    Add(10, mode, kFakePort, kEp2, {kV2});
    local = Counter(CPPNET_CNT_VLAN_LOCAL), tx = Counter(CPPNET_CNT_VLAN_TX);
    ExpectVerdict(prog, Cat({Eth(kEp2, kEp, 0x0800), ip}), TC_ACT_REDIRECT,
                  VlanModeName(mode).c_str());
    EXPECT_EQ(Counter(CPPNET_CNT_VLAN_LOCAL), local) << VlanModeName(mode);
    EXPECT_EQ(Counter(CPPNET_CNT_VLAN_TX), tx + 1) << VlanModeName(mode);
  }
  for (uint32_t p : {1u, kFakePort}) ASSERT_TRUE(UnregisterVlanEndpoint(g_dp->vlan_maps(), p).ok());

  // ipvlan l3: routed between local endpoints by IP, no ARP or broadcast anywhere.
  Add(30, CPPNET_VLAN_IPVLAN_L3, 1, kTrunkMac, {kV1});
  Add(30, CPPNET_VLAN_IPVLAN_L3, kFakePort, kTrunkMac, {kV2});
  const Bytes to_v2 = Cat({Eth(kTrunkMac, kTrunkMac, 0x0800), ip});
  ExpectVerdict(prog, to_v2, TC_ACT_REDIRECT, "l3: to a local endpoint");
  uint64_t l3 = Counter(CPPNET_CNT_DROP_VLAN_L3), no_route = Counter(CPPNET_CNT_DROP_VLAN_NO_ROUTE);
  ExpectVerdict(prog, Cat({Eth(kBcast, kTrunkMac, 0x0806), Arp(1, kTrunkMac, kV1, kV2)}),
                TC_ACT_SHOT, "l3: ARP");
  ExpectVerdict(prog, Cat({Eth(kTrunkMac, kTrunkMac, 0x0800), Ip4(kV1, kV9, Tcp(1, 2, 0))}),
                TC_ACT_SHOT, "l3: no endpoint has the address");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_L3), l3 + 1);
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_NO_ROUTE), no_route + 1);
}

// ipvlan l3 across hosts: the trunk answers ARP and neighbour solicitations for the
// endpoints (proxy) and learns next hops; an endpoint's packet goes to its next hop's
// MAC, or is reported to the agent (ring buffer) when that MAC is unknown.
TEST_F(VlanTest, L3ProxiesArpAndNdAndResolvesNextHops) {
  VlanEndpointSpec s{.network = "l3",
                     .trunk_ifindex = 1,
                     .trunk_mac = kTrunkMac,
                     .vlan = 70,
                     .mode = CPPNET_VLAN_IPVLAN_L3,
                     .host_ifindex = 1,
                     .mac = kTrunkMac,
                     .ipv4 = {kV1},
                     .ipv6 = {kV6}};
  s.subnet4 = Prefix4{0xc6120a00, 24};
  s.subnet6 = Prefix6{kV6 - 2, 64};
  ASSERT_TRUE(RegisterVlanEndpoint(g_dp->vlan_maps(), s).ok());
  const int trunk = g_dp->trunk_prog_fd(), port = g_dp->vlan_port_prog_fd();
  auto arp = [](uint16_t op, const Mac& sha, uint32_t spa, const Mac& tha, uint32_t tpa) {
    Bytes b{0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0, static_cast<uint8_t>(op)};
    b.insert(b.end(), sha.begin(), sha.end());
    for (int i = 3; i >= 0; i--) b.push_back(static_cast<uint8_t>(spa >> (8 * i)));
    b.insert(b.end(), tha.begin(), tha.end());
    for (int i = 3; i >= 0; i--) b.push_back(static_cast<uint8_t>(tpa >> (8 * i)));
    return b;
  };
  const Mac kZero{};
  uint64_t proxy = Counter(CPPNET_CNT_VLAN_PROXY);
  RunResult r = RunProg(trunk, Tagged(kBcast, kWire, 0x8100, 70, arp(1, kWire, kV9, kZero, kV1)));
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT))
      << "ARP request for the endpoint: answered";
  EXPECT_EQ(Hex(r.out),
            Hex(Tagged(kWire, kTrunkMac, 0x8100, 70, arp(2, kTrunkMac, kV1, kWire, kV9))));
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_PROXY), proxy + 1);
  ExpectVerdict(trunk, Tagged(kBcast, kWire, 0x8100, 70, arp(1, kWire, kV9, kZero, kV2)),
                TC_ACT_SHOT, "ARP for an address no endpoint has: consumed, not answered");

  // The solicitation the agent sends (core/nd.h), answered with an advertisement.
  auto bytes6 = [](unsigned __int128 a) {
    Bytes b;
    for (int i = 15; i >= 0; i--) b.push_back(static_cast<uint8_t>(a >> (8 * i)));
    return b;
  };
  const unsigned __int128 kPeer6 = kV6 + 7;
  const Bytes ns = BuildNeighborSolicitation(kWire, 70, bytes6(kPeer6).data(), bytes6(kV6).data());
  r = RunProg(trunk, ns);
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT)) << "NS for the endpoint: answered";
  Bytes na = {136, 0, 0, 0, 0x60, 0, 0, 0};
  Bytes t = bytes6(kV6);
  na.insert(na.end(), t.begin(), t.end());
  na.insert(na.end(), {2, 1});
  na.insert(na.end(), kTrunkMac.begin(), kTrunkMac.end());
  const uint16_t csum =
      Icmp6Checksum(bytes6(kV6).data(), bytes6(kPeer6).data(), na.data(), na.size());
  na[2] = static_cast<uint8_t>(csum >> 8);
  na[3] = static_cast<uint8_t>(csum);
  const Bytes want = Tagged(
      kWire, kTrunkMac, 0x8100, 70,
      Cat({Bytes{0x86, 0xdd, 0x60, 0, 0, 0, 0, 32, 58, 255}, bytes6(kV6), bytes6(kPeer6), na}));
  EXPECT_EQ(Hex(r.out), Hex(want));

  // Next hops: only answers to the agent's own requests are learned, never an
  // unsolicited or gratuitous message (the ARP request above taught nothing either).
  const int nbr = g_dp->vlan_nbr_fd();
  cppnet_vlan_ep_key k9{.trunk_ifindex = 1, .vlan = 70, .kind = CPPNET_VLAN_ADDR_IPV4};
  const uint32_t v9 = htonl(kV9);
  memcpy(k9.addr, &v9, 4);
  cppnet_vlan_nbr got{};
  EXPECT_NE(bpf_map_lookup_elem(nbr, &k9, &got), 0) << "learned from a request";
  const Mac kEvil{0x02, 0xee, 0, 0, 0, 1};
  RunProg(trunk, Tagged(kTrunkMac, kEvil, 0x8100, 70, arp(2, kEvil, kV9, kTrunkMac, kV1)));
  EXPECT_NE(bpf_map_lookup_elem(nbr, &k9, &got), 0) << "learned from an unsolicited reply";
  cppnet_vlan_nbr pending{.state = CPPNET_NBR_PENDING};  // the agent asked (vlan_resolver)
  ASSERT_EQ(bpf_map_update_elem(nbr, &k9, &pending, BPF_NOEXIST), 0);
  RunProg(trunk, Tagged(kTrunkMac, kWire, 0x8100, 70, arp(2, kWire, kV9, kTrunkMac, kV1)));
  ASSERT_EQ(bpf_map_lookup_elem(nbr, &k9, &got), 0);
  EXPECT_EQ(got.state, CPPNET_NBR_RESOLVED);
  EXPECT_EQ(Mac(std::to_array(got.mac)), kWire);
  RunProg(trunk, Tagged(kBcast, kEvil, 0x8100, 70, arp(2, kEvil, kV9, kBcast, kV9)));  // gratuitous
  RunProg(trunk, Tagged(kTrunkMac, kEvil, 0x8100, 70, arp(2, kEvil, kV9, kTrunkMac, kV1)));
  ASSERT_EQ(bpf_map_lookup_elem(nbr, &k9, &got), 0);
  EXPECT_EQ(Mac(std::to_array(got.mac)), kWire) << "overwritten by an unsolicited reply";

  // Egress: next hops learned above are used; unknown ones are reported.
  r = RunProg(port, Cat({Eth(kTrunkMac, kTrunkMac, 0x0800), Ip4(kV1, kV9, Tcp(1, 2, 0))}));
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT)) << "to a learned next hop";
  EXPECT_EQ(
      Hex(Bytes(r.out.begin(), r.out.begin() + 12)),
      Hex(Cat({Bytes(kWire.begin(), kWire.end()), Bytes(kTrunkMac.begin(), kTrunkMac.end())})));
  std::vector<cppnet_vlan_miss> misses;
  ring_buffer* rb = ring_buffer__new(
      g_dp->vlan_miss_fd(),
      [](void* ctx, void* data, size_t) {
        static_cast<std::vector<cppnet_vlan_miss>*>(ctx)->push_back(
            *static_cast<cppnet_vlan_miss*>(data));
        return 0;
      },
      &misses, nullptr);
  ASSERT_NE(rb, nullptr);
  uint64_t unresolved = Counter(CPPNET_CNT_DROP_VLAN_UNRESOLVED),
           no_route = Counter(CPPNET_CNT_DROP_VLAN_NO_ROUTE);
  ExpectVerdict(port, Cat({Eth(kTrunkMac, kTrunkMac, 0x0800), Ip4(kV1, kV2, Tcp(1, 2, 0))}),
                TC_ACT_SHOT, "next hop unknown");
  ExpectVerdict(port, Cat({Eth(kTrunkMac, kTrunkMac, 0x0800), Ip4(kV1, 0xc6130101, Tcp(1, 2, 0))}),
                TC_ACT_SHOT, "off the subnet, no gateway");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_UNRESOLVED), unresolved + 1);
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_NO_ROUTE), no_route + 1);
  ring_buffer__consume(rb);
  ring_buffer__free(rb);
  ASSERT_EQ(misses.size(), 1u);
  uint32_t target, src;
  memcpy(&target, misses[0].target, 4);
  memcpy(&src, misses[0].src, 4);
  EXPECT_EQ(ntohl(target), kV2);
  EXPECT_EQ(ntohl(src), kV1);
  EXPECT_EQ(misses[0].vlan, 70);
  EXPECT_EQ(misses[0].kind, CPPNET_VLAN_ADDR_IPV4);
}

// The registry refuses what the datapath cannot serve, and changes nothing then.
// An endpoint with an egress rate: its frames go to the pacing device with the class in
// skb->priority and where they go next in skb->mark; cppnet_tc_paced sends them on from there.
TEST_F(VlanTest, RatedEndpointFramesArePacedThroughTheHtb) {
  const int prog = g_dp->vlan_port_prog_fd();
  const int rates = MapOfProg(prog, CPPNET_MAP_RATES), pacing = MapOfProg(prog, CPPNET_MAP_PACING);
  ASSERT_GE(rates, 0);
  ASSERT_GE(pacing, 0);
  Add(10, CPPNET_VLAN_MACVLAN_BRIDGE, 1, kEp, {kV1});
  Add(10, CPPNET_VLAN_MACVLAN_BRIDGE, kFakePort, kEp2, {kV2});
  const uint32_t port = 1, classid = CPPNET_PACE_HTB | 0x11, zero = 0, pace_dev = 77;
  auto run = [&](const Bytes& in) {
    Bytes out(in.size() + 64);
    __sk_buff ctx{};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = out.data(),
                .data_size_in = static_cast<uint32_t>(in.size()),
                .data_size_out = static_cast<uint32_t>(out.size()), .ctx_in = &ctx, .ctx_out = &ctx,
                .ctx_size_in = sizeof(ctx), .ctx_size_out = sizeof(ctx));
    EXPECT_EQ(bpf_prog_test_run_opts(prog, &opts), 0) << strerror(errno);
    return std::tuple{opts.retval, ctx.priority, ctx.mark};
  };
  const Bytes wire = Cat({Eth(kWire, kEp, 0x0800), Ip4(kV1, kV9, Tcp(1, 2, 20))});
  const Bytes local = Cat({Eth(kEp2, kEp, 0x0800), Ip4(kV1, kV2, Tcp(1, 2, 20))});
  ASSERT_EQ(bpf_map_update_elem(rates, &port, &classid, BPF_ANY), 0);
  // While no pacing device is set, nothing is looked up: straight to the trunk.
  auto [v, prio, mark] = run(wire);
  EXPECT_EQ(v, static_cast<uint32_t>(TC_ACT_REDIRECT));
  EXPECT_EQ(prio, 0u);
  ASSERT_EQ(bpf_map_update_elem(pacing, &zero, &pace_dev, BPF_ANY), 0);
  const uint64_t paced = Counter(CPPNET_CNT_VLAN_PACED);
  std::tie(v, prio, mark) = run(wire);
  EXPECT_EQ(v, static_cast<uint32_t>(TC_ACT_REDIRECT));
  EXPECT_EQ(prio, classid) << "the endpoint's htb class";
  EXPECT_EQ(mark, 1u) << "then the trunk";
  std::tie(v, prio, mark) = run(local);
  EXPECT_EQ(prio, classid);
  EXPECT_EQ(mark, CPPNET_PACED_LOCAL | kFakePort) << "then the local endpoint";
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_PACED), paced + 2);
  const uint32_t off = 0;
  bpf_map_update_elem(pacing, &zero, &off, BPF_ANY);
  bpf_map_delete_elem(rates, &port);
  close(rates);
  close(pacing);
}

TEST_F(VlanTest, RegistryRefusesConflicts) {
  Add(40, CPPNET_VLAN_MACVLAN_PASSTHRU, kFakePort, kEp);
  VlanEndpointSpec s{.network = "pt",
                     .trunk_ifindex = 1,
                     .trunk_mac = kTrunkMac,
                     .vlan = 40,
                     .mode = CPPNET_VLAN_MACVLAN_PASSTHRU,
                     .host_ifindex = kFakePort2,
                     .mac = kEp2};
  auto st = RegisterVlanEndpoint(g_dp->vlan_maps(), s);
  EXPECT_EQ(st.message(),
            "network pt is in macvlan passthru mode and already has an endpoint on this host (only "
            "one allowed)");
  s.mode = CPPNET_VLAN_MACVLAN_BRIDGE;
  s.vlan = 41;
  s.mac = kEp;
  ASSERT_TRUE(RegisterVlanEndpoint(g_dp->vlan_maps(), s).ok());
  s.host_ifindex = 1;
  EXPECT_EQ(RegisterVlanEndpoint(g_dp->vlan_maps(), s).message(),
            "network pt: address 02:42:00:00:00:10 is already used by another endpoint");
  EXPECT_EQ(ListVlanPorts(g_dp->vlan_maps().port())->size(), 2u);
}

}  // namespace
}  // namespace cppnet::test
