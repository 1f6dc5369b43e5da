// Frames the agent sends to resolve ipvlan l3 next hops on a VLAN: an ARP request or an
// IPv6 neighbour solicitation, 802.1Q-tagged when vlan != 0, from the trunk's MAC.
#pragma once
#include <cstdint>
#include <vector>

#include "cppnet/net.h"

namespace cppnet {

// src_ip/target: 4 bytes, network order.
std::vector<uint8_t> BuildArpRequest(const Mac& src_mac, uint16_t vlan, const uint8_t* src_ip,
                                     const uint8_t* target);
// src_ip/target: 16 bytes, network order. To the target's solicited-node multicast group.
std::vector<uint8_t> BuildNeighborSolicitation(const Mac& src_mac, uint16_t vlan,
                                               const uint8_t* src_ip, const uint8_t* target);
// RFC 1071 sum over the IPv6 pseudo-header and an ICMPv6 message (checksum field included).
uint16_t Icmp6Checksum(const uint8_t* src, const uint8_t* dst, const uint8_t* icmp, size_t len);

}  // namespace cppnet
