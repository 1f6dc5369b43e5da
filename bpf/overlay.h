/* The overlay's routing state, owned by the agent: routes to other hosts' subnets (LPM) and the
 * peers array (who may send us tunnel packets, from which subnets). */
#ifndef CPPNET_BPF_OVERLAY_H
#define CPPNET_BPF_OVERLAY_H

#include "lib/stats.h"

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, CPPNET_ROUTES_MAX);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct cppnet_route_key);
  __type(value, struct cppnet_route);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_routes SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, CPPNET_PEER_SLOTS);
  __type(key, __u32);
  __type(value, struct cppnet_peer);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_peers SEC(".maps");

#endif
