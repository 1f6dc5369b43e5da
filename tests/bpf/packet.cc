#include "packet.h"

#include "absl/strings/str_format.h"

namespace cppnet::test {

static void Put16(Bytes& b, uint16_t v) {
  b.push_back(v >> 8);
  b.push_back(v & 0xff);
}
static void Put32(Bytes& b, uint32_t v) {
  Put16(b, v >> 16);
  Put16(b, v & 0xffff);
}

Bytes Eth(const Mac& dst, const Mac& src, uint16_t type) {
  Bytes b(dst.begin(), dst.end());
  b.insert(b.end(), src.begin(), src.end());
  Put16(b, type);
  return b;
}

uint16_t Csum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (n & 1) sum += p[n - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

Bytes Ip4(uint32_t src, uint32_t dst, const Bytes& payload, const Ip4Opts& o) {
  Bytes b;
  size_t hlen = 20 + o.options.size();
  b.push_back(0x40 | static_cast<uint8_t>(hlen / 4));
  b.push_back(o.tos);
  Put16(b, static_cast<uint16_t>(hlen + payload.size()));
  Put16(b, o.id);
  Put16(b, o.df ? 0x4000 : 0);
  b.push_back(o.ttl);
  b.push_back(o.proto);
  Put16(b, 0);
  Put32(b, src);
  Put32(b, dst);
  b.insert(b.end(), o.options.begin(), o.options.end());
  uint16_t c = Csum(b.data(), hlen);
  b[10] = c >> 8;
  b[11] = c & 0xff;
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes Ip6(const Ip6Bytes& src, const Ip6Bytes& dst, uint8_t next, const Bytes& payload,
          uint8_t hop) {
  Bytes b{0x60, 0, 0, 0};
  Put16(b, static_cast<uint16_t>(payload.size()));
  b.push_back(next);
  b.push_back(hop);
  b.insert(b.end(), src.begin(), src.end());
  b.insert(b.end(), dst.begin(), dst.end());
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes Udp(uint16_t sport, uint16_t dport, const Bytes& payload) {
  Bytes b;
  Put16(b, sport);
  Put16(b, dport);
  Put16(b, static_cast<uint16_t>(8 + payload.size()));
  Put16(b, 0);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes Tcp(uint16_t sport, uint16_t dport, size_t payload_len) {
  Bytes b;
  Put16(b, sport);
  Put16(b, dport);
  Put32(b, 1000);     // seq
  Put32(b, 0);        // ack
  b.push_back(0x50);  // doff 5
  b.push_back(0x18);  // PSH|ACK
  Put16(b, 65535);
  Put16(b, 0xbeef);  // checksum: carried opaquely by the overlay
  Put16(b, 0);
  for (size_t i = 0; i < payload_len; i++) b.push_back(static_cast<uint8_t>(i * 7 + 3));
  return b;
}

Bytes Vxlan(uint32_t vni, const Bytes& inner, uint8_t flags) {
  Bytes b{flags, 0, 0, 0};
  Put32(b, vni << 8);
  b.insert(b.end(), inner.begin(), inner.end());
  return b;
}

Bytes Cat(std::initializer_list<Bytes> parts) {
  Bytes b;
  for (const Bytes& p : parts) b.insert(b.end(), p.begin(), p.end());
  return b;
}

std::string Hex(const Bytes& b) {
  std::string s;
  for (size_t i = 0; i < b.size(); i++)
    s += absl::StrFormat("%02x%s", b[i], (i % 16 == 15) ? "\n" : " ");
  return s;
}

}  // namespace cppnet::test
