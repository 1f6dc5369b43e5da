// IPv4 addresses, prefixes and MACs as the agent and CLI handle them.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace cppnet {

// Host byte order inside; convert at the map/wire boundary.
struct Prefix4 {
  uint32_t addr = 0;
  uint8_t len = 0;

  uint32_t mask() const { return len == 0 ? 0 : ~uint32_t{0} << (32 - len); }
  uint32_t size() const { return len == 0 ? 0 : uint32_t{1} << (32 - len); }  // 0 means 2^32
  bool contains(uint32_t ip) const { return (ip & mask()) == addr; }
  bool contains(const Prefix4& o) const { return o.len >= len && contains(o.addr); }
  bool overlaps(const Prefix4& o) const { return contains(o) || o.contains(*this); }
  bool operator==(const Prefix4&) const = default;
  auto operator<=>(const Prefix4&) const = default;
};

// IPv6 prefix, address as a 128-bit number (host order) for range arithmetic.
struct Prefix6 {
  unsigned __int128 addr = 0;
  uint8_t len = 0;

  unsigned __int128 mask() const {
    return len == 0 ? 0 : ~static_cast<unsigned __int128>(0) << (128 - len);
  }
  bool contains(unsigned __int128 ip) const { return (ip & mask()) == addr; }
  bool contains(const Prefix6& o) const { return o.len >= len && contains(o.addr); }
  bool overlaps(const Prefix6& o) const { return contains(o) || o.contains(*this); }
  bool operator==(const Prefix6&) const = default;
  bool operator<(const Prefix6& o) const { return addr != o.addr ? addr < o.addr : len < o.len; }
};

using Mac = std::array<uint8_t, 6>;
// An IPv6 address as the maps and the wire hold it (network byte order).
using Ip6Bytes = std::array<uint8_t, 16>;
Ip6Bytes ToBytes6(unsigned __int128 ip);
unsigned __int128 FromBytes6(const uint8_t* b);

absl::StatusOr<uint32_t> ParseIp4(absl::string_view s);
std::string FormatIp4(uint32_t ip);
// "a.b.c.d/len"; the address must sit on the prefix boundary when strict.
absl::StatusOr<Prefix4> ParsePrefix4(absl::string_view s, bool strict = true);
std::string FormatPrefix4(const Prefix4& p);  // CIDR form
// flannel's etcd key form "a.b.c.d-len"; dual stack appends "&<IPv6 subnet>-len"
// ("10.5.3.0-24&fc00:0:0:3::-64"); an IPv6-only network (beyond flanneld, which has none with
// etcd) uses the IPv6 part alone ("fc00:0:0:3::-64"). ParseSubnetKey returns the IPv4 subnet and
// checks the whole key (an IPv6-only key is an error there); ParseSubnetKey6 the IPv6 subnet
// (nullopt: an IPv4-only key).
absl::StatusOr<Prefix4> ParseSubnetKey(absl::string_view s);
absl::StatusOr<std::optional<Prefix6>> ParseSubnetKey6(absl::string_view s);
bool IsIpv6OnlyKey(absl::string_view s);
std::string FormatSubnetKey(const Prefix4& p, const std::optional<Prefix6>& v6 = std::nullopt);
std::string FormatSubnetKey6(const Prefix6& p);  // an IPv6-only key
absl::StatusOr<unsigned __int128> ParseIp6(absl::string_view s);
std::string FormatIp6(unsigned __int128 ip);
// "x::/len"; host bits are cleared (flanneld accepts and normalises them).
absl::StatusOr<Prefix6> ParsePrefix6(absl::string_view s);
std::string FormatPrefix6(const Prefix6& p);
absl::StatusOr<Mac> ParseMac(absl::string_view s);
std::string FormatMac(const Mac& m);
// Stable VtepMAC for a host: locally administered, unicast, derived from its PublicIP.
Mac VtepMacFor(uint32_t public_ip);

// A name safe as a file name and as CNI and Docker allow them: a letter or digit, then
// letters, digits, '_', '.', '-'; at most max_len characters.
bool PlainName(absl::string_view name, size_t max_len);

}  // namespace cppnet
