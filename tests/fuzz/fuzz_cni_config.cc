// libFuzzer target: the network configuration a runtime passes to the CNI plugin,
// including runtime-supplied IPAM ranges checked against a VLAN network.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cppnet/cni_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cppnet::VlanNetwork net = [] {
    cppnet::VlanNetwork n;
    n.name = "vlan10";
    n.subnets4.push_back({cppnet::Prefix4{0xc6120a00, 24}, 0xc6120a01});
    n.subnets6.push_back(
        {cppnet::Prefix6{static_cast<unsigned __int128>(0x20010db800100000ULL) << 64, 64},
         (static_cast<unsigned __int128>(0x20010db800100000ULL) << 64) | 1});
    return n;
  }();
  auto conf = cppnet::ParseCniConfig(std::string(reinterpret_cast<const char*>(data), size));
  if (!conf.ok() || !conf->contains("ipam")) return 0;
  (void)cppnet::CheckRuntimeRanges((*conf)["ipam"], net);  // must neither throw nor crash
  return 0;
}
