// libFuzzer target: a lease value and key as another host (or an attacker with etcd
// write access) may have written them, through the agent's whole selection path.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cppnet/lease.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cppnet::NetworkConfig cfg =
      *cppnet::ParseNetworkConfig(R"({"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}})");
  // Dual stack and IPv6 only: the IPv6 part of keys and values takes the same paths.
  static const cppnet::NetworkConfig dual = *cppnet::ParseNetworkConfig(
      R"({"Network":"198.19.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:100::/48",)"
      R"("Backend":{"Type":"vxlan"}})");
  static const cppnet::NetworkConfig v6only = *cppnet::ParseNetworkConfig(
      R"({"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48",)"
      R"("Backend":{"Type":"vxlan"}})");
  const std::string text(reinterpret_cast<const char*>(data), size);
  // First line: the key's subnet part; the rest: the value.
  const size_t nl = text.find('\n');
  const std::string key = "/p/" + text.substr(0, nl == std::string::npos ? 0 : nl);
  const std::string value = nl == std::string::npos ? text : text.substr(nl + 1);
  (void)cppnet::ParseLease(value);
  cppnet::SelectPeerLeases(cfg, "/p/", cppnet::Prefix4{0xc6130100, 24}, {{key, value, 1}});
  const cppnet::ParsedLeaseRecord rec = cppnet::ParseLeaseRecord("/p/", {key, value, 1});
  const cppnet::Prefix6 own6{static_cast<unsigned __int128>(0x20010db80100) << 80, 64};
  cppnet::SelectPeerLeases(dual, cppnet::Prefix4{0xc6130100, 24}, {&rec}, own6);
  cppnet::SelectPeerLeases(v6only, std::nullopt, {&rec}, own6);
  return 0;
}
