/* Tunnel termination shared by XDP and tc: is a packet ours, from a peer, from the peer's subnet.
 */
#ifndef CPPNET_BPF_DECAP_H
#define CPPNET_BPF_DECAP_H

#include "lib/stats.h"
#include "lib/helpers.h"
#include "overlay.h"

enum decap_verdict { DECAP_DROP, DECAP_OK }; /* or NOT_OURS */

/* The trust boundary of the receive path: an overlay packet is the peer's when the
 * route to its inner source (the lease of that subnet, or a static route) names the
 * host it came from, or when the peer sends from its own address. Otherwise *reason says whether
 * the sender is no peer at all or a peer sending from outside its subnet. */
static __always_inline int from_peer(__be32 outer_saddr, __be32 inner_saddr, __u32* reason) {
  /* Most peers hold one lease: its subnet is in the peer's slot. */
  __u32 slot = cppnet_peer_slot(outer_saddr);
  struct cppnet_peer* p = bpf_map_lookup_elem(&cppnet_peers, &slot);
  const int known = p && p->public_ip == outer_saddr;
  if (known && p->routes == 1 && in_prefix(inner_saddr, p->subnet, p->subnet_len)) return 1;
  /* The peer host itself, from its PublicIP: the kernel's answer in a flow it translated
   * (a hostPort; see nat.h), as a flanneld host sends it through flannel.1 too. */
  if (known && inner_saddr == outer_saddr) return 1;
  struct cppnet_route_key k = {.prefixlen = 32, .addr = inner_saddr};
  struct cppnet_route* rt = bpf_map_lookup_elem(&cppnet_routes, &k);

  if (rt && rt->public_ip == outer_saddr) return 1;
  *reason = known ? CPPNET_CNT_DROP_BAD_INNER_SOURCE : CPPNET_CNT_DROP_UNKNOWN_PEER;
  return 0;
}

/* Is this UDP packet to our underlay address a tunnel packet we must open? `ip` is
 * a validated IPv4 header without MF/offset. On DECAP_OK, *strip is the number of
 * bytes between the outer Ethernet header and the inner IPv4 header; on DECAP_DROP,
 * *reason is the counter to charge. */
static __always_inline int decap_check(struct iphdr* ip, void* data_end,
                                       const struct cppnet_config* cfg, __u32* strip, __u32* reason,
                                       int* vxlan) {
  __u32 hlen = (ip->ihl * 4) & 0x3c;
  struct udphdr* udp = (void*)ip + hlen;
  struct iphdr* iip;

  if ((void*)(udp + 1) > data_end || udp->dest != bpf_htons(cfg->port)) return NOT_OURS;
  *vxlan = cfg->backend == CPPNET_BACKEND_VXLAN;
  if (*vxlan) {
    struct vxlanhdr_* vx = (void*)(udp + 1);
    struct ethhdr* ieth = (void*)(vx + 1);

    *reason = CPPNET_CNT_DROP_TRUNCATED;
    if ((void*)(ieth + 1) > data_end) return DECAP_DROP;
    *reason = CPPNET_CNT_DROP_VXLAN_FLAGS;
    if (!(vx->flags & VXLAN_FLAG_VNI)) return DECAP_DROP;
    *reason = CPPNET_CNT_DROP_VNI_UNKNOWN;
    if (bpf_ntohl(vx->vni_reserved) >> 8 != cfg->vni) return DECAP_DROP;
    *reason = CPPNET_CNT_DROP_VTEP_MAC;
    if (!mac_equal(ieth->h_dest, cfg->vtep_mac)) return DECAP_DROP;
    *reason = CPPNET_CNT_DROP_INNER_NOT_IPV4;
    if (ieth->h_proto != bpf_htons(ETH_P_IP)) return DECAP_DROP;
    iip = (void*)(ieth + 1);
    *strip = hlen + sizeof(struct udphdr) + sizeof(struct vxlanhdr_) + ETH_HLEN;
  } else if (cfg->backend == CPPNET_BACKEND_UDP) {
    iip = (void*)(udp + 1); /* flanneld's udp: the payload is the inner IP packet */
    *strip = hlen + sizeof(struct udphdr);
  } else {
    return NOT_OURS; /* host-gw: nothing is encapsulated */
  }
  *reason = CPPNET_CNT_DROP_TRUNCATED;
  if ((void*)(iip + 1) > data_end) return DECAP_DROP;
  *reason = CPPNET_CNT_DROP_INNER_BAD_IP;
  if (iip->version != 4 || iip->ihl < 5) return DECAP_DROP;
  /* Only our own subnet: never relay to arbitrary addresses. */
  *reason = CPPNET_CNT_DROP_NOT_LOCAL;
  if (!in_prefix(iip->daddr, cfg->subnet_addr, cfg->subnet_len)) return DECAP_DROP;
  return from_peer(ip->saddr, iip->saddr, reason) ? DECAP_OK : DECAP_DROP;
}

/* May this IPv4 header (bounds already checked) start a tunnel packet for us: whole
 * (fragments are reassembled by the stack) UDP to our underlay address? */
static __always_inline int to_our_tunnel(const struct iphdr* ip, const struct cppnet_config* cfg) {
  return ip->version == 4 && ip->ihl >= 5 && ip->protocol == IPPROTO_UDP_ &&
         !(ip->frag_off & bpf_htons(IP_MF_OFFSET)) && ip->daddr == cfg->underlay_ip;
}

#endif
