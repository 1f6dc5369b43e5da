// libFuzzer target: the network config at <prefix>/config.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cppnet/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto c = cppnet::ParseNetworkConfig(std::string(reinterpret_cast<const char*>(data), size));
  if (c.ok()) (void)c->ContainerMtu(1500);
  return 0;
}
