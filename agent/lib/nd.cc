#include "cppnet/nd.h"

#include <cstring>

namespace cppnet {

static void Ethernet(std::vector<uint8_t>& f, const uint8_t* dst, const Mac& src, uint16_t vlan,
                     uint16_t type) {
  f.insert(f.end(), dst, dst + 6);
  f.insert(f.end(), src.begin(), src.end());
  if (vlan)
    f.insert(f.end(), {0x81, 0x00, static_cast<uint8_t>(vlan >> 8), static_cast<uint8_t>(vlan)});
  f.insert(f.end(), {static_cast<uint8_t>(type >> 8), static_cast<uint8_t>(type)});
}

std::vector<uint8_t> BuildArpRequest(const Mac& src_mac, uint16_t vlan, const uint8_t* src_ip,
                                     const uint8_t* target) {
  static const uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  std::vector<uint8_t> f;
  Ethernet(f, kBroadcast, src_mac, vlan, 0x0806);
  f.insert(f.end(), {0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01});  // Ethernet/IPv4, request
  f.insert(f.end(), src_mac.begin(), src_mac.end());
  f.insert(f.end(), src_ip, src_ip + 4);
  f.insert(f.end(), 6, 0);
  f.insert(f.end(), target, target + 4);
  return f;
}

uint16_t Icmp6Checksum(const uint8_t* src, const uint8_t* dst, const uint8_t* icmp, size_t len) {
  uint64_t sum = 0;
  auto add = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
    if (n & 1) sum += p[n - 1] << 8;
  };
  add(src, 16);
  add(dst, 16);
  sum += len + 58;  // upper-layer length, next header
  add(icmp, len);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

std::vector<uint8_t> BuildNeighborSolicitation(const Mac& src_mac, uint16_t vlan,
                                               const uint8_t* src_ip, const uint8_t* target) {
  const uint8_t mac[6] = {0x33, 0x33, 0xff, target[13], target[14], target[15]};
  uint8_t group[16] = {0xff, 0x02, 0, 0,    0,    0,          0,          0,
                       0,    0,    0, 0x01, 0xff, target[13], target[14], target[15]};
  std::vector<uint8_t> icmp = {135, 0, 0, 0, 0, 0, 0, 0};
  icmp.insert(icmp.end(), target, target + 16);
  icmp.insert(icmp.end(), {1, 1});  // source link-layer address option
  icmp.insert(icmp.end(), src_mac.begin(), src_mac.end());
  const uint16_t csum = Icmp6Checksum(src_ip, group, icmp.data(), icmp.size());
  icmp[2] = static_cast<uint8_t>(csum >> 8);
  icmp[3] = static_cast<uint8_t>(csum);
  std::vector<uint8_t> f;
  Ethernet(f, mac, src_mac, vlan, 0x86dd);
  f.insert(f.end(), {0x60, 0, 0, 0, 0, static_cast<uint8_t>(icmp.size()), 58, 255});
  f.insert(f.end(), src_ip, src_ip + 16);
  f.insert(f.end(), group, group + 16);
  f.insert(f.end(), icmp.begin(), icmp.end());
  return f;
}

}  // namespace cppnet
