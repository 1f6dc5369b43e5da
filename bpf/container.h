/* Container side (tc ingress of each container veth, and of the bridge for ports not attached yet):
 * source binding, encapsulation or host-gw routing straight out of the underlay, endpoint learning.
 */
#ifndef CPPNET_BPF_CONTAINER_H
#define CPPNET_BPF_CONTAINER_H

#include "lib/encap.h"
#include "lib/helpers.h"
#include "overlay.h"
#include "overlay6.h"

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, CPPNET_ENDPOINTS_MAX);
  __type(key, __u32);
  __type(value, struct cppnet_endpoint);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_endpoint SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, CPPNET_BINDS_SLOTS);
  __type(key, __u32);
  __type(value, struct cppnet_bind);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_binds SEC(".maps");

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
      (spa && !source_check(slot, skb->ifindex, spa, eth->h_source, cfg)))
    return drop(skb, CPPNET_CNT_DROP_BAD_SOURCE);
  return TC_ACT_OK;
}

/* Encapsulates the IPv4 packet in skb (vxlan or udp route `rt`) and sends it out of the
 * underlay; GSO packets stay whole. `hop`: forwarded for a container (TTL - 1), not sent by
 * the host itself; `reply_flags`: where a too-big answer goes (see too_big). */
static __always_inline int tunnel_send(struct __sk_buff* skb, const struct cppnet_config* cfg,
                                       const struct cppnet_route* rt, int hop, __u64 reply_flags) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);

  if ((void*)(ip + 1) > data_end) return drop(skb, CPPNET_CNT_DROP_TRUNCATED);
  const __u8 backend = rt->backend;
  const __be32 daddr = rt->public_ip;
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
    return too_big(skb, cfg, cfg->mtu - overhead, reply_flags);
  }

  __u16 sport = flow_src_port(skb, ip, data_end);
  /* We act as the router between container and overlay: decrement the TTL. */
  if (hop) ip_decrease_ttl(ip);
  __u8 tos = ip->tos;
  __be16 id = ip->id;
  __be16 df = ip->frag_off & bpf_htons(IP_DF);
  __u32 vni = rt->vni;
  __u16 dport = rt->port;
  __u8 peer_mac[6];
  mac_copy(peer_mac, rt->vtep_mac);
  const int onlink = (rt->flags & CPPNET_ROUTE_ONLINK) && !host_routed(reply_flags);

  if (bpf_skb_adjust_room(skb, overhead, BPF_ADJ_ROOM_MAC, flags))
    return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);

  data = (void*)(long)skb->data;
  data_end = (void*)(long)skb->data_end;
  eth = data;
  struct iphdr* oip = (void*)(eth + 1);
  struct udphdr* udp = (void*)(oip + 1);
  if ((void*)(udp + 1) > data_end) return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
  write_outer(oip, udp, cfg, daddr, dport, sport, tos, id, df, skb->len - ETH_HLEN);
  if (vxlan) {
    struct vxlanhdr_* vx = (void*)(udp + 1);
    struct ethhdr* ieth = (void*)(vx + 1);
    if ((void*)(ieth + 1) > data_end) return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
    vx->flags = VXLAN_FLAG_VNI;
    vx->reserved1[0] = vx->reserved1[1] = vx->reserved1[2] = 0;
    vx->vni_reserved = bpf_htonl(vni << 8);
    mac_copy(ieth->h_dest, peer_mac);
    mac_copy(ieth->h_source, cfg->vtep_mac);
    ieth->h_proto = bpf_htons(ETH_P_IP);
  }
  count(vxlan ? CPPNET_CNT_VXLAN_TX : CPPNET_CNT_UDP_TX, skb->len);
  /* The neighbour subsystem fills the outer Ethernet header (resolving ARP if needed); an
   * on-link peer is its own next hop, without a route lookup. */
  if (onlink) {
    struct bpf_redir_neigh nh = {.nh_family = AF_INET_, .ipv4_nh = daddr};
    return bpf_redirect_neigh(cfg->underlay_ifindex, &nh, sizeof(nh), 0);
  }
  return bpf_redirect_neigh(cfg->underlay_ifindex, 0, 0, 0);
}

/* Sends an overlay packet on its route `rt`: to a host-gw next hop, or encapsulated (through
 * the soft device first when the peer reads its tunnel in userspace). `hop`, `reply_flags`:
 * as tunnel_send. */
static __always_inline int overlay_send(struct __sk_buff* skb, const struct cppnet_config* cfg,
                                        const struct cppnet_route* rt, int hop, __u64 reply_flags) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct iphdr* ip = data + ETH_HLEN;

  if ((void*)(ip + 1) > data_end) return drop(skb, CPPNET_CNT_DROP_TRUNCATED);
  const __u8 backend = rt->backend;
  const __be32 daddr = rt->public_ip;
  if (backend == CPPNET_BACKEND_HOSTGW) {
    /* Routed unchanged, the peer's PublicIP as next hop; the neighbour layer
     * resolves its MAC on the underlay. */
    if (skb->len - ETH_HLEN > cfg->mtu && !skb->gso_size)
      return too_big(skb, cfg, cfg->mtu, reply_flags);
    if (hop) ip_decrease_ttl(ip);
    count(CPPNET_CNT_HOSTGW_TX, skb->len);
    if (host_routed(reply_flags)) {
      struct bpf_fib_lookup fib = {.family = AF_INET_, .ipv4_dst = daddr};
      return host_to_peer(skb, cfg, &fib);
    }
    struct bpf_redir_neigh nh = {.nh_family = AF_INET_, .ipv4_nh = daddr};
    return bpf_redirect_neigh(cfg->underlay_ifindex, &nh, sizeof(nh), 0);
  }
  if (backend != CPPNET_BACKEND_VXLAN && backend != CPPNET_BACKEND_UDP)
    return drop(skb, CPPNET_CNT_DROP_BACKEND);
  if ((rt->flags & CPPNET_ROUTE_USERSPACE_PEER) && cfg->soft_ifindex) {
    /* A userspace udp peer (flanneld) would read unfinished checksums and whole GSO
     * packets: the kernel finishes both while the packet passes the soft device, and
     * cppnet_tc_soft encapsulates it. Too-big answers go back from here. */
    if (!skb->gso_size && skb->len - ETH_HLEN + CPPNET_UDP_OVERHEAD > cfg->mtu)
      return too_big(skb, cfg, cfg->mtu - CPPNET_UDP_OVERHEAD, reply_flags);
    return bpf_redirect(cfg->soft_ifindex, 0);
  }
  return tunnel_send(skb, cfg, rt, hop, reply_flags);
}

/* The container side's checks and fast path (see cppnet_tc_encap). `shaped`: the container has
 * an egress rate, so overlay packets are not sent from here (TC_ACT_OK: on to the kernel).
 * `xmit`: on a netkit endpoint, inside the container's own transmit. */
static __always_inline int container_side(struct __sk_buff* skb, struct cppnet_config* cfg,
                                          const int port, const int shaped, const int xmit) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct cppnet_route* rt;
  struct iphdr* ip;

  if ((void*)(eth + 1) > data_end) return TC_ACT_OK;
  /* On a container's veth (not the bridge, where it is a fallback for ports not
   * attached yet): the container sends only from its own address and MAC. */
  struct cppnet_bind* slot = port ? bind_slot(skb->ifindex) : 0;
  /* Every frame of a bound veth (IPv6 and other ethertypes too) carries its MAC: a
   * container cannot make the bridge learn another's MAC on its port. */
  if (slot && slot->ifindex == skb->ifindex && !mac_equal(slot->mac, eth->h_source))
    return drop(skb, CPPNET_CNT_DROP_BAD_SOURCE);
  if (eth->h_proto == bpf_htons(ETH_P_IPV6) && cfg->subnet6_len)
    return container_ipv6(skb, cfg, port, shaped, xmit);
  if (!cfg->subnet_len) return TC_ACT_OK; /* an IPv6-only network: IPv4 and ARP are the stack's */
  if (eth->h_proto == bpf_htons(ETH_P_ARP))
    return port ? container_arp(skb, eth, slot, cfg) : TC_ACT_OK;
  if (eth->h_proto != bpf_htons(ETH_P_IP)) return TC_ACT_OK;
  ip = (void*)(eth + 1);
  if ((void*)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5) {
    if (!port) return TC_ACT_OK;
    return drop(skb, CPPNET_CNT_DROP_TRUNCATED);
  }
  struct cppnet_bind* bind = 0;
  if (port && !(bind = source_check(slot, skb->ifindex, ip->saddr, eth->h_source, cfg)))
    return drop(skb, CPPNET_CNT_DROP_BAD_SOURCE);
  const int overlay = in_prefix(ip->daddr, cfg->network_addr, cfg->network_len);
  if (!overlay) {
    /* A container may not speak to a host's tunnel port: what it sends there would
     * look like a peer's traffic once masqueraded to its host's address. */
    if (ip->protocol == IPPROTO_UDP_ && cfg->backend != CPPNET_BACKEND_HOSTGW && cfg->port) {
      struct udphdr* udp = (void*)ip + ((ip->ihl * 4) & 0x3c);
      if ((void*)(udp + 1) <= data_end && udp->dest == bpf_htons(cfg->port) &&
          !(ip->frag_off & bpf_htons(IP_MF_OFFSET)))
        return drop(skb, CPPNET_CNT_DROP_TO_TUNNEL);
    }
    return TC_ACT_OK;
  }

  struct cppnet_route_key key = {.prefixlen = 32, .addr = ip->daddr};
  rt = bpf_map_lookup_elem(&cppnet_routes, &key);
  /* Behind netkit no bridge switches our own subnet: the program does (deliver_local). */
  const int local = xmit && in_prefix(ip->daddr, cfg->subnet_addr, cfg->subnet_len);
  if (!rt && !local) return TC_ACT_OK;
  /* TTL would expire: the stack answers with ICMP time-exceeded. */
  if (ip->ttl <= 1) return TC_ACT_OK;
  /* An answer in a flow the kernel translated goes back to the kernel (nat.h). */
  const int nat = nat_answer4(ip, data_end);

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
    /* The bridge: a port not attached yet. An address bound to a veth arrives here only
     * from a container with an egress rate (its veth's program checked it and handed it to
     * the bandwidth plugin's ifb, which brings it back here: cppnet_tc_encap), or as an
     * answer in a translated flow, which the veth's program handed to the kernel. */
    struct cppnet_endpoint* owner = bpf_map_lookup_elem(&cppnet_endpoint, &ip->saddr);
    if (owner ? !(nat || egress_shaped(owner->ifindex, cfg)) : !container_address(ip->saddr, cfg))
      return drop(skb, CPPNET_CNT_DROP_BAD_SOURCE);
  }
  if (nat) {
    if (port) count(CPPNET_CNT_NAT_REPLY, skb->len);
    return TC_ACT_OK;
  }
  if (shaped) return TC_ACT_OK;
  if (local) {
    struct cppnet_endpoint* ep = bpf_map_lookup_elem(&cppnet_endpoint, &ip->daddr);
    if (!local_target(skb, ep)) return TC_ACT_OK;
    ip_decrease_ttl(ip);
    return deliver_local(skb, eth, ep);
  }
  if (!rt) return TC_ACT_OK;
  return overlay_send(skb, cfg, rt, 1, 0);
}

SEC("tc")
int cppnet_tc_encap(struct __sk_buff* skb) {
  struct cppnet_config* cfg = ready_config();

  if (!cfg) return TC_ACT_OK;
  const int port = skb->ifindex != cfg->container_ifindex;
  const int shaped = port && egress_shaped(skb->ifindex, cfg);
  const int v = container_side(skb, cfg, port, shaped, 0);
  /* A container with an egress rate: what passed its checks goes on to the veth's "ingress"
   * qdisc (the rate), then the kernel forwards it, through cppnet.host onto the overlay. On a
   * tcx link TC_ACT_OK would skip that qdisc; TC_ACT_UNSPEC goes on to it. */
  return shaped && v == TC_ACT_OK ? TC_ACT_UNSPEC : v;
}

/* The same on an overlay container's netkit pair (BPF_NETKIT_PEER, run inside the container's
 * transmit; skb->ifindex is the host end). Its verdicts mean the same there: NETKIT_PASS (0)
 * hands the packet to the host end's receive path (its "ingress" qdisc too), NETKIT_DROP (2),
 * NETKIT_REDIRECT (7). */
SEC("tc")
int cppnet_nk_encap(struct __sk_buff* skb) {
  struct cppnet_config* cfg = ready_config();

  if (!cfg) return TC_ACT_OK;
  const int shaped = egress_shaped(skb->ifindex, cfg);
  const int v = container_side(skb, cfg, 1, shaped, 1);
  return shaped && v == TC_ACT_OK ? TC_ACT_UNSPEC : v;
}

/* The route to an overlay address (LPM), or 0. */
static __always_inline struct cppnet_route* route_to(__be32 daddr) {
  struct cppnet_route_key key = {.prefixlen = 32, .addr = daddr};
  return bpf_map_lookup_elem(&cppnet_routes, &key);
}

/* The IPv4 header of a frame on CPPNET_HOST_DEV, bounds checked; 0 for anything else. */
static __always_inline struct iphdr* host_dev_ipv4(struct __sk_buff* skb) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);

  if ((void*)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->version != 4 ||
      ip->ihl < 5)
    return 0;
  return ip;
}

/* tc ingress of CPPNET_HOST_DEV: what the overlay sends to the host's own overlay address
 * (delivered, see deliver()), and packets for a userspace udp peer, segmented and
 * checksummed by the kernel on their way through CPPNET_SOFT_DEV. Nothing else. */
/* An IPv6 packet for a peer that checks outer UDP checksums, finished by the soft device. */
static __always_inline int soft_ipv6(struct __sk_buff* skb, const struct cppnet_config* cfg) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ipv6hdr* ip6 = data + ETH_HLEN;

  if ((void*)(ip6 + 1) > data_end || !cfg->subnet6_len) return TC_ACT_SHOT;
  if (ip6_equal((__u8*)&ip6->daddr, cfg->subnet6)) return TC_ACT_OK; /* for the host */
  struct cppnet_route6* rt = route6_to((__u8*)&ip6->daddr);
  if (rt && rt->backend == CPPNET_BACKEND_HOSTGW && ip6->hop_limit > 1) /* as for IPv4 */
    return overlay_send6(skb, cfg, rt, !ip6_equal((__u8*)&ip6->saddr, cfg->subnet6), 0);
  if (!rt || rt->backend != CPPNET_BACKEND_VXLAN || ip6->hop_limit <= 1)
    return drop(skb, CPPNET_CNT_DROP_BACKEND);
  if (skb->len - ETH_HLEN + CPPNET_VXLAN6_OVERHEAD > cfg->mtu)
    return drop(skb, CPPNET_CNT_DROP_TOO_BIG);
  /* Forwarded for a container (hop limit - 1), or sent by the host itself. */
  return tunnel_send6(skb, cfg, rt, !ip6_equal((__u8*)&ip6->saddr, cfg->subnet6), 0, 1);
}

SEC("tc")
int cppnet_tc_soft(struct __sk_buff* skb) {
  struct cppnet_config* cfg = ready_config();
  struct iphdr* ip = host_dev_ipv4(skb);
  struct ethhdr* eth = (void*)(long)skb->data;

  if (cfg && !ip && (void*)(eth + 1) <= (void*)(long)skb->data_end &&
      eth->h_proto == bpf_htons(ETH_P_IPV6))
    return soft_ipv6(skb, cfg);
  if (!cfg || !ip) return TC_ACT_SHOT; /* the stack's own chatter on the device (none expected) */
  if (ip->daddr == cfg->subnet_addr) return TC_ACT_OK; /* for the host */
  struct cppnet_route* rt = route_to(ip->daddr);
  /* The host's own packet to a host-gw peer whose MAC was not known yet (host_to_peer). */
  if (rt && rt->backend == CPPNET_BACKEND_HOSTGW && ip->ttl > 1)
    return overlay_send(skb, cfg, rt, ip->saddr != cfg->subnet_addr, 0);
  if (!rt || rt->backend != CPPNET_BACKEND_UDP || ip->ttl <= 1)
    return drop(skb, CPPNET_CNT_DROP_BACKEND); /* the route changed meanwhile */
  /* Segments too big only when the container's MTU exceeds subnet.env's. */
  if (skb->len - ETH_HLEN + CPPNET_UDP_OVERHEAD > cfg->mtu)
    return drop(skb, CPPNET_CNT_DROP_TOO_BIG);
  return tunnel_send(skb, cfg, rt, ip->saddr != cfg->subnet_addr, 0);
}

/* tc egress of CPPNET_HOST_DEV, which holds the host's overlay address (the subnet's .0, as
 * flanneld's flannel.1) and the route to the Network: the host's own traffic to containers on
 * other hosts. Answers (ICMP frag-needed) go back into the host. */
/* The host's own IPv6 packets on CPPNET_HOST_DEV (dual stack). What is not for the overlay (the
 * stack's multicast listener reports, say) is dropped without a count. */
static __always_inline int host_ipv6(struct __sk_buff* skb, const struct cppnet_config* cfg) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ipv6hdr* ip6 = data + ETH_HLEN;

  if ((void*)(ip6 + 1) > data_end || !cfg->subnet6_len ||
      !in_prefix6((__u8*)&ip6->daddr, cfg->network6, cfg->network6_len))
    return TC_ACT_SHOT;
  struct cppnet_route6* rt = route6_to((__u8*)&ip6->daddr);
  if (!rt) return drop(skb, CPPNET_CNT_DROP_NO_ROUTE);
  count(CPPNET_CNT_HOST_TX, skb->len);
  return overlay_send6(skb, cfg, rt, 0, BPF_F_INGRESS);
}

SEC("tc")
int cppnet_tc_host(struct __sk_buff* skb) {
  struct cppnet_config* cfg = ready_config();
  struct iphdr* ip = host_dev_ipv4(skb);
  struct ethhdr* eth = (void*)(long)skb->data;

  if (cfg && !ip && (void*)(eth + 1) <= (void*)(long)skb->data_end &&
      eth->h_proto == bpf_htons(ETH_P_IPV6))
    return host_ipv6(skb, cfg);
  if (!cfg || !ip) return TC_ACT_SHOT;
  struct cppnet_route* rt = route_to(ip->daddr);
  if (!rt) return drop(skb, CPPNET_CNT_DROP_NO_ROUTE);
  count(CPPNET_CNT_HOST_TX, skb->len);
  return overlay_send(skb, cfg, rt, 0, BPF_F_INGRESS);
}

#endif
