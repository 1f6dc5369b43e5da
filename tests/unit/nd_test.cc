// The frames the agent sends to resolve ipvlan l3 next hops.
#include "cppnet/nd.h"

#include <gtest/gtest.h>

namespace cppnet {
namespace {

const Mac kMac{0x02, 0x77, 0, 0, 0, 0x01};

TEST(Nd, ArpRequestIsTaggedBroadcastFromTheTrunk) {
  const uint8_t src[4] = {198, 18, 70, 2}, target[4] = {198, 18, 70, 128};
  const std::vector<uint8_t> f = BuildArpRequest(kMac, 70, src, target);
  const std::vector<uint8_t> want = {
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x77, 0,  0,  0, 0x01,  // broadcast, from the trunk
      0x81, 0x00, 0x00, 70,   0x08, 0x06,                               // 802.1Q VLAN 70, ARP
      0x00, 0x01, 0x08, 0x00, 6,    4,    0x00, 0x01,                   // Ethernet/IPv4, request
      0x02, 0x77, 0,    0,    0,    0x01, 198,  18,   70, 2,            // sender
      0,    0,    0,    0,    0,    0,    198,  18,   70, 128};         // target
  EXPECT_EQ(f, want);
  EXPECT_EQ(BuildArpRequest(kMac, 0, src, target).size(), want.size() - 4)
      << "untagged: no 802.1Q header";
}

TEST(Nd, NeighborSolicitationGoesToTheSolicitedNodeGroupWithAValidChecksum) {
  uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0x70},
          target[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0x70};
  src[15] = 2;
  target[13] = 0xab, target[14] = 0xcd, target[15] = 0xef;
  const std::vector<uint8_t> f = BuildNeighborSolicitation(kMac, 70, src, target);
  ASSERT_EQ(f.size(), 18u + 40 + 32);
  EXPECT_EQ(std::vector<uint8_t>(f.begin(), f.begin() + 6),
            (std::vector<uint8_t>{0x33, 0x33, 0xff, 0xab, 0xcd, 0xef}));
  const uint8_t* ip = f.data() + 18;
  EXPECT_EQ(ip[6], 58);     // ICMPv6
  EXPECT_EQ(ip[7], 255);    // hop limit ND requires
  EXPECT_EQ(ip[24], 0xff);  // ff02::1:ffab:cdef
  EXPECT_EQ(ip[39], 0xef);
  const uint8_t* icmp = ip + 40;
  EXPECT_EQ(icmp[0], 135);
  EXPECT_EQ(Icmp6Checksum(ip + 8, ip + 24, icmp, 32), 0) << "a correct checksum sums to zero";
  EXPECT_EQ(std::vector<uint8_t>(icmp + 24, icmp + 32),
            (std::vector<uint8_t>{1, 1, 0x02, 0x77, 0, 0, 0, 0x01}));
}

}  // namespace
}  // namespace cppnet
