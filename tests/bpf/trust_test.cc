// Trust boundaries: only peers' packets from their own subnets are delivered, a
// container sends only from its own address, no packet re-binds an address.
#include "fixture.h"

namespace cppnet::test {
namespace {

// ---- Trust boundaries: only peers' packets from their own subnets are delivered, and
// a container sends only from its own address.
TEST_F(DatapathTest, DecapDeliversOnlyPeersFromTheirOwnSubnets) {
  const uint32_t kStranger = 0xc6120009;  // 198.18.0.9: no lease, no static route
  auto from = [](uint32_t outer_src, const Bytes& inner_ip) {
    return Cat({Eth(kUnderMacA, kUnderMacB, 0x0800),
                Ip4(outer_src, kUnderA,
                    Udp(51000, 8472, Vxlan(kVni, Cat({Eth(kVtepA, kVtepB, 0x0800), inner_ip}))),
                    {.proto = 17})});
  };
  const DecapCase cases[] = {
      {"host that is no peer", from(kStranger, Ip4(kC2, kC1, Tcp(1, 2, 5))), XDP_DROP,
       CPPNET_CNT_DROP_UNKNOWN_PEER},
      {"no peer, inner source of no subnet", from(kStranger, Ip4(0xc6130909, kC1, Tcp(1, 2, 5))),
       XDP_DROP, CPPNET_CNT_DROP_UNKNOWN_PEER},
      {"peer B sending as C's subnet", from(kUnderB, Ip4(kC3, kC1, Tcp(1, 2, 5))), XDP_DROP,
       CPPNET_CNT_DROP_BAD_INNER_SOURCE},
      {"peer B sending as our own subnet", from(kUnderB, Ip4(0xc6130107, kC1, Tcp(1, 2, 5))),
       XDP_DROP, CPPNET_CNT_DROP_BAD_INNER_SOURCE},
      {"peer B sending from outside the Network", from(kUnderB, Ip4(0x0a000001, kC1, Tcp(1, 2, 5))),
       XDP_DROP, CPPNET_CNT_DROP_BAD_INNER_SOURCE},
  };
  CheckDecap(cases);
  // The via of a static route is a peer for that route's subnet.
  cppnet_route st{};
  st.public_ip = htonl(kStranger);
  st.vni = kVni;
  st.backend = CPPNET_BACKEND_VXLAN;
  st.origin = CPPNET_ORIGIN_STATIC;
  ASSERT_TRUE(UpsertRoute(g_dp->maps().routes(), Prefix4{0xc6133200, 24}, st).ok());
  RunResult r = RunProg(g_dp->decap_prog_fd(), from(kStranger, Ip4(0xc6133202, kC1, Tcp(1, 2, 5))));
  EXPECT_EQ(r.retval, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(
      Hex(r.out),
      Hex(Cat({kMetaDecap, Eth(kUnderMacA, kVtepB, 0x0800), Ip4(0xc6133202, kC1, Tcp(1, 2, 5))})));
  r = RunProg(g_dp->underlay_prog_fd(), from(kStranger, Ip4(0xc6133202, kC1, Tcp(1, 2, 5))));
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK));  // decapsulated; no bridge yet: the stack
  // A peer with several routes has no subnet in its entry: its routes decide.
  for (const auto& [slot, p] :
       PeerSlots({{kUnderB, {Prefix4{0xc6130200, 24}, Prefix4{0xc6133300, 24}}}}))
    ASSERT_TRUE(SetPeerSlot(g_dp->maps().peers(), slot, p).ok());
  EXPECT_EQ(RunProg(g_dp->decap_prog_fd(), from(kUnderB, Ip4(kC2, kC1, Tcp(1, 2, 5)))).retval,
            static_cast<uint32_t>(XDP_PASS));
  uint64_t bad = Counter(CPPNET_CNT_DROP_BAD_INNER_SOURCE);
  EXPECT_EQ(RunProg(g_dp->decap_prog_fd(), from(kUnderB, Ip4(kC3, kC1, Tcp(1, 2, 5)))).retval,
            static_cast<uint32_t>(XDP_DROP));
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_BAD_INNER_SOURCE), bad + 1);
}

// A flow the kernel translated to a container (a hostPort): the container's answers go to the
// kernel, whose conntrack gives them the host's address; the peer then sends them from its own
// PublicIP, which the receiving side accepts from that peer only.
TEST_F(DatapathTest, AnswersInTranslatedFlowsGoBackThroughTheKernel) {
  const int flows = MapOfProg(g_dp->encap_prog_fd(), CPPNET_MAP_NAT_FLOWS);
  const int seen = MapOfProg(g_dp->encap_prog_fd(), CPPNET_MAP_NAT_SEEN);
  ASSERT_GE(flows, 0);
  ASSERT_GE(seen, 0);
  const Bytes answer = ContainerFrame(Ip4(kC1, kC2, Tcp(81, 40000, 10)));
  const Bytes other = ContainerFrame(Ip4(kC1, kC2, Tcp(81, 40001, 10)));
  ASSERT_EQ(RunProg(g_dp->encap_prog_fd(), answer).retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  cppnet_nat_flow k{};  // as cppnet_tc_bridge_out records the flow delivered to C1:81
  const uint32_t c1 = htonl(kC1), c2 = htonl(kC2), zero = 0, one = 1;
  memcpy(k.local, &c1, 4);
  memcpy(k.remote, &c2, 4);
  k.local_port = htons(81);
  k.remote_port = htons(40000);
  k.proto = 6;
  k.family = 4;
  ASSERT_EQ(bpf_map_update_elem(flows, &k, &one, BPF_ANY), 0);
  // Until a translated flow was seen on this host, nothing is looked up.
  EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), answer).retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  ASSERT_EQ(bpf_map_update_elem(seen, &zero, &one, BPF_ANY), 0);
  const uint64_t before = Counter(CPPNET_CNT_NAT_REPLY);
  RunResult r = RunProg(g_dp->encap_prog_fd(), answer);
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(r.out, answer);  // untouched: the kernel forwards it
  EXPECT_EQ(Counter(CPPNET_CNT_NAT_REPLY), before + 1);
  EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), other).retval, static_cast<uint32_t>(TC_ACT_REDIRECT))
      << "another flow of the same container";
  bpf_map_delete_elem(flows, &k);
  const uint32_t off = 0;
  bpf_map_update_elem(seen, &zero, &off, BPF_ANY);
  close(flows);
  close(seen);

  const uint32_t kStranger = 0xc6120009;
  auto from = [](uint32_t outer_src, const Bytes& inner_ip) {
    return Cat({Eth(kUnderMacA, kUnderMacB, 0x0800),
                Ip4(outer_src, kUnderA,
                    Udp(51000, 8472, Vxlan(kVni, Cat({Eth(kVtepA, kVtepB, 0x0800), inner_ip}))),
                    {.proto = 17})});
  };
  EXPECT_EQ(
      RunProg(g_dp->decap_prog_fd(), from(kUnderB, Ip4(kUnderB, kC1, Tcp(18081, 40000, 5)))).retval,
      static_cast<uint32_t>(XDP_PASS))
      << "peer B from its own PublicIP";
  const uint64_t unknown = Counter(CPPNET_CNT_DROP_UNKNOWN_PEER);
  EXPECT_EQ(
      RunProg(g_dp->decap_prog_fd(), from(kStranger, Ip4(kStranger, kC1, Tcp(1, 2, 5)))).retval,
      static_cast<uint32_t>(XDP_DROP))
      << "a stranger from its own address";
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_UNKNOWN_PEER), unknown + 1);
  EXPECT_EQ(RunProg(g_dp->decap_prog_fd(), from(kUnderB, Ip4(kUnderC, kC1, Tcp(1, 2, 5)))).retval,
            static_cast<uint32_t>(XDP_DROP))
      << "peer B as peer C's address";
}

TEST_F(DatapathTest, UdpDecapDeliversOnlyPeers) {
  cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  c.backend = CPPNET_BACKEND_UDP;
  c.port = 8285;
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  auto from = [](uint32_t outer_src, const Bytes& inner_ip) {
    return Cat({Eth(kUnderMacA, kUnderMacB, 0x0800),
                Ip4(outer_src, kUnderA, Udp(8285, 8285, inner_ip), {.proto = 17})});
  };
  const DecapCase cases[] = {
      {"host that is no peer", from(0xc6120009, Ip4(kC3, kC1, Tcp(1, 2, 5))), XDP_DROP,
       CPPNET_CNT_DROP_UNKNOWN_PEER},
      {"peer C sending as B's subnet", from(kUnderC, Ip4(kC2, kC1, Tcp(1, 2, 5))), XDP_DROP,
       CPPNET_CNT_DROP_BAD_INNER_SOURCE},
  };
  CheckDecap(cases);
}

TEST_F(DatapathTest, RoutedPacketsAreDeliveredOnlyFromTheHostGwPeer) {
  cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  c.container_ifindex = 1;
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  const Mac kHere{};
  struct {
    const char* name;
    Bytes frame;
    uint32_t verdict;
    int counter;
  } cases[] = {
      {"from peer D's MAC, D's subnet",
       Cat({Eth(kHere, kUnderMacD, 0x0800), Ip4(kC4, kC1, Tcp(1, 2, 20))}), TC_ACT_REDIRECT,
       CPPNET_CNT_DELIVER_BRIDGE},
      {"D's subnet from another host's MAC",
       Cat({Eth(kHere, kUnderMacB, 0x0800), Ip4(kC4, kC1, Tcp(1, 2, 20))}), TC_ACT_SHOT,
       CPPNET_CNT_DROP_UNKNOWN_PEER},
      {"plain packet from a vxlan peer's subnet",
       Cat({Eth(kHere, kUnderMacB, 0x0800), Ip4(kC2, kC1, Tcp(1, 2, 20))}), TC_ACT_SHOT,
       CPPNET_CNT_DROP_BAD_INNER_SOURCE},
      {"plain packet from an unleased subnet",
       Cat({Eth(kHere, kUnderMacB, 0x0800), Ip4(0xc6130909, kC1, Tcp(1, 2, 20))}), TC_ACT_SHOT,
       CPPNET_CNT_DROP_BAD_INNER_SOURCE},
  };
  for (const auto& tc : cases) {
    uint64_t before = Counter(tc.counter);
    RunResult r = RunProg(g_dp->underlay_prog_fd(), tc.frame);
    EXPECT_EQ(r.retval, tc.verdict) << tc.name;
    EXPECT_EQ(Counter(tc.counter), before + 1) << tc.name;
  }
}

TEST_F(DatapathTest, ContainerSendsOnlyFromItsOwnAddress) {
  // The harness runs the program on ifindex 1: that is the container's veth. Its first
  // packet binds 198.19.1.2 and its MAC.
  ASSERT_EQ(
      RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(40000, 80, 10)))).retval,
      static_cast<uint32_t>(TC_ACT_REDIRECT));
  auto binds = ListBinds(g_dp->maps().binds());
  ASSERT_TRUE(binds.ok());
  ASSERT_EQ(binds->size(), 1u);
  EXPECT_EQ((*binds)[0].ifindex, 1u);
  EXPECT_EQ(ntohl((*binds)[0].addr), kC1);
  const Mac kOther{0x02, 0xcc, 0, 0, 0, 0x09};
  auto arp = [](const Mac& sha, uint32_t spa, uint32_t tpa) {
    Bytes a = {0, 1, 8, 0, 6, 4, 0, 1};
    a.insert(a.end(), sha.begin(), sha.end());
    for (int i = 3; i >= 0; i--) a.push_back(static_cast<uint8_t>(spa >> (8 * i)));
    a.insert(a.end(), 6, 0);
    for (int i = 3; i >= 0; i--) a.push_back(static_cast<uint8_t>(tpa >> (8 * i)));
    return a;
  };
  struct Case {
    const char* name;
    Bytes frame;
    uint32_t verdict;
    int counter;
  } cases[] = {
      {"its neighbour's address", ContainerFrame(Ip4(0xc6130103, kC2, Tcp(1, 2, 10))), TC_ACT_SHOT,
       CPPNET_CNT_DROP_BAD_SOURCE},
      {"another host's subnet", ContainerFrame(Ip4(0xc6130207, kC1, Tcp(1, 2, 10))), TC_ACT_SHOT,
       CPPNET_CNT_DROP_BAD_SOURCE},
      {"outside the Network", ContainerFrame(Ip4(0x0a000001, kC2, Tcp(1, 2, 10))), TC_ACT_SHOT,
       CPPNET_CNT_DROP_BAD_SOURCE},
      {"its own address from another MAC",
       Cat({Eth(kBridgeMac, kOther, 0x0800), Ip4(kC1, kC2, Tcp(1, 2, 10))}), TC_ACT_SHOT,
       CPPNET_CNT_DROP_BAD_SOURCE},
      {"IPv6 from another MAC (the bridge would learn it)",
       Cat({Eth(kBridgeMac, kOther, 0x86dd), Bytes(60, 0)}), TC_ACT_SHOT,
       CPPNET_CNT_DROP_BAD_SOURCE},
      {"IPv6 from its own MAC", Cat({Eth(kBridgeMac, kContainerMac, 0x86dd), Bytes(60, 0)}),
       TC_ACT_OK, -1},
      {"ARP for its neighbour's address",
       Cat({Eth(kBridgeMac, kContainerMac, 0x0806), arp(kContainerMac, 0xc6130103, 0xc6130101)}),
       TC_ACT_SHOT, CPPNET_CNT_DROP_BAD_SOURCE},
      {"ARP with another sender MAC",
       Cat({Eth(kBridgeMac, kContainerMac, 0x0806), arp(kOther, kC1, 0xc6130101)}), TC_ACT_SHOT,
       CPPNET_CNT_DROP_BAD_SOURCE},
      {"malformed IPv4 header",
       [&] {
         Bytes b = ContainerFrame(Ip4(kC1, kC2, Tcp(1, 2, 10)));
         b[14] = 0x44;
         return b;
       }(),
       TC_ACT_SHOT, CPPNET_CNT_DROP_TRUNCATED},
      {"UDP to a host's VXLAN port",
       ContainerFrame(Ip4(kC1, kUnderB, Udp(4000, 8472, Bytes(16, 0)), {.proto = 17})), TC_ACT_SHOT,
       CPPNET_CNT_DROP_TO_TUNNEL},
      {"its own address", ContainerFrame(Ip4(kC1, kC2, Tcp(1, 2, 10))), TC_ACT_REDIRECT,
       CPPNET_CNT_VXLAN_TX},
      {"its own ARP",
       Cat({Eth(kBridgeMac, kContainerMac, 0x0806), arp(kContainerMac, kC1, 0xc6130101)}),
       TC_ACT_OK, -1},
      {"ARP probe (sender 0)",
       Cat({Eth(kBridgeMac, kContainerMac, 0x0806), arp(kContainerMac, 0, 0xc6130107)}), TC_ACT_OK,
       -1},
  };
  for (const Case& c : cases) {
    uint64_t before = c.counter >= 0 ? Counter(c.counter) : 0;
    RunResult r = RunProg(g_dp->encap_prog_fd(), c.frame);
    EXPECT_EQ(r.retval, c.verdict) << c.name;
    if (c.counter >= 0) {
      EXPECT_EQ(Counter(c.counter), before + 1) << c.name;
    }
  }
}

TEST_F(DatapathTest, AnAddressBoundToALiveVethIsNeverMoved) {
  // 198.19.1.3 belongs to another container's veth (ifindex 900001).
  const uint32_t kNeighbour = 0xc6130103;
  ASSERT_EQ(
      bpf_map_update_elem(
          g_dp->maps().endpoints(), std::array<uint8_t, 4>{198, 19, 1, 3}.data(),
          std::array<uint8_t, 16>{0xa1, 0xbb, 0x0d, 0, 0x02, 0xcc, 0, 0, 0, 3}.data(), BPF_ANY),
      0);
  for (uint32_t src : {kNeighbour, 0xc6130101u /* the gateway */, 0xc6130100u, 0xc61301ffu}) {
    uint64_t before = Counter(CPPNET_CNT_DROP_BAD_SOURCE);
    EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(src, kC2, Tcp(1, 2, 10)))).retval,
              static_cast<uint32_t>(TC_ACT_SHOT));
    EXPECT_EQ(Counter(CPPNET_CNT_DROP_BAD_SOURCE), before + 1);
  }
  auto eps = ListEndpoints(g_dp->maps().endpoints());
  ASSERT_TRUE(eps.ok());
  ASSERT_EQ(eps->size(), 1u);
  EXPECT_EQ((*eps)[0].endpoint.ifindex, 900001u);  // untouched
  auto binds = ListBinds(g_dp->maps().binds());
  ASSERT_TRUE(binds.ok());
  EXPECT_TRUE(binds->empty());
  // On the bridge (a port not attached yet), a bound address is a spoof too.
  cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  c.container_ifindex = 1;
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  EXPECT_EQ(
      RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kNeighbour, kC2, Tcp(1, 2, 10)))).retval,
      static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(1, 2, 10)))).retval,
            static_cast<uint32_t>(TC_ACT_REDIRECT));
}

}  // namespace
}  // namespace cppnet::test
