/* VLAN networks: Docker's macvlan/ipvlan on an 802.1Q trunk, in BPF. Helpers shared by
 * the trunk side (cppnet_tc_trunk, cppnet_tc_underlay) and the endpoint side. */
#ifndef CPPNET_BPF_VLAN_H
#define CPPNET_BPF_VLAN_H
#include "lib/csum.h"
#include "lib/helpers.h"
#include "lib/stats.h"
#include "lib/deliver.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, CPPNET_VLAN_EP_MAX);
  __type(key, struct cppnet_vlan_ep_key);
  __type(value, struct cppnet_vlan_ep);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_vlan_ep SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, CPPNET_VLAN_NET_MAX);
  __type(key, struct cppnet_vlan_net_key);
  __type(value, struct cppnet_vlan_net);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_vlan_net SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, CPPNET_VLAN_EP_MAX);
  __type(key, __u32);
  __type(value, struct cppnet_vlan_port);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_vlan_port SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, CPPNET_VLAN_EP_MAX);
  __type(key, __u32);
  __type(value, struct cppnet_vlan_cnt);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_vlan_cnt SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, CPPNET_VLAN_EP_MAX);
  __type(key, struct cppnet_vlan_ep_key);
  __type(value, struct cppnet_vlan_nbr);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_vlan_nbr SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 64 * 1024);
} cppnet_vlan_miss SEC(".maps");

/* An endpoint is a veth pair. Its frames enter cppnet_tc_vlan_port on the host end
 * and are switched to another local endpoint or tagged and sent out of the trunk.
 * Frames arriving on the trunk are demultiplexed by vlan_from_trunk(): by (trunk,
 * VLAN, destination MAC) for macvlan, by destination IP for ipvlan, flooded to the
 * VLAN's endpoints when broadcast/multicast. */

struct vlan_hdr_ {
  __be16 tci;
  __be16 proto;
};

/* Address bytes of a key kind: MAC 6, IPv4 4, IPv6 16. */
static __always_inline void vlan_addr_copy(__u8* dst, const void* src, __u8 kind) {
  if (kind == CPPNET_VLAN_ADDR_MAC)
    __builtin_memcpy(dst, src, 6);
  else if (kind == CPPNET_VLAN_ADDR_IPV4)
    __builtin_memcpy(dst, src, 4);
  else
    __builtin_memcpy(dst, src, 16);
}

/* The endpoint with this MAC or IP on (trunk, VLAN). */
static __always_inline struct cppnet_vlan_ep* vlan_ep_find(__u32 trunk, __u16 vid, __u8 kind,
                                                           const void* addr) {
  struct cppnet_vlan_ep_key k = {.trunk_ifindex = trunk, .vlan = vid, .kind = kind};

  vlan_addr_copy(k.addr, addr, kind);
  return bpf_map_lookup_elem(&cppnet_vlan_ep, &k);
}

static __always_inline struct cppnet_vlan_ep* vlan_ep_by_mac(__u32 trunk, __u16 vid,
                                                             const __u8* mac) {
  return vlan_ep_find(trunk, vid, CPPNET_VLAN_ADDR_MAC, mac);
}

/* ipvlan: the endpoint owning the frame's destination IP (IPv4, IPv6, or an ARP's
 * target), L3 header at offset l3. */
static __always_inline struct cppnet_vlan_ep* vlan_ep_by_ip(struct __sk_buff* skb, __u32 trunk,
                                                            __u16 vid, __be16 proto, __u32 l3) {
  struct cppnet_vlan_ep_key k = {.trunk_ifindex = trunk, .vlan = vid};

  if (proto == bpf_htons(ETH_P_IP)) {
    k.kind = CPPNET_VLAN_ADDR_IPV4;
    if (bpf_skb_load_bytes(skb, l3 + IPV4_DADDR_OFF, k.addr, 4)) return 0;
  } else if (proto == bpf_htons(ETH_P_ARP)) {
    k.kind = CPPNET_VLAN_ADDR_IPV4; /* target protocol address (Ethernet/IPv4 ARP) */
    if (bpf_skb_load_bytes(skb, l3 + ARP_TPA_OFF, k.addr, 4)) return 0;
  } else if (proto == bpf_htons(ETH_P_IPV6)) {
    k.kind = CPPNET_VLAN_ADDR_IPV6;
    if (bpf_skb_load_bytes(skb, l3 + IPV6_DADDR_OFF, k.addr, 16)) return 0;
  } else {
    return 0;
  }
  return bpf_map_lookup_elem(&cppnet_vlan_ep, &k);
}

/* An endpoint's counters, per CPU: no atomics on the fast path. */
static __always_inline void port_count(__u32 ifindex, __u64 bytes, int tx) {
  struct cppnet_vlan_cnt* c = bpf_map_lookup_elem(&cppnet_vlan_cnt, &ifindex);

  if (!c) return;
  if (tx) {
    c->tx_packets++;
    c->tx_bytes += bytes;
  } else {
    c->rx_packets++;
    c->rx_bytes += bytes;
  }
}

/* A copy to every endpoint of the network except `except` (the sender). */
static __always_inline void vlan_flood(struct __sk_buff* skb, const struct cppnet_vlan_net* net,
                                       __u32 except) {
  __u32 n = net->nports;

  for (__u32 i = 0; i < CPPNET_VLAN_PORTS_MAX; i++) {
    if (i >= n) break;
    __u32 port = net->ports[i];
    if (!port || port == except) continue;
    if (bpf_clone_redirect(skb, port, 0) == 0) port_count(port, skb->len, 0);
  }
}

/* Does an endpoint's frame carry only its own addresses? IPv4 and IPv6 sources and an
 * ARP's sender must be addresses registered for this endpoint (an ARP probe's 0, the
 * unspecified and link-local IPv6 sources of neighbour discovery aside). Other
 * ethertypes carry no address the network routes by. */
static __always_inline int vlan_source_ok(struct __sk_buff* skb, void* data, void* data_end,
                                          __u32 trunk, __u16 vid, __u32 self, __be16 proto,
                                          const __u8* own_mac) {
  struct cppnet_vlan_ep_key k = {.trunk_ifindex = trunk, .vlan = vid};

  if (proto == bpf_htons(ETH_P_IP)) {
    struct iphdr* ip = data + ETH_HLEN; /* direct access: no helper call per packet */
    if ((void*)(ip + 1) > data_end) return 0;
    k.kind = CPPNET_VLAN_ADDR_IPV4;
    __builtin_memcpy(k.addr, &ip->saddr, 4);
  } else if (proto == bpf_htons(ETH_P_ARP)) {
    struct arp_eth_ a;
    if (bpf_skb_load_bytes(skb, ETH_HLEN, &a, sizeof(a))) return 0;
    __u32 spa;
    __builtin_memcpy(&spa, a.spa, 4);
    if (!mac_equal_bytes(a.sha, own_mac)) return 0;
    if (!spa) return 1;
    k.kind = CPPNET_VLAN_ADDR_IPV4;
    __builtin_memcpy(k.addr, a.spa, 4);
  } else if (proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr* ip6 = data + ETH_HLEN;
    if ((void*)(ip6 + 1) > data_end) return 0;
    k.kind = CPPNET_VLAN_ADDR_IPV6;
    __builtin_memcpy(k.addr, &ip6->saddr, 16);
    if ((k.addr[0] == 0xfe && (k.addr[1] & 0xc0) == 0x80) ||
        !(*(__u64*)k.addr | *(__u64*)(k.addr + 8)))
      return 1;
  } else {
    return 1;
  }
  struct cppnet_vlan_ep* ep = bpf_map_lookup_elem(&cppnet_vlan_ep, &k);
  return ep && ep->ifindex == self;
}

#define ND_NA_SOLICITED 0x40000000

/* ---- ipvlan l3: the host is the endpoints' router on the VLAN (as the parent is
 * for Linux ipvlan l3). It answers ARP and neighbour solicitations for their
 * addresses (proxy), learns next hops from ARP/ND on the trunk, and asks the agent to
 * resolve the ones it does not know. */

/* An answer to one of the agent's requests: fills the entry the agent made for it.
 * Anything else (no entry, or one already resolved) is unsolicited and ignored. */
static __always_inline void nbr_answer(__u32 trunk, __u16 vid, __u8 kind, const void* addr,
                                       const __u8* mac) {
  struct cppnet_vlan_ep_key k = {.trunk_ifindex = trunk, .vlan = vid, .kind = kind};

  vlan_addr_copy(k.addr, addr, kind);
  struct cppnet_vlan_nbr* n = bpf_map_lookup_elem(&cppnet_vlan_nbr, &k);
  if (!n || n->state == CPPNET_NBR_RESOLVED) return;
  mac_copy(n->mac, mac);
  n->state = CPPNET_NBR_RESOLVED;
}

/* ICMPv6 checksum of a 32-byte neighbour advertisement (RFC 4443 pseudo-header). */
struct nd_pseudo_ {
  __u8 src[16], dst[16];
  __be32 len, nxt;
  __u8 icmp[32];
};

/* Trunk ingress of an ipvlan l3 network: ARP and neighbour discovery. Returns a tc
 * verdict, or NOT_OURS for everything else. */
static __always_inline int vlan_l3_nd(struct __sk_buff* skb, const struct cppnet_vlan_net* net,
                                      __u32 trunk, __u16 vid, __be16 proto, __u32 l3) {
  __u8 macs[12]; /* destination, source */
  const __u8* smac = macs + 6;

  if (bpf_skb_load_bytes(skb, 0, macs, 12)) return NOT_OURS;
  const int to_us = mac_equal_bytes(macs, net->trunk_mac);
  if (proto == bpf_htons(ETH_P_ARP)) {
    struct arp_eth_ a;

    if (bpf_skb_load_bytes(skb, l3, &a, sizeof(a)) || a.htype != bpf_htons(ARPHRD_ETHER_) ||
        a.ptype != bpf_htons(ETH_P_IP) || a.hlen != 6 || a.plen != 4)
      return NOT_OURS;
    if (a.op == bpf_htons(ARPOP_REPLY_) && to_us && mac_equal_bytes(a.tha, net->trunk_mac))
      nbr_answer(trunk, vid, CPPNET_VLAN_ADDR_IPV4, a.spa, a.sha);
    if (a.op == bpf_htons(ARPOP_REQUEST_) &&
        vlan_ep_find(trunk, vid, CPPNET_VLAN_ADDR_IPV4, a.tpa)) {
      /* Answer for the endpoint, from the trunk's MAC (ipvlan: it is theirs). */
      __u8 ip[4];
      __builtin_memcpy(ip, a.tpa, 4);
      a.op = bpf_htons(ARPOP_REPLY_);
      mac_copy(a.tha, a.sha);
      __builtin_memcpy(a.tpa, a.spa, 4);
      mac_copy(a.sha, net->trunk_mac);
      __builtin_memcpy(a.spa, ip, 4);
      if (bpf_skb_store_bytes(skb, l3, &a, sizeof(a), 0) ||
          bpf_skb_store_bytes(skb, 0, smac, 6, 0) ||
          bpf_skb_store_bytes(skb, 6, net->trunk_mac, 6, 0))
        return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
      count(CPPNET_CNT_VLAN_PROXY, skb->len);
      return bpf_redirect(trunk, 0); /* back out, still tagged */
    }
    return vid ? TC_ACT_SHOT : NOT_OURS;
  }
  if (proto != bpf_htons(ETH_P_IPV6)) return NOT_OURS;
  struct {
    __be32 vtcfl;
    __be16 plen;
    __u8 nxt, hop;
    __u8 src[16], dst[16];
    __u8 type, code;
    __be16 csum;
    __be32 flags;
    __u8 target[16];
  } nd;
  if (bpf_skb_load_bytes(skb, l3, &nd, sizeof(nd)) || nd.nxt != IPPROTO_ICMPV6_ || nd.hop != 255 ||
      (nd.type != ND_NS && nd.type != ND_NA))
    return NOT_OURS;
  const int unspecified = !(*(__u64*)nd.src | *(__u64*)(nd.src + 8));
  if (nd.type == ND_NA) {
    if (to_us && (nd.flags & bpf_htonl(ND_NA_SOLICITED)))
      nbr_answer(trunk, vid, CPPNET_VLAN_ADDR_IPV6, nd.target, smac);
    return vid ? TC_ACT_SHOT : NOT_OURS;
  }
  /* Answer only a solicitation with its source link-layer option (32 bytes), the
   * size of our advertisement, from a node that has an address (not DAD). */
  if (unspecified || nd.plen != bpf_htons(32) ||
      !vlan_ep_find(trunk, vid, CPPNET_VLAN_ADDR_IPV6, nd.target))
    return vid ? TC_ACT_SHOT : NOT_OURS;
  struct nd_pseudo_ ps = {};
  __builtin_memcpy(ps.src, nd.target, 16);
  __builtin_memcpy(ps.dst, nd.src, 16);
  ps.len = bpf_htonl(32);
  ps.nxt = bpf_htonl(IPPROTO_ICMPV6_);
  ps.icmp[0] = ND_NA;
  ps.icmp[ND_NA_FLAGS_OFF] = ND_NA_SOLICITED_OVERRIDE;
  __builtin_memcpy(ps.icmp + ND_NA_TARGET_OFF, nd.target, 16);
  ps.icmp[ND_OPT_OFF] = ND_OPT_TARGET_LLADDR;
  ps.icmp[ND_OPT_OFF + 1] = 1; /* length in units of 8 bytes */
  mac_copy(ps.icmp + ND_OPT_OFF + 2, net->trunk_mac);
  __u16 csum = csum_fold((__u32)bpf_csum_diff(0, 0, (__be32*)&ps, sizeof(ps), 0));
  __builtin_memcpy(ps.icmp + ICMP_CSUM_OFF, &csum, 2);
  /* IPv6 addresses: from the target to the solicitor; then the advertisement. */
  if (bpf_skb_store_bytes(skb, l3 + IPV6_SADDR_OFF, ps.src, 32, 0) ||
      bpf_skb_store_bytes(skb, l3 + IPV6_HLEN, ps.icmp, 32, 0) ||
      bpf_skb_store_bytes(skb, 0, smac, 6, 0) || bpf_skb_store_bytes(skb, 6, net->trunk_mac, 6, 0))
    return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
  count(CPPNET_CNT_VLAN_PROXY, skb->len);
  return bpf_redirect(trunk, 0);
}

/* An l3 endpoint's packet for somewhere off this host: to the next hop on the VLAN
 * (the destination inside the network's subnet, else its gateway) when its MAC is
 * known; otherwise the agent is asked to resolve it and the packet is dropped, as a
 * neighbour table without a queue would. Returns NOT_OURS to send it on. */
static __always_inline int vlan_l3_out(struct __sk_buff* skb, const struct cppnet_vlan_net* net,
                                       __u32 trunk, __u16 vid, __be16 proto) {
  struct cppnet_vlan_ep_key k = {.trunk_ifindex = trunk, .vlan = vid};
  struct cppnet_vlan_miss ev = {.trunk_ifindex = trunk, .vlan = vid};

  if (proto == bpf_htons(ETH_P_IP)) {
    __be32 a[2]; /* source, destination */
    if (bpf_skb_load_bytes(skb, ETH_HLEN + IPV4_SADDR_OFF, a, 8)) goto truncated;
    __be32 nh =
        net->subnet4_len && in_prefix(a[1], net->subnet4, net->subnet4_len) ? a[1] : net->gw4;
    if (!nh) return drop(skb, CPPNET_CNT_DROP_VLAN_NO_ROUTE);
    k.kind = ev.kind = CPPNET_VLAN_ADDR_IPV4;
    __builtin_memcpy(k.addr, &nh, 4);
    __builtin_memcpy(ev.src, &a[0], 4);
  } else if (proto == bpf_htons(ETH_P_IPV6)) {
    __u8 a[32];
    if (bpf_skb_load_bytes(skb, ETH_HLEN + IPV6_SADDR_OFF, a, 32)) goto truncated;
    k.kind = ev.kind = CPPNET_VLAN_ADDR_IPV6;
    if (net->subnet6_len && in_prefix6(a + 16, net->subnet6, net->subnet6_len))
      __builtin_memcpy(k.addr, a + 16, 16);
    else
      __builtin_memcpy(k.addr, net->gw6, 16);
    if (!(*(__u64*)k.addr | *(__u64*)(k.addr + 8))) return drop(skb, CPPNET_CNT_DROP_VLAN_NO_ROUTE);
    __builtin_memcpy(ev.src, a, 16);
  } else {
    return drop(skb, CPPNET_CNT_DROP_VLAN_L3);
  }
  struct cppnet_vlan_nbr* n = bpf_map_lookup_elem(&cppnet_vlan_nbr, &k);
  if (!n || n->state == CPPNET_NBR_PENDING) {
    __builtin_memcpy(ev.target, k.addr, 16);
    bpf_ringbuf_output(&cppnet_vlan_miss, &ev, sizeof(ev), 0);
    return drop(skb, CPPNET_CNT_DROP_VLAN_UNRESOLVED);
  }
  if (bpf_skb_store_bytes(skb, 0, n->mac, 6, 0)) return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
  return NOT_OURS;
truncated:
  return drop(skb, CPPNET_CNT_DROP_TRUNCATED);
}

#endif
