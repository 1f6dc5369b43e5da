#include "cppnet/net.h"

#include <algorithm>
#include <cctype>

#include <arpa/inet.h>

#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace cppnet {

absl::StatusOr<uint32_t> ParseIp4(absl::string_view s) {
  std::string str(s);
  in_addr a{};
  if (inet_pton(AF_INET, str.c_str(), &a) != 1)
    return absl::InvalidArgumentError(absl::StrCat("invalid IPv4 address \"", s, "\""));
  return ntohl(a.s_addr);
}

std::string FormatIp4(uint32_t ip) {
  return absl::StrFormat("%u.%u.%u.%u", ip >> 24, (ip >> 16) & 0xff, (ip >> 8) & 0xff, ip & 0xff);
}

static absl::StatusOr<Prefix4> ParseWithSep(absl::string_view s, char sep, bool strict) {
  std::vector<absl::string_view> parts = absl::StrSplit(s, absl::MaxSplits(sep, 1));
  int len = -1;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &len) || len < 0 || len > 32)
    return absl::InvalidArgumentError(absl::StrCat("invalid prefix \"", s, "\""));
  auto ip = ParseIp4(parts[0]);
  if (!ip.ok()) return absl::InvalidArgumentError(absl::StrCat("invalid prefix \"", s, "\""));
  Prefix4 p{*ip, static_cast<uint8_t>(len)};
  if ((p.addr & p.mask()) != p.addr) {
    if (strict)
      return absl::InvalidArgumentError(absl::StrCat(
          "prefix \"", s, "\" has host bits set (address not on the /", len, " boundary)"));
    p.addr &= p.mask();
  }
  return p;
}

absl::StatusOr<Prefix4> ParsePrefix4(absl::string_view s, bool strict) {
  return ParseWithSep(s, '/', strict);
}
std::string FormatPrefix4(const Prefix4& p) { return absl::StrCat(FormatIp4(p.addr), "/", p.len); }

bool IsIpv6OnlyKey(absl::string_view s) {
  return s.find('&') == absl::string_view::npos && s.find(':') != absl::string_view::npos;
}

absl::StatusOr<std::optional<Prefix6>> ParseSubnetKey6(absl::string_view s) {
  const size_t amp = s.find('&');
  if (amp == absl::string_view::npos && !IsIpv6OnlyKey(s)) return std::nullopt;
  const absl::string_view v6 = amp == absl::string_view::npos ? s : s.substr(amp + 1);
  const size_t dash = v6.rfind('-');
  auto p = dash == absl::string_view::npos
               ? absl::StatusOr<Prefix6>(absl::InvalidArgumentError(""))
               : ParsePrefix6(absl::StrCat(v6.substr(0, dash), "/", v6.substr(dash + 1)));
  // On the prefix boundary, as flanneld writes keys; a /0 is no subnet.
  if (!p.ok() || p->len == 0 || ParseIp6(v6.substr(0, dash)).value_or(0) != p->addr)
    return absl::InvalidArgumentError(absl::StrCat("invalid IPv6 prefix in \"", s, "\""));
  return std::optional<Prefix6>(*p);
}

absl::StatusOr<Prefix4> ParseSubnetKey(absl::string_view s) {
  if (auto v6 = ParseSubnetKey6(s); !v6.ok()) return v6.status();
  if (IsIpv6OnlyKey(s))
    return absl::InvalidArgumentError(absl::StrCat("\"", s, "\" is an IPv6-only subnet"));
  auto p = ParseWithSep(s.substr(0, s.find('&')), '-', true);
  if (p.ok() && p->len == 0)
    return absl::InvalidArgumentError(absl::StrCat("invalid prefix \"", s, "\""));
  return p;
}
std::string FormatSubnetKey6(const Prefix6& p) {
  return absl::StrCat(FormatIp6(p.addr), "-", p.len);
}

std::string FormatSubnetKey(const Prefix4& p, const std::optional<Prefix6>& v6) {
  std::string k = absl::StrCat(FormatIp4(p.addr), "-", p.len);
  if (v6) absl::StrAppend(&k, "&", FormatIp6(v6->addr), "-", v6->len);
  return k;
}

absl::StatusOr<Mac> ParseMac(absl::string_view s) {
  Mac m{};
  std::vector<absl::string_view> parts = absl::StrSplit(s, ':');
  if (parts.size() != 6)
    return absl::InvalidArgumentError(absl::StrCat("invalid MAC address \"", s, "\""));
  for (size_t i = 0; i < 6; i++) {
    int v = 0;
    if (parts[i].size() != 2 || !absl::SimpleHexAtoi(parts[i], &v))
      return absl::InvalidArgumentError(absl::StrCat("invalid MAC address \"", s, "\""));
    m[i] = static_cast<uint8_t>(v);
  }
  return m;
}

std::string FormatMac(const Mac& m) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

bool PlainName(absl::string_view n, size_t max_len) {
  if (n.empty() || n.size() > max_len || !std::isalnum(static_cast<unsigned char>(n[0])))
    return false;
  return std::all_of(n.begin(), n.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-';
  });
}

Mac VtepMacFor(uint32_t ip) {
  // 0e: locally administered (bit 1) and unicast (bit 0 clear); 'c','n' mark cppnet.
  return Mac{0x0e,
             0x63,
             static_cast<uint8_t>(ip >> 24),
             static_cast<uint8_t>(ip >> 16),
             static_cast<uint8_t>(ip >> 8),
             static_cast<uint8_t>(ip)};
}

absl::StatusOr<unsigned __int128> ParseIp6(absl::string_view s) {
  in6_addr a{};
  if (s.find(':') == absl::string_view::npos ||
      inet_pton(AF_INET6, std::string(s).c_str(), &a) != 1)
    return absl::InvalidArgumentError(absl::StrCat("\"", s, "\" is not an IPv6 address"));
  unsigned __int128 v = 0;
  for (uint8_t b : a.s6_addr) v = (v << 8) | b;
  return v;
}

std::string FormatIp6(unsigned __int128 ip) {
  in6_addr a{};
  for (int i = 15; i >= 0; i--, ip >>= 8) a.s6_addr[i] = static_cast<uint8_t>(ip & 0xff);
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, &a, buf, sizeof(buf));
  return buf;
}

absl::StatusOr<Prefix6> ParsePrefix6(absl::string_view s) {
  size_t slash = s.find('/');
  int len = 0;
  if (slash == absl::string_view::npos || !absl::SimpleAtoi(s.substr(slash + 1), &len) || len < 0 ||
      len > 128)
    return absl::InvalidArgumentError(
        absl::StrCat("\"", s, "\" is not an IPv6 prefix (e.g. 2001:db8::/48)"));
  auto ip = ParseIp6(s.substr(0, slash));
  if (!ip.ok()) return ip.status();
  Prefix6 p{0, static_cast<uint8_t>(len)};
  p.addr = *ip & p.mask();
  return p;
}

Ip6Bytes ToBytes6(unsigned __int128 ip) {
  Ip6Bytes b{};
  for (int i = 15; i >= 0; i--, ip >>= 8) b[i] = static_cast<uint8_t>(ip & 0xff);
  return b;
}

unsigned __int128 FromBytes6(const uint8_t* b) {
  unsigned __int128 v = 0;
  for (int i = 0; i < 16; i++) v = (v << 8) | b[i];
  return v;
}

std::string FormatPrefix6(const Prefix6& p) { return absl::StrCat(FormatIp6(p.addr), "/", p.len); }

}  // namespace cppnet
