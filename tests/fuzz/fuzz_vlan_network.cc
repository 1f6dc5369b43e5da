// libFuzzer target: a VLAN network definition read from /etc/cppnet/networks.d.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cppnet/vlan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto n = cppnet::ParseVlanNetwork(std::string(reinterpret_cast<const char*>(data), size));
  if (n.ok()) (void)cppnet::SerializeVlanNetwork(*n);
  return 0;
}
