// SPDX-License-Identifier: GPL-2.0
/* cppnet datapath.
 * - cppnet_tc_encap, tc ingress of the container veths (and of the bridge, for ports
 *   not attached yet): encapsulates (vxlan/udp) or routes (host-gw) overlay traffic
 *   straight out of the underlay, and learns where each local container lives.
 * - cppnet_tc_underlay, tc ingress of the underlay: decapsulates, and delivers overlay
 *   packets for our subnet straight into the container (bpf_redirect_peer), skipping
 *   IP forwarding, the bridge and a backlog queue. GSO packets stay whole.
 * - cppnet_xdp_decap, XDP on the underlay (optional): earliest decapsulation for NICs
 *   where XDP leaves GRO intact; hands the inner packet to the tc program above.
 * - cppnet_tc_trunk (tc ingress of a VLAN trunk) and cppnet_tc_vlan_port (tc ingress
 *   of a VLAN endpoint's host veth): VLAN networks, see vlan.h.
 * Anything that is not overlay or VLAN network traffic returns to the stack untouched. */
#include "common.h"
#include "vlan.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline __u32 mix32(__u32 h) {
  h ^= h >> 16;
  h *= 0x7feb352d;
  h ^= h >> 15;
  h *= 0x846ca68b;
  return h ^ (h >> 16);
}

/* Outer UDP source port from the flow hash, in the ephemeral range the kernel's
 * vxlan driver uses, so the underlay can spread flows (ECMP/RSS). The socket's hash
 * is used when the skb carries one (TCP re-rolls it after timeouts, moving a stuck
 * flow to another path); otherwise a mix of the 5-tuple, which costs far less than
 * running the flow dissector (bpf_get_hash_recalc) for every packet. */
static __always_inline __u16 flow_src_port(struct __sk_buff* skb, struct iphdr* ip,
                                           void* data_end) {
  const __u32 lo = 32768, hi = 61000;
  __u32 hash = skb->hash;

  if (!hash) {
    __u32 ports = 0;
    __u32* l4 = (void*)ip + ((ip->ihl * 4) & 0x3c);

    if ((ip->protocol == IPPROTO_TCP_ || ip->protocol == IPPROTO_UDP_) &&
        !(ip->frag_off & bpf_htons(IP_MF_OFFSET)) && (void*)(l4 + 1) <= data_end)
      ports = *l4;
    hash = mix32(ip->saddr ^ mix32(ip->daddr ^ mix32(ports ^ ip->protocol)));
  }
  return (__u16)((((__u64)hash * (hi - lo)) >> 32) + lo);
}

/* Length of the inner L3+L4 headers of a GSO packet, 0 when unknown. */
static __always_inline __u32 gso_header_len(struct __sk_buff* skb, struct iphdr* ip,
                                            void* data_end) {
  __u32 hlen = ip->ihl * 4;

  if (ip->protocol == IPPROTO_TCP_) {
    struct tcphdr* tcp = (void*)ip + (hlen & 0x3c);

    if ((void*)(tcp + 1) > data_end) return 0;
    return hlen + tcp->doff * 4;
  }
  if (ip->protocol == IPPROTO_UDP_) return hlen + 8;
  return 0;
}

/* A DF packet that will not fit the underlay after encapsulation becomes an ICMP
 * "fragmentation needed" (RFC 1191) from the container gateway back to its sender,
 * so path-MTU discovery works instead of the packet vanishing. Packets without DF,
 * or with IP options, are dropped and counted. */
/* eth, IPv4, ICMP, quoted IPv4 header + 8 bytes */
#define FRAG_NEEDED_LEN (ETH_HLEN + 20 + 8 + 28)

static __always_inline int too_big(struct __sk_buff* skb, const struct cppnet_config* cfg,
                                   __u16 next_hop_mtu) {
  __u8 buf[FRAG_NEEDED_LEN] = {};
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);

  count(CPPNET_CNT_DROP_TOO_BIG, skb->len);
  if ((void*)(ip + 1) > data_end || ip->ihl != 5 || !(ip->frag_off & bpf_htons(IP_DF)))
    return TC_ACT_SHOT;
  struct ethhdr reth = {.h_proto = bpf_htons(ETH_P_IP)};
  mac_copy(reth.h_dest, eth->h_source);
  mac_copy(reth.h_source, eth->h_dest);
  struct iphdr rip = {
      .version = 4,
      .ihl = 5,
      .tos = 0xc0, /* internetwork control, as the kernel sends ICMP errors */
      .tot_len = bpf_htons(FRAG_NEEDED_LEN - ETH_HLEN),
      .ttl = 64,
      .protocol = 1, /* ICMP */
      .saddr =
          bpf_htonl(bpf_ntohl(cfg->subnet_addr) + 1), /* the bridge: FLANNEL_SUBNET's address */
      .daddr = ip->saddr,
  };
  rip.check = ipv4_csum20(&rip);
  __builtin_memcpy(buf, &reth, ETH_HLEN);
  __builtin_memcpy(buf + ETH_HLEN, &rip, 20);
  __u8* icmp = buf + ETH_HLEN + 20;
  icmp[0] = 3; /* destination unreachable */
  icmp[1] = 4; /* fragmentation needed and DF set */
  icmp[6] = next_hop_mtu >> 8;
  icmp[7] = next_hop_mtu & 0xff;
  if (bpf_skb_load_bytes(skb, ETH_HLEN, icmp + 8, 28)) return TC_ACT_SHOT;
  __u32 sum = 0;
#pragma unroll
  for (int i = 0; i < 36; i += 2) sum += *(__u16*)(icmp + i);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  __u16 csum = (__u16)~sum;
  __builtin_memcpy(icmp + 2, &csum, 2);

  if (bpf_skb_change_tail(skb, FRAG_NEEDED_LEN, 0) ||
      bpf_skb_store_bytes(skb, 0, buf, FRAG_NEEDED_LEN, 0))
    return TC_ACT_SHOT;
  count(CPPNET_CNT_FRAG_NEEDED_TX, FRAG_NEEDED_LEN);
  /* Back out of the bridge towards the sender. */
  return bpf_redirect(skb->ifindex, 0);
}

/* Outer IPv4 + UDP header in front of an encapsulated packet of `outer_len` bytes
 * (from the outer IP header on). UDP checksum 0, as flanneld's vxlan and udp send. */
static __always_inline void write_outer(struct iphdr* oip, struct udphdr* udp,
                                        const struct cppnet_config* cfg, __be32 daddr, __u16 dport,
                                        __u16 sport, __u8 tos, __be16 id, __be16 df,
                                        __u32 outer_len) {
  oip->version = 4;
  oip->ihl = 5;
  oip->tos = tos;
  oip->tot_len = bpf_htons((__u16)outer_len);
  oip->id = id;
  oip->frag_off = df;
  oip->ttl = 64;
  oip->protocol = IPPROTO_UDP_;
  oip->check = 0;
  oip->saddr = cfg->underlay_ip;
  oip->daddr = daddr;
  oip->check = ipv4_csum20(oip);
  udp->source = bpf_htons(sport);
  udp->dest = bpf_htons(dport);
  udp->len = bpf_htons((__u16)(outer_len - sizeof(*oip)));
  udp->check = 0;
}

/* Is `addr` one a container of our subnet may own? Not the subnet's network or
 * broadcast address, nor the gateway (the bridge: FLANNEL_SUBNET's address). */
static __always_inline int container_address(__be32 addr, const struct cppnet_config* cfg) {
  __u32 host = bpf_ntohl(addr) - bpf_ntohl(cfg->subnet_addr);
  __u32 last = cfg->subnet_len >= 31 ? 0 : (1u << (32 - cfg->subnet_len)) - 1;

  return in_prefix(addr, cfg->subnet_addr, cfg->subnet_len) && host > 1 && host < last;
}

/* A container veth's binding slot (see struct cppnet_bind). */
static __always_inline struct cppnet_bind* bind_slot(__u32 ifindex) {
  __u32 slot = ifindex & (CPPNET_BINDS_SLOTS - 1);

  return bpf_map_lookup_elem(&cppnet_binds, &slot);
}

/* The source check of a container's veth: the veth's binding (one IPv4 address and
 * MAC, made on first sight) must match the frame; an unbound veth binds `addr` unless
 * it is not a container address of our subnet or another live veth holds it (the
 * delivery entry doubles as the address's owner record). Returns the binding, or 0
 * to drop (bad_source). */
static __always_inline struct cppnet_bind* source_check(struct cppnet_bind* b, __u32 ifindex,
                                                        __be32 addr, const __u8* mac,
                                                        const struct cppnet_config* cfg) {
  if (!b) return 0;
  if (b->ifindex == ifindex) return b->addr == addr && mac_equal(b->mac, mac) ? b : 0;
  /* A slot still held by another veth: one that is gone until the agent frees it
   * (within a second), or, after 2^18 interfaces, one that shares the slot. */
  if (b->ifindex || !container_address(addr, cfg)) return 0;
  struct cppnet_endpoint* ep = bpf_map_lookup_elem(&cppnet_endpoint, &addr);
  if (ep && ep->ifindex != ifindex) return 0;
  struct cppnet_endpoint e = {.ifindex = ifindex}; /* gateway MAC: on its first overlay packet */
  mac_copy(e.mac, mac);
  /* NOEXIST: of two veths racing for one address, one wins. */
  if (bpf_map_update_elem(&cppnet_endpoint, &addr, &e, ep ? BPF_EXIST : BPF_NOEXIST)) return 0;
  b->addr = addr;
  mac_copy(b->mac, mac);
  b->delivery = 0;
  b->ifindex = ifindex; /* last: the binding is complete when it names the veth */
  return b;
}

/* ARP from a container: it may speak only for its own address (a probe's sender
 * address 0 aside), so it cannot poison the host's or a neighbour's ARP cache. */
static __always_inline int container_arp(struct __sk_buff* skb, const struct ethhdr* eth,
                                         struct cppnet_bind* slot,
                                         const struct cppnet_config* cfg) {
  struct arp_eth_ a;

  if (bpf_skb_load_bytes(skb, ETH_HLEN, &a, sizeof(a)) || a.htype != bpf_htons(ARPHRD_ETHER_) ||
      a.ptype != bpf_htons(ETH_P_IP) || a.hlen != 6 || a.plen != 4)
    return TC_ACT_OK; /* not Ethernet/IPv4 ARP: nothing the host or a peer acts on */
  __be32 spa;
  __builtin_memcpy(&spa, a.spa, 4);
  if (!mac_equal_bytes(a.sha, eth->h_source) ||
      (spa && !source_check(slot, skb->ifindex, spa, eth->h_source, cfg))) {
    count(CPPNET_CNT_DROP_BAD_SOURCE, skb->len);
    return TC_ACT_SHOT;
  }
  return TC_ACT_OK;
}

SEC("tc")
int cppnet_tc_encap(struct __sk_buff* skb) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct cppnet_config* cfg;
  struct cppnet_route* rt;
  struct iphdr* ip;

  if ((void*)(eth + 1) > data_end) return TC_ACT_OK;
  cfg = ready_config();
  if (!cfg) return TC_ACT_OK;
  /* On a container's veth (not the bridge, where it is a fallback for ports not
   * attached yet): the container sends only from its own address and MAC. */
  const int port = skb->ifindex != cfg->container_ifindex;
  struct cppnet_bind* slot = port ? bind_slot(skb->ifindex) : 0;
  /* Every frame of a bound veth (IPv6 and other ethertypes too) carries its MAC: a
   * container cannot make the bridge learn another's MAC on its port. */
  if (slot && slot->ifindex == skb->ifindex && !mac_equal(slot->mac, eth->h_source)) {
    count(CPPNET_CNT_DROP_BAD_SOURCE, skb->len);
    return TC_ACT_SHOT;
  }
  if (eth->h_proto == bpf_htons(ETH_P_ARP))
    return port ? container_arp(skb, eth, slot, cfg) : TC_ACT_OK;
  if (eth->h_proto != bpf_htons(ETH_P_IP)) return TC_ACT_OK;
  ip = (void*)(eth + 1);
  if ((void*)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5) {
    if (!port) return TC_ACT_OK;
    count(CPPNET_CNT_DROP_TRUNCATED, skb->len);
    return TC_ACT_SHOT;
  }
  struct cppnet_bind* bind = 0;
  if (port && !(bind = source_check(slot, skb->ifindex, ip->saddr, eth->h_source, cfg))) {
    count(CPPNET_CNT_DROP_BAD_SOURCE, skb->len);
    return TC_ACT_SHOT;
  }
  const int overlay = in_prefix(ip->daddr, cfg->network_addr, cfg->network_len);
  if (!overlay) {
    /* A container may not speak to a host's tunnel port: what it sends there would
     * look like a peer's traffic once masqueraded to its host's address. */
    if (ip->protocol == IPPROTO_UDP_ && cfg->backend != CPPNET_BACKEND_HOSTGW && cfg->port) {
      struct udphdr* udp = (void*)ip + ((ip->ihl * 4) & 0x3c);
      if ((void*)(udp + 1) <= data_end && udp->dest == bpf_htons(cfg->port) &&
          !(ip->frag_off & bpf_htons(IP_MF_OFFSET))) {
        count(CPPNET_CNT_DROP_TO_TUNNEL, skb->len);
        return TC_ACT_SHOT;
      }
    }
    return TC_ACT_OK;
  }

  struct cppnet_route_key key = {.prefixlen = 32, .addr = ip->daddr};
  rt = bpf_map_lookup_elem(&cppnet_routes, &key);
  if (!rt) return TC_ACT_OK;
  /* TTL would expire: the stack answers with ICMP time-exceeded. */
  if (ip->ttl <= 1) return TC_ACT_OK;

  if (bind) {
    /* Its overlay packets go to the gateway's MAC: the delivery entry learns it
     * (once), for the receive path's direct delivery. */
    if (!bind->delivery) {
      struct cppnet_endpoint e = {.ifindex = skb->ifindex};
      mac_copy(e.mac, eth->h_source);
      mac_copy(e.gw_mac, eth->h_dest);
      bpf_map_update_elem(&cppnet_endpoint, &ip->saddr, &e, BPF_ANY);
      bind->delivery = 1;
    }
  } else {
    /* The bridge: a port not attached yet. An address bound to a veth never
     * arrives here legitimately (its overlay packets leave at the veth). */
    struct cppnet_endpoint* owner = bpf_map_lookup_elem(&cppnet_endpoint, &ip->saddr);
    if (owner || !container_address(ip->saddr, cfg)) {
      count(CPPNET_CNT_DROP_BAD_SOURCE, skb->len);
      return TC_ACT_SHOT;
    }
  }

  const __u8 backend = rt->backend;
  const __be32 daddr = rt->public_ip;
  if (backend == CPPNET_BACKEND_HOSTGW) {
    /* Routed unchanged, the peer's PublicIP as next hop; the neighbour layer
     * resolves its MAC on the underlay. */
    if (skb->len - ETH_HLEN > cfg->mtu && !skb->gso_size) return too_big(skb, cfg, cfg->mtu);
    ip_decrease_ttl(ip);
    struct bpf_redir_neigh nh = {.nh_family = AF_INET_, .ipv4_nh = daddr};
    count(CPPNET_CNT_HOSTGW_TX, skb->len);
    return bpf_redirect_neigh(cfg->underlay_ifindex, &nh, sizeof(nh), 0);
  }
  if (backend != CPPNET_BACKEND_VXLAN && backend != CPPNET_BACKEND_UDP) {
    count(CPPNET_CNT_DROP_BACKEND, skb->len);
    return TC_ACT_SHOT;
  }
  const int vxlan = backend == CPPNET_BACKEND_VXLAN;
  const __u32 overhead = vxlan ? CPPNET_VXLAN_OVERHEAD : CPPNET_UDP_OVERHEAD;

  __u32 inner_len = skb->len - ETH_HLEN;
  __u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP;
  if (vxlan) flags |= BPF_F_ADJ_ROOM_ENCAP_L2_ETH | ADJ_ROOM_ENCAP_L2(ETH_HLEN);
  if (skb->gso_size) {
    /* Keep the segment size when segments already fit after encapsulation
     * (container MTU lowered as subnet.env says); else let the kernel shrink it. */
    __u32 hdrs = gso_header_len(skb, ip, data_end);

    if (hdrs && skb->gso_size + hdrs + overhead <= cfg->mtu) flags |= BPF_F_ADJ_ROOM_FIXED_GSO;
  } else if (inner_len + overhead > cfg->mtu) {
    return too_big(skb, cfg, cfg->mtu - overhead);
  }

  __u16 sport = flow_src_port(skb, ip, data_end);
  /* We act as the router between container and overlay: decrement the TTL. */
  ip_decrease_ttl(ip);
  __u8 tos = ip->tos;
  __be16 id = ip->id;
  __be16 df = ip->frag_off & bpf_htons(IP_DF);
  __u32 vni = rt->vni;
  __u16 dport = rt->port;
  __u8 peer_mac[6];
  mac_copy(peer_mac, rt->vtep_mac);

  if (bpf_skb_adjust_room(skb, overhead, BPF_ADJ_ROOM_MAC, flags)) {
    count(CPPNET_CNT_DROP_ENCAP_FAILED, skb->len);
    return TC_ACT_SHOT;
  }

  data = (void*)(long)skb->data;
  data_end = (void*)(long)skb->data_end;
  eth = data;
  struct iphdr* oip = (void*)(eth + 1);
  struct udphdr* udp = (void*)(oip + 1);
  if ((void*)(udp + 1) > data_end) {
    count(CPPNET_CNT_DROP_ENCAP_FAILED, skb->len);
    return TC_ACT_SHOT;
  }
  write_outer(oip, udp, cfg, daddr, dport, sport, tos, id, df, skb->len - ETH_HLEN);
  if (vxlan) {
    struct vxlanhdr_* vx = (void*)(udp + 1);
    struct ethhdr* ieth = (void*)(vx + 1);
    if ((void*)(ieth + 1) > data_end) {
      count(CPPNET_CNT_DROP_ENCAP_FAILED, skb->len);
      return TC_ACT_SHOT;
    }
    vx->flags = VXLAN_FLAG_VNI;
    vx->reserved1[0] = vx->reserved1[1] = vx->reserved1[2] = 0;
    vx->vni_reserved = bpf_htonl(vni << 8);
    mac_copy(ieth->h_dest, peer_mac);
    mac_copy(ieth->h_source, cfg->vtep_mac);
    ieth->h_proto = bpf_htons(ETH_P_IP);
  }
  count(vxlan ? CPPNET_CNT_VXLAN_TX : CPPNET_CNT_UDP_TX, skb->len);
  /* The neighbour subsystem fills the outer Ethernet header (resolving ARP if needed). */
  return bpf_redirect_neigh(cfg->underlay_ifindex, 0, 0, 0);
}

enum decap_verdict { DECAP_NOT_OURS, DECAP_DROP, DECAP_OK };

/* The trust boundary of the receive path: an overlay packet is the peer's when the
 * route to its inner source (the lease of that subnet, or a static route) names the
 * host it came from. Otherwise *reason says whether the sender is no peer at all or
 * a peer sending from outside its subnet. */
static __always_inline int from_peer(__be32 outer_saddr, __be32 inner_saddr, __u32* reason) {
  /* Most peers hold one lease: its subnet is in the peer's slot. */
  __u32 slot = cppnet_peer_slot(outer_saddr);
  struct cppnet_peer* p = bpf_map_lookup_elem(&cppnet_peers, &slot);
  const int known = p && p->public_ip == outer_saddr;
  if (known && p->routes == 1 && in_prefix(inner_saddr, p->subnet, p->subnet_len)) return 1;
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

  if ((void*)(udp + 1) > data_end || udp->dest != bpf_htons(cfg->port)) return DECAP_NOT_OURS;
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
    return DECAP_NOT_OURS; /* host-gw: nothing is encapsulated */
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

SEC("xdp")
int cppnet_xdp_decap(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);
  struct cppnet_config* cfg;
  __u32 strip = 0, reason = 0;
  int vxlan = 0;

  if ((void*)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
  cfg = ready_config();
  if (!cfg || !to_our_tunnel(ip, cfg)) return XDP_PASS;
  __u64 len = data_end - data;
  int v = decap_check(ip, data_end, cfg, &strip, &reason, &vxlan);
  if (v == DECAP_NOT_OURS) return XDP_PASS;
  if (v == DECAP_DROP) {
    count(reason, len);
    return XDP_DROP;
  }

  __u8 underlay_mac[6];
  mac_copy(underlay_mac, cfg->underlay_mac);
  /* Dropping `strip` bytes from the front leaves ETH_HLEN bytes before the inner IP
   * header: the inner Ethernet header (vxlan) or room for a new one (udp). */
  if (bpf_xdp_adjust_head(ctx, (int)strip)) {
    count(CPPNET_CNT_DROP_ENCAP_FAILED, len);
    return XDP_DROP;
  }
  /* Room for the mark that tells tc this packet was checked. A driver without XDP
   * metadata gets the packet back unopened (nothing was written yet), and tc
   * decapsulates (and checks) it. */
  if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(__u32))) {
    if (bpf_xdp_adjust_head(ctx, -(int)strip)) return XDP_DROP;
    return XDP_PASS;
  }
  data = (void*)(long)ctx->data;
  data_end = (void*)(long)ctx->data_end;
  eth = data;
  if ((void*)(eth + 1) > data_end) return XDP_DROP;
  /* Hand the inner packet to the stack as if sent to the underlay device; the tc
   * program there delivers it to the container. */
  mac_copy(eth->h_dest, underlay_mac);
  if (!vxlan) {
    mac_copy(eth->h_source, underlay_mac);
    eth->h_proto = bpf_htons(ETH_P_IP);
  }
  /* Mark it as checked (metadata travels with the skb to tc): the tc program
   * delivers only such unencapsulated packets without checking their sender. */
  __u32* meta = (void*)(long)ctx->data_meta;
  if ((void*)(meta + 1) > data) return XDP_DROP;
  *meta = CPPNET_XDP_META_DECAP;
  count(vxlan ? CPPNET_CNT_VXLAN_RX : CPPNET_CNT_UDP_RX, data_end - data);
  return XDP_PASS;
}

/* Delivers an IPv4 packet for our subnet (Ethernet header in front) to its container:
 * into the container's namespace when we know its veth, else through the bridge
 * (the neighbour layer resolves the MAC), else to the stack. Like a router: TTL - 1. */
static __always_inline int deliver(struct __sk_buff* skb, const struct cppnet_config* cfg) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);

  if ((void*)(ip + 1) > data_end || ip->ttl <= 1)
    return TC_ACT_OK; /* the stack answers with ICMP time-exceeded */
  __be32 daddr = ip->daddr;
  struct cppnet_endpoint* ep = bpf_map_lookup_elem(&cppnet_endpoint, &daddr);
  /* Bound but its gateway MAC not seen yet (no overlay packet sent): the bridge. */
  if (ep && (*(__u32*)ep->gw_mac | *(__u16*)(ep->gw_mac + 4))) {
    ip_decrease_ttl(ip);
    mac_copy(eth->h_dest, ep->mac);
    mac_copy(eth->h_source, ep->gw_mac);
    count(CPPNET_CNT_DELIVER_PEER, skb->len);
    return bpf_redirect_peer(ep->ifindex, 0);
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

  if (!rt || rt->backend != CPPNET_BACKEND_HOSTGW) {
    count(CPPNET_CNT_DROP_BAD_INNER_SOURCE, skb->len);
    return TC_ACT_SHOT;
  }
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
      !mac_equal(peer_mac, eth->h_source)) {
    count(CPPNET_CNT_DROP_UNKNOWN_PEER, skb->len);
    return TC_ACT_SHOT;
  }
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

    if (v != VLAN_NOT_OURS) return v;
    data = (void*)(long)skb->data;
    data_end = (void*)(long)skb->data_end;
    eth = data;
    ip = (void*)(eth + 1);
  }
  if ((void*)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || skb->vlan_present ||
      !cfg)
    return TC_ACT_OK;
  if (to_our_tunnel(ip, cfg)) {
    __u32 strip = 0, reason = 0;
    int vxlan = 0;
    int v = decap_check(ip, data_end, cfg, &strip, &reason, &vxlan);

    if (v == DECAP_NOT_OURS) return TC_ACT_OK;
    if (v == DECAP_DROP) {
      count(reason, skb->len);
      return TC_ACT_SHOT;
    }
    /* Remove everything between the outer Ethernet header and the inner IP
     * header. FIXED_GSO: a GSO packet's segment size is the inner one already. */
    if (bpf_skb_adjust_room(skb, -(__s32)strip, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO)) {
      count(CPPNET_CNT_DROP_ENCAP_FAILED, skb->len);
      return TC_ACT_SHOT;
    }
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

/* tc ingress of a trunk that is not the underlay. */
SEC("tc")
int cppnet_tc_trunk(struct __sk_buff* skb) {
  int v = vlan_from_trunk(skb);

  return v == VLAN_NOT_OURS ? TC_ACT_OK : v;
}

/* tc ingress of an endpoint's host veth: the endpoint's frames. Nothing an endpoint
 * sends reaches the host's stack (as with Linux macvlan/ipvlan, endpoints cannot talk
 * to the parent host): each frame is switched, sent out of the trunk, or dropped. */
SEC("tc")
int cppnet_tc_vlan_port(struct __sk_buff* skb) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  __u32 self = skb->ifindex;
  struct cppnet_vlan_port* port = bpf_map_lookup_elem(&cppnet_vlan_port, &self);

  if (!port) {
    count(CPPNET_CNT_DROP_VLAN_NO_PORT, skb->len);
    return TC_ACT_SHOT;
  }
  const __u32 trunk = port->trunk_ifindex;
  const __u16 vid = port->vlan;
  const __u8 mode = port->mode;
  /* The network entry (flood list, l3 routes) is looked up only where it is needed:
   * unicast to a local endpoint or the wire does without it. */
  struct cppnet_vlan_net_key nk = {.trunk_ifindex = trunk, .vlan = vid};
  struct cppnet_vlan_net* net;
  if ((void*)(eth + 1) > data_end) {
    count(CPPNET_CNT_DROP_TRUNCATED, skb->len);
    return TC_ACT_SHOT;
  }
  /* An endpoint never tags: a tag of its own would hop to another VLAN on the wire. */
  if (skb->vlan_present || eth->h_proto == bpf_htons(ETH_P_8021Q) ||
      eth->h_proto == bpf_htons(ETH_P_8021AD)) {
    count(CPPNET_CNT_DROP_VLAN_TAGGED, skb->len);
    return TC_ACT_SHOT;
  }
  /* (bpf_skb_load_bytes leaves the packet pointers valid.) */
  if (!mac_equal(eth->h_source, port->mac) ||
      !vlan_source_ok(skb, data, data_end, trunk, vid, self, eth->h_proto, port->mac)) {
    count(CPPNET_CNT_DROP_VLAN_SOURCE, skb->len);
    return TC_ACT_SHOT;
  }
  port_count(self, skb->len, 1);
  const int bcast = eth->h_dest[0] & 1;
  struct cppnet_vlan_ep* ep = 0;

  if (mode == CPPNET_VLAN_IPVLAN_L3) {
    /* Routed: endpoints have no neighbours (NOARP); the host resolves next hops. */
    if (bcast || eth->h_proto == bpf_htons(ETH_P_ARP)) {
      count(CPPNET_CNT_DROP_VLAN_L3, skb->len);
      return TC_ACT_SHOT;
    }
    ep = vlan_ep_by_ip(skb, trunk, vid, eth->h_proto, ETH_HLEN);
    if (!ep) {
      net = bpf_map_lookup_elem(&cppnet_vlan_net, &nk);
      if (!net) {
        count(CPPNET_CNT_DROP_VLAN_NO_PORT, skb->len);
        return TC_ACT_SHOT;
      }
      int v = vlan_l3_out(skb, net, trunk, vid, eth->h_proto);
      if (v != VLAN_NOT_OURS) return v;
    } else if (ep->ifindex == self) {
      count(CPPNET_CNT_DROP_VLAN_NO_ROUTE, skb->len);
      return TC_ACT_SHOT;
    }
  } else if (bcast) {
    if ((mode == CPPNET_VLAN_MACVLAN_BRIDGE || mode == CPPNET_VLAN_IPVLAN_L2) &&
        (net = bpf_map_lookup_elem(&cppnet_vlan_net, &nk))) {
      count(CPPNET_CNT_VLAN_LOCAL, skb->len);
      vlan_flood(skb, net, self);
    }
  } else if (mode == CPPNET_VLAN_MACVLAN_BRIDGE) {
    ep = vlan_ep_by_mac(trunk, vid, eth->h_dest);
  } else if (mode == CPPNET_VLAN_IPVLAN_L2 && mac_equal(eth->h_dest, port->mac)) {
    /* ipvlan endpoints carry the trunk's MAC: to it means to one of them. */
    ep = vlan_ep_by_ip(skb, trunk, vid, eth->h_proto, ETH_HLEN);
  }
  if (ep && ep->ifindex != self) {
    const __u32 target = ep->ifindex;
    count(CPPNET_CNT_VLAN_LOCAL, skb->len);
    port_count(target, skb->len, 0);
    return bpf_redirect_peer(target, 0);
  }
  /* To the wire: private and vepa always (vepa's switch may hairpin it back),
   * bridge/l2 for what is not local. */
  if (vid && bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), vid)) {
    count(CPPNET_CNT_DROP_ENCAP_FAILED, skb->len);
    return TC_ACT_SHOT;
  }
  count(CPPNET_CNT_VLAN_TX, skb->len);
  return bpf_redirect(trunk, 0);
}
