/* tc ingress of the underlay: decapsulation (or XDP's marked packets), routed packets of host-gw
 * peers, delivery straight into the container; VLAN trunk frames when the underlay is also a trunk.
 */
#ifndef CPPNET_BPF_UNDERLAY_H
#define CPPNET_BPF_UNDERLAY_H

#include "decap.h"
#include "container.h"
#include "vlan_demux.h"

/* Delivers an IPv4 packet for our subnet (Ethernet header in front) to its container:
 * into the container's namespace when we know its veth, else through the bridge
 * (the neighbour layer resolves the MAC), else to the stack. Like a router: TTL - 1. */
static __always_inline int deliver(struct __sk_buff* skb, const struct cppnet_config* cfg) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);

  if ((void*)(ip + 1) > data_end) return TC_ACT_OK;
  __be32 daddr = ip->daddr;
  if (daddr == cfg->subnet_addr && cfg->host_ifindex) return deliver_to_host(skb, eth, cfg);
  if (ip->ttl <= 1) return TC_ACT_OK; /* the stack answers with ICMP time-exceeded */
  struct cppnet_endpoint* ep = bpf_map_lookup_elem(&cppnet_endpoint, &daddr);
  if (endpoint_ready(ep)) { /* else the bridge */
    ip_decrease_ttl(ip);
    return deliver_to_endpoint(skb, eth, ep, cfg);
  }
  if (!cfg->container_ifindex) return TC_ACT_OK;
  ip_decrease_ttl(ip);
  count(CPPNET_CNT_DELIVER_BRIDGE, skb->len);
  return bpf_redirect_neigh(cfg->container_ifindex, 0, 0, 0);
}

/* A packet a host-gw (or DirectRouting) peer routed to us: its source lies in a
 * subnet we reach that way, and it comes from that peer's MAC, as the host's
 * neighbour table knows it. Delivered directly only then; with the peer's MAC not
 * resolved (or forwarding off), the stack (and its firewall) decides; everything
 * else is dropped. */
static __always_inline int routed_from_peer(struct __sk_buff* skb, const struct cppnet_config* cfg,
                                            struct iphdr* ip) {
  struct cppnet_route_key k = {.prefixlen = 32, .addr = ip->saddr};
  struct cppnet_route* rt = bpf_map_lookup_elem(&cppnet_routes, &k);

  if (!rt || rt->backend != CPPNET_BACKEND_HOSTGW)
    return drop(skb, CPPNET_CNT_DROP_BAD_INNER_SOURCE);
  struct bpf_fib_lookup fib = {
      .family = AF_INET_,
      .ifindex = cfg->underlay_ifindex,
      .ipv4_dst = rt->public_ip,
  };
  /* (The helper also insists on forwarding being enabled on the underlay.) */
  long r = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
  if (r == BPF_FIB_LKUP_RET_NO_NEIGH || r == BPF_FIB_LKUP_RET_FWD_DISABLED) return TC_ACT_OK;
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > data_end) return TC_ACT_SHOT;
  __u8 peer_mac[8] __attribute__((aligned(4))); /* fib.dmac sits unaligned on the stack */
  mac_copy(peer_mac, fib.dmac);
  if (r != BPF_FIB_LKUP_RET_SUCCESS || fib.ifindex != cfg->underlay_ifindex ||
      !mac_equal(peer_mac, eth->h_source))
    return drop(skb, CPPNET_CNT_DROP_UNKNOWN_PEER);
  return deliver(skb, cfg);
}

SEC("tc")
int cppnet_tc_underlay(struct __sk_buff* skb) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);
  struct cppnet_config* cfg;

  if ((void*)(eth + 1) > data_end) return TC_ACT_OK;
  cfg = ready_config();
  /* The underlay may also be a VLAN trunk: tagged frames, and untagged ones when an
   * untagged VLAN network shares it (a flag, to spare overlay packets the lookup). */
  if (skb->vlan_present || eth->h_proto != bpf_htons(ETH_P_IP) ||
      (cfg && (cfg->flags & CPPNET_CFG_UNTAGGED_VLAN))) {
    int v = vlan_from_trunk(skb);

    if (v != NOT_OURS) return v;
    data = (void*)(long)skb->data;
    data_end = (void*)(long)skb->data_end;
    eth = data;
    ip = (void*)(eth + 1);
  }
  if ((void*)(ip + 1) > data_end || skb->vlan_present || !cfg) return TC_ACT_OK;
  if (eth->h_proto == bpf_htons(ETH_P_IPV6))
    return cfg->subnet6_len ? underlay_ipv6(skb, cfg) : TC_ACT_OK;
  if (eth->h_proto != bpf_htons(ETH_P_IP) || !cfg->subnet_len) return TC_ACT_OK;
  if (to_our_tunnel(ip, cfg)) {
    __u32 strip = 0, reason = 0;
    int vxlan = 0;
    int v = decap_check(ip, data_end, cfg, &strip, &reason, &vxlan);

    if (v == NOT_OURS) return TC_ACT_OK;
    if (v == DECAP_DROP) {
      count(reason, skb->len);
      return TC_ACT_SHOT;
    }
    /* Remove everything between the outer Ethernet header and the inner IP
     * header. FIXED_GSO: a GSO packet's segment size is the inner one already. */
    if (bpf_skb_adjust_room(skb, -(__s32)strip, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
      return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
    count(vxlan ? CPPNET_CNT_VXLAN_RX : CPPNET_CNT_UDP_RX, skb->len);
    return deliver(skb, cfg);
  }
  /* Overlay traffic that arrives unencapsulated: what the XDP program opened (and
   * checked), and what host-gw peers route to us. Traffic from outside the cluster
   * network stays with the stack (and its firewall). */
  if (skb->pkt_type == PACKET_HOST && ip->version == 4 &&
      in_prefix(ip->daddr, cfg->subnet_addr, cfg->subnet_len) &&
      in_prefix(ip->saddr, cfg->network_addr, cfg->network_len)) {
    __u32* meta = (void*)(long)skb->data_meta;
    if ((void*)(meta + 1) <= data && *meta == CPPNET_XDP_META_DECAP) return deliver(skb, cfg);
    return routed_from_peer(skb, cfg, ip);
  }
  return TC_ACT_OK;
}

#endif
