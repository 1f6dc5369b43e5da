/* The overlay's routing state, owned by the agent: routes to other hosts' subnets (LPM) and the
 * peers array (who may send us tunnel packets, from which subnets). */
#ifndef CPPNET_BPF_OVERLAY_H
#define CPPNET_BPF_OVERLAY_H

#include "lib/stats.h"
#include "lib/helpers.h"
#include "lib/deliver.h"

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

/* Delivery of an overlay packet for this host (either family), its Ethernet header at `eth`. */

/* The host's overlay address: into the host through CPPNET_HOST_DEV, the device of its route to
 * the Network, so that strict reverse-path filtering agrees. */
static __always_inline int deliver_to_host(struct __sk_buff* skb, struct ethhdr* eth,
                                           const struct cppnet_config* cfg) {
  mac_copy(eth->h_dest, cfg->host_mac);
  count(CPPNET_CNT_DELIVER_HOST, skb->len);
  return bpf_redirect(cfg->host_ifindex, BPF_F_INGRESS);
}

/* Straight into a learned container's namespace (TTL/hop limit already decremented). */
static __always_inline int deliver_to_endpoint(struct __sk_buff* skb, struct ethhdr* eth,
                                               const struct cppnet_endpoint* ep,
                                               const struct cppnet_config* cfg) {
  mac_copy(eth->h_dest, ep->mac);
  mac_copy(eth->h_source, ep->gw_mac);
  count(CPPNET_CNT_DELIVER_PEER, skb->len);
  return into_container(ep->ifindex, cfg);
}

/* Bound but its gateway MAC not seen yet (no overlay packet sent): such an entry cannot be used. */
static __always_inline int endpoint_ready(const struct cppnet_endpoint* ep) {
  return ep && (*(__u32*)ep->gw_mac | *(__u16*)(ep->gw_mac + 4));
}

/* A netkit endpoint's packet for another container of our subnet, ready to deliver (`ep`, TTL
 * or hop limit already decremented): the host is its router (no bridge behind netkit), so it
 * goes straight out of that container's host end (bpf_redirect: its qdisc, then its transmit
 * into the container). A container not learned yet, or the host's own overlay address, is the
 * kernel's (the CNI plugin's host route to the container). */
static __always_inline int deliver_local(struct __sk_buff* skb, struct ethhdr* eth,
                                         const struct cppnet_endpoint* ep) {
  mac_copy(eth->h_dest, ep->mac);
  mac_copy(eth->h_source, ep->gw_mac);
  count(CPPNET_CNT_DELIVER_PEER, skb->len);
  return bpf_redirect(ep->ifindex, 0);
}

/* Another container's delivery entry, when it can be used from this one's transmit. */
static __always_inline int local_target(const struct __sk_buff* skb,
                                        const struct cppnet_endpoint* ep) {
  return endpoint_ready(ep) && ep->ifindex != skb->ifindex;
}

#endif
