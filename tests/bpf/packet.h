// Builds Ethernet/IPv4/UDP/TCP/VXLAN frames byte by byte for the packet tests.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cppnet/net.h"

namespace cppnet::test {

using Bytes = std::vector<uint8_t>;

struct Ip4Opts {
  uint8_t tos = 0;
  uint16_t id = 0x1234;
  bool df = true;
  uint8_t ttl = 64;
  uint8_t proto = 6;
  Bytes options;  // multiple of 4 bytes
};

Bytes Eth(const Mac& dst, const Mac& src, uint16_t type);
Bytes Ip4(uint32_t src, uint32_t dst, const Bytes& payload, const Ip4Opts& o = {});
// IPv6 header (traffic class 0, flow label 0) in front of `payload`.
Bytes Ip6(const Ip6Bytes& src, const Ip6Bytes& dst, uint8_t next, const Bytes& payload,
          uint8_t hop = 64);
Bytes Udp(uint16_t sport, uint16_t dport, const Bytes& payload);  // checksum 0
Bytes Tcp(uint16_t sport, uint16_t dport, size_t payload_len);    // fixed pattern payload
Bytes Vxlan(uint32_t vni, const Bytes& inner_frame, uint8_t flags = 0x08);
Bytes Cat(std::initializer_list<Bytes> parts);
uint16_t Csum(const uint8_t* p, size_t n);
std::string Hex(const Bytes& b);

}  // namespace cppnet::test
