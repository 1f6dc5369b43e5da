/* The IPv6 half of the overlay (dual stack, EnableIPv6): routes to other hosts' IPv6 subnets,
 * container bindings and delivery entries by IPv6 address, encapsulation over the IPv6
 * underlay (vxlan, as flanneld's flannel-v6.1) or routing (host-gw), decapsulation, ICMPv6
 * packet-too-big. It follows the IPv4 paths of container.h, decap.h and underlay.h rule for
 * rule; XDP stays IPv4 (IPv6 tunnel packets are opened at tc). */
#ifndef CPPNET_BPF_OVERLAY6_H
#define CPPNET_BPF_OVERLAY6_H

#include "lib/encap.h"
#include "lib/helpers.h"
#include "overlay.h"
#include "nat.h"

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, CPPNET_ROUTES_MAX);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct cppnet_route6_key);
  __type(value, struct cppnet_route6);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_routes6 SEC(".maps");

struct ip6_key_ {
  __u8 addr[16];
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, CPPNET_ROUTES_MAX);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct ip6_key_);
  __type(value, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_peers6 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, CPPNET_ENDPOINTS_MAX);
  __type(key, struct ip6_key_);
  __type(value, struct cppnet_endpoint);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_endpt6 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, CPPNET_BINDS_SLOTS);
  __type(key, __u32);
  __type(value, struct cppnet_bind6);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_binds6 SEC(".maps");

/* Scratch for checksumming a packet in chunks (per CPU; the stack is too small). */
#define CSUM_CHUNK 512
struct csum_chunk_ {
  __u8 b[CSUM_CHUNK];
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct csum_chunk_);
} cppnet_scratch SEC(".maps");

/* Outer IPv6 (40) + UDP (8) + VXLAN (8) in front of the inner Ethernet header. */
#define VXLAN6_STRIP (IPV6_HLEN + 8 + 8 + ETH_HLEN)

static __always_inline struct cppnet_route6* route6_to(const __u8* daddr) {
  struct cppnet_route6_key k = {.prefixlen = 128};

  __builtin_memcpy(k.addr, daddr, 16);
  return bpf_map_lookup_elem(&cppnet_routes6, &k);
}

static __always_inline struct cppnet_bind6* bind6_slot(__u32 ifindex) {
  __u32 slot = ifindex & (CPPNET_BINDS_SLOTS - 1);

  return bpf_map_lookup_elem(&cppnet_binds6, &slot);
}

/* Host part of `a` in our IPv6 subnet's last 32 bits, or ~0 when `a` is outside it. */
static __always_inline __u32 host6(const __u8* a, const struct cppnet_config* cfg) {
  if (!in_prefix6(a, cfg->subnet6, cfg->subnet6_len)) return ~0u;
  __u32 x, s;
  __builtin_memcpy(&x, a + 12, 4);
  __builtin_memcpy(&s, cfg->subnet6 + 12, 4);
  return bpf_ntohl(x) - bpf_ntohl(s);
}

/* A container address of our IPv6 subnet: not the subnet-router anycast (::0) nor the gateway
 * (the bridge: FLANNEL_IPV6_SUBNET's address, ::1). */
static __always_inline int container_address6(const __u8* a, const struct cppnet_config* cfg) {
  __u32 h = host6(a, cfg);

  return h != ~0u && h > 1;
}

/* The IPv6 source check of a container's veth, as source_check() for IPv4. */
static __always_inline struct cppnet_bind6* source_check6(struct cppnet_bind6* b, __u32 ifindex,
                                                          const __u8* addr, const __u8* mac,
                                                          const struct cppnet_config* cfg) {
  if (!b) return 0;
  if (b->ifindex == ifindex) return ip6_equal(b->addr, addr) && mac_equal(b->mac, mac) ? b : 0;
  if (b->ifindex || !container_address6(addr, cfg)) return 0;
  struct ip6_key_ k;
  __builtin_memcpy(k.addr, addr, 16);
  struct cppnet_endpoint* ep = bpf_map_lookup_elem(&cppnet_endpt6, &k);
  if (ep && ep->ifindex != ifindex) return 0;
  struct cppnet_endpoint e = {.ifindex = ifindex};
  mac_copy(e.mac, mac);
  if (bpf_map_update_elem(&cppnet_endpt6, &k, &e, ep ? BPF_EXIST : BPF_NOEXIST)) return 0;
  __builtin_memcpy(b->addr, addr, 16);
  mac_copy(b->mac, mac);
  b->delivery = 0;
  b->ifindex = ifindex;
  return b;
}

/* A neighbour advertisement from a container may announce only its own address (or a
 * link-local one): it cannot take over another container's address in the bridge's or the
 * host's neighbour cache. */
static __always_inline int na_target_ok(struct __sk_buff* skb, __u32 ifindex,
                                        const struct cppnet_bind6* b) {
  struct {
    __u8 type, code;
    __be16 csum;
    __be32 flags;
    __u8 target[16];
  } na;

  /* Other ICMPv6 messages (router solicitations are shorter than an advertisement) pass. */
  if (bpf_skb_load_bytes(skb, ETH_HLEN + IPV6_HLEN, &na.type, 1) || na.type != ND_NA) return 1;
  if (bpf_skb_load_bytes(skb, ETH_HLEN + IPV6_HLEN, &na, sizeof(na))) return 0; /* truncated */
  if (ip6_link_scope(na.target)) return 1;
  if (b && b->ifindex == ifindex) return ip6_equal(b->addr, na.target);
  struct ip6_key_ k;
  __builtin_memcpy(k.addr, na.target, 16);
  struct cppnet_endpoint* owner = bpf_map_lookup_elem(&cppnet_endpt6, &k);
  return !owner || owner->ifindex == ifindex;
}

static __always_inline __u32 gso_header_len6(struct ipv6hdr* ip6, void* data_end) {
  if (ip6->nexthdr == IPPROTO_TCP_) {
    struct tcphdr* tcp = (void*)(ip6 + 1);

    if ((void*)(tcp + 1) > data_end) return 0;
    return IPV6_HLEN + tcp->doff * 4;
  }
  if (ip6->nexthdr == IPPROTO_UDP_) return IPV6_HLEN + 8;
  return 0;
}

static __always_inline __u16 flow_src_port6(struct __sk_buff* skb, struct ipv6hdr* ip6,
                                            void* data_end) {
  __u32 hash = skb->hash;

  if (!hash) {
    __u32 ports = 0, s, d;
    __u32* l4 = (void*)(ip6 + 1);

    if ((ip6->nexthdr == IPPROTO_TCP_ || ip6->nexthdr == IPPROTO_UDP_) &&
        (void*)(l4 + 1) <= data_end)
      ports = *l4;
    __builtin_memcpy(&s, (__u8*)&ip6->saddr + 12, 4);
    __builtin_memcpy(&d, (__u8*)&ip6->daddr + 12, 4);
    hash = mix32(s ^ mix32(d ^ mix32(ports ^ ip6->nexthdr)));
  }
  return src_port_of_hash(hash);
}

/* ICMPv6 packet too big (RFC 4443) from the container gateway back to the sender, quoting the
 * start of its packet, so path-MTU discovery works (IPv6 routers never fragment). */
#define PTB6_QUOTE 48
#define PTB6_ICMP_LEN (8 + PTB6_QUOTE)
#define PTB6_LEN (ETH_HLEN + IPV6_HLEN + PTB6_ICMP_LEN)

static __always_inline int too_big6(struct __sk_buff* skb, const struct cppnet_config* cfg,
                                    __u32 mtu, __u64 reply_flags) {
  /* The pseudo-header, then the message: one buffer to checksum. */
  struct {
    __u8 src[16], dst[16];
    __be32 len, nxt;
    __u8 icmp[PTB6_ICMP_LEN];
  } ps = {};
  __u8 macs[12];

  count(CPPNET_CNT_DROP_TOO_BIG, skb->len);
  if (mtu < 1280) mtu = 1280;
  if (skb->len < ETH_HLEN + PTB6_QUOTE || bpf_skb_load_bytes(skb, 0, macs, 12) ||
      bpf_skb_load_bytes(skb, ETH_HLEN + IPV6_SADDR_OFF, ps.dst, 16) ||
      bpf_skb_load_bytes(skb, ETH_HLEN, ps.icmp + 8, PTB6_QUOTE))
    return TC_ACT_SHOT;
  if (ip6_link_scope(ps.dst)) return TC_ACT_SHOT;
  __builtin_memcpy(ps.src, cfg->subnet6, 16);
  ps.src[15] += 1; /* the gateway: ::1 of the subnet (no carry: the subnet ends in ::0) */
  ps.len = bpf_htonl(PTB6_ICMP_LEN);
  ps.nxt = bpf_htonl(IPPROTO_ICMPV6_);
  ps.icmp[0] = ICMPV6_PKT_TOOBIG_;
  __be32 m = bpf_htonl(mtu);
  __builtin_memcpy(ps.icmp + 4, &m, 4);
  __u16 csum = csum_fold((__u32)bpf_csum_diff(0, 0, (__be32*)&ps, sizeof(ps), 0));
  __builtin_memcpy(ps.icmp + ICMP_CSUM_OFF, &csum, 2);

  struct ipv6hdr ip6 = {
      .version = 6,
      .payload_len = bpf_htons(PTB6_ICMP_LEN),
      .nexthdr = IPPROTO_ICMPV6_,
      .hop_limit = 255,
  };
  __builtin_memcpy(&ip6.saddr, ps.src, 16);
  __builtin_memcpy(&ip6.daddr, ps.dst, 16);
  struct ethhdr eth = {.h_proto = bpf_htons(ETH_P_IPV6)};
  mac_copy(eth.h_dest, macs + 6);
  mac_copy(eth.h_source, macs);
  if (bpf_skb_change_tail(skb, PTB6_LEN, 0) || bpf_skb_store_bytes(skb, 0, &eth, ETH_HLEN, 0) ||
      bpf_skb_store_bytes(skb, ETH_HLEN, &ip6, IPV6_HLEN, 0) ||
      bpf_skb_store_bytes(skb, ETH_HLEN + IPV6_HLEN, ps.icmp, PTB6_ICMP_LEN, 0))
    return TC_ACT_SHOT;
  count(CPPNET_CNT_PKT_TOO_BIG_TX, PTB6_LEN);
  return bpf_redirect(skb->ifindex, reply_flags);
}

/* The outer UDP checksum of an encapsulated IPv6 packet whose inner checksums are finished
 * (it came through the soft device): summed over the whole datagram in chunks. */
#define CSUM_MAX_CHUNKS 18 /* 9216 bytes: a jumbo-frame underlay */
static __always_inline int set_udp6_csum(struct __sk_buff* skb) {
  const __u32 off = ETH_HLEN + IPV6_HLEN;
  __u32 zero = 0;
  struct csum_chunk_* c = bpf_map_lookup_elem(&cppnet_scratch, &zero);

  if (!c || skb->len <= off || skb->len - off > CSUM_CHUNK * CSUM_MAX_CHUNKS) return -1;
  const __u32 len = skb->len - off;
  /* Pseudo-header: addresses, length, next header. */
  if (bpf_skb_load_bytes(skb, ETH_HLEN + IPV6_SADDR_OFF, c->b, 32)) return -1;
  __be32 tail[2] = {bpf_htonl(len), bpf_htonl(IPPROTO_UDP_)};
  __builtin_memcpy(c->b + 32, tail, 8);
  __u32 sum = (__u32)bpf_csum_diff(0, 0, (__be32*)c->b, 40, 0);
  for (__u32 i = 0; i < CSUM_MAX_CHUNKS; i++) {
    const __u32 pos = i * CSUM_CHUNK;
    if (pos >= len) break;
    __u32 n = len - pos;
    if (n >= CSUM_CHUNK) {
      if (bpf_skb_load_bytes(skb, off + pos, c->b, CSUM_CHUNK)) return -1;
      sum = (__u32)bpf_csum_diff(0, 0, (__be32*)c->b, CSUM_CHUNK, sum);
      continue;
    }
    /* n is 1..511 here; said again in a form the verifier tracks (clang drops a mask it knows
     * to be a no-op): 1..512. */
    asm volatile("%[n] += -1; %[n] &= %[m]; %[n] += 1" : [n] "+r"(n) : [m] "i"(CSUM_CHUNK - 1));
    const __u32 last = ((n + 3) / 4 - 1) & (CSUM_CHUNK / 4 - 1); /* index of the last word */
    *(__u32*)(c->b + last * 4) = 0;
    if (bpf_skb_load_bytes(skb, off + pos, c->b, n)) return -1;
    sum = (__u32)bpf_csum_diff(0, 0, (__be32*)c->b, (last + 1) * 4, sum);
  }
  __u16 csum = csum_fold(sum);
  if (!csum) csum = 0xffff; /* 0 means "no checksum" in UDP */
  return bpf_skb_store_bytes(skb, off + 6, &csum, 2, 0) ? -1 : 0;
}

/* Encapsulates the IPv6 packet in skb into VXLAN over IPv6 (route `rt`) and sends it out of the
 * underlay; GSO packets stay whole. `csum`: fill the outer UDP checksum (the packet is
 * finished, see set_udp6_csum); otherwise it is 0 (RFC 6935: cppnet peers take it). */
static __always_inline int tunnel_send6(struct __sk_buff* skb, const struct cppnet_config* cfg,
                                        const struct cppnet_route6* rt, int hop, __u64 reply_flags,
                                        int csum) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct ipv6hdr* ip6 = (void*)(eth + 1);

  if ((void*)(ip6 + 1) > data_end) return drop(skb, CPPNET_CNT_DROP_TRUNCATED);
  const __u32 overhead = CPPNET_VXLAN6_OVERHEAD;
  __u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
                BPF_F_ADJ_ROOM_ENCAP_L2_ETH | ADJ_ROOM_ENCAP_L2(ETH_HLEN);
  if (skb->gso_size) {
    __u32 hdrs = gso_header_len6(ip6, data_end);

    if (hdrs && skb->gso_size + hdrs + overhead <= cfg->mtu) flags |= BPF_F_ADJ_ROOM_FIXED_GSO;
  } else if (skb->len - ETH_HLEN + overhead > cfg->mtu) {
    return too_big6(skb, cfg, cfg->mtu - overhead, reply_flags);
  }
  __u16 sport = flow_src_port6(skb, ip6, data_end);
  if (hop) ip6->hop_limit--;
  /* The inner traffic class goes outside (DSCP/ECN), as the kernel's vxlan does. */
  __u8 tc_hi = ip6->priority, tc_lo = ip6->flow_lbl[0] & 0xf0;
  __u8 daddr[16], peer_mac[6];
  __builtin_memcpy(daddr, rt->public_ip6, 16);
  mac_copy(peer_mac, rt->vtep_mac);
  __u32 vni = rt->vni;
  __u16 dport = rt->port;
  const int onlink = (rt->flags & CPPNET_ROUTE_ONLINK) && !host_routed(reply_flags);

  if (bpf_skb_adjust_room(skb, overhead, BPF_ADJ_ROOM_MAC, flags))
    return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
  data = (void*)(long)skb->data;
  data_end = (void*)(long)skb->data_end;
  eth = data;
  struct ipv6hdr* oip = (void*)(eth + 1);
  struct udphdr* udp = (void*)(oip + 1);
  struct vxlanhdr_* vx = (void*)(udp + 1);
  struct ethhdr* ieth = (void*)(vx + 1);
  if ((void*)(ieth + 1) > data_end) return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
  const __u16 plen = (__u16)(skb->len - ETH_HLEN - IPV6_HLEN);
  oip->version = 6;
  oip->priority = tc_hi;
  oip->flow_lbl[0] = tc_lo;
  oip->flow_lbl[1] = oip->flow_lbl[2] = 0;
  oip->payload_len = bpf_htons(plen);
  oip->nexthdr = IPPROTO_UDP_;
  oip->hop_limit = 64;
  __builtin_memcpy(&oip->saddr, cfg->underlay_ip6, 16);
  __builtin_memcpy(&oip->daddr, daddr, 16);
  udp->source = bpf_htons(sport);
  udp->dest = bpf_htons(dport);
  udp->len = bpf_htons(plen);
  udp->check = 0;
  vx->flags = VXLAN_FLAG_VNI;
  vx->reserved1[0] = vx->reserved1[1] = vx->reserved1[2] = 0;
  vx->vni_reserved = bpf_htonl(vni << 8);
  mac_copy(ieth->h_dest, peer_mac);
  mac_copy(ieth->h_source, cfg->vtep_mac);
  ieth->h_proto = bpf_htons(ETH_P_IPV6);
  if (csum && set_udp6_csum(skb)) return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
  count(CPPNET_CNT_VXLAN_TX, skb->len);
  if (onlink) { /* its own next hop (see CPPNET_ROUTE_ONLINK) */
    struct bpf_redir_neigh nh = {.nh_family = AF_INET6_};
    __builtin_memcpy(nh.ipv6_nh, daddr, 16);
    return bpf_redirect_neigh(cfg->underlay_ifindex, &nh, sizeof(nh), 0);
  }
  return bpf_redirect_neigh(cfg->underlay_ifindex, 0, 0, 0);
}

/* Sends an IPv6 overlay packet on its route: to a host-gw next hop, or encapsulated (through
 * the soft device first when the peer needs the outer UDP checksum). `hop`, `reply_flags`: as
 * overlay_send(). */
static __always_inline int overlay_send6(struct __sk_buff* skb, const struct cppnet_config* cfg,
                                         const struct cppnet_route6* rt, int hop,
                                         __u64 reply_flags) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ipv6hdr* ip6 = data + ETH_HLEN;

  if ((void*)(ip6 + 1) > data_end) return drop(skb, CPPNET_CNT_DROP_TRUNCATED);
  if (rt->backend == CPPNET_BACKEND_HOSTGW) {
    if (skb->len - ETH_HLEN > cfg->mtu && !skb->gso_size)
      return too_big6(skb, cfg, cfg->mtu, reply_flags);
    if (hop) ip6->hop_limit--;
    count(CPPNET_CNT_HOSTGW_TX, skb->len);
    if (host_routed(reply_flags)) {
      struct bpf_fib_lookup fib = {.family = AF_INET6_};
      __builtin_memcpy(fib.ipv6_dst, rt->public_ip6, 16);
      return host_to_peer(skb, cfg, &fib);
    }
    struct bpf_redir_neigh nh = {.nh_family = AF_INET6_};
    __builtin_memcpy(nh.ipv6_nh, rt->public_ip6, 16);
    return bpf_redirect_neigh(cfg->underlay_ifindex, &nh, sizeof(nh), 0);
  }
  if (rt->backend != CPPNET_BACKEND_VXLAN) return drop(skb, CPPNET_CNT_DROP_BACKEND);
  if ((rt->flags & CPPNET_ROUTE_OUTER_CSUM) && cfg->soft_ifindex) {
    if (!skb->gso_size && skb->len - ETH_HLEN + CPPNET_VXLAN6_OVERHEAD > cfg->mtu)
      return too_big6(skb, cfg, cfg->mtu - CPPNET_VXLAN6_OVERHEAD, reply_flags);
    return bpf_redirect(cfg->soft_ifindex, 0);
  }
  return tunnel_send6(skb, cfg, rt, hop, reply_flags, 0);
}

/* A container's IPv6 frame (tc ingress of its veth, or of the bridge for ports not attached
 * yet; `port` tells which). Link-scope traffic (neighbour discovery) stays on the link, with
 * advertisements checked; everything else passes the IPv6 binding; overlay destinations are
 * sent on their route. */
static __always_inline int container_ipv6(struct __sk_buff* skb, const struct cppnet_config* cfg,
                                          int port, int shaped, int xmit) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct ipv6hdr* ip6 = (void*)(eth + 1);

  if ((void*)(ip6 + 1) > data_end || ip6->version != 6)
    return port ? drop(skb, CPPNET_CNT_DROP_TRUNCATED) : TC_ACT_OK;
  struct cppnet_bind6* slot = port ? bind6_slot(skb->ifindex) : 0;
  if (slot && slot->ifindex == skb->ifindex && !mac_equal(slot->mac, eth->h_source))
    return drop(skb, CPPNET_CNT_DROP_BAD_SOURCE);
  if (port && ip6->nexthdr == IPPROTO_ICMPV6_ && !na_target_ok(skb, skb->ifindex, slot))
    return drop(skb, CPPNET_CNT_DROP_BAD_SOURCE);
  data = (void*)(long)skb->data;
  data_end = (void*)(long)skb->data_end;
  eth = data;
  ip6 = (void*)(eth + 1);
  if ((void*)(ip6 + 1) > data_end) return TC_ACT_SHOT;
  if (ip6_link_scope((__u8*)&ip6->saddr)) return TC_ACT_OK;
  struct cppnet_bind6* bind = 0;
  if (port && !(bind = source_check6(slot, skb->ifindex, (__u8*)&ip6->saddr, eth->h_source, cfg)))
    return drop(skb, CPPNET_CNT_DROP_BAD_SOURCE);
  if (!in_prefix6((__u8*)&ip6->daddr, cfg->network6, cfg->network6_len)) {
    /* Not to a host's tunnel port (see cppnet_tc_encap). */
    struct udphdr* udp = (void*)(ip6 + 1);
    if (ip6->nexthdr == IPPROTO_UDP_ && cfg->backend == CPPNET_BACKEND_VXLAN &&
        (void*)(udp + 1) <= data_end && udp->dest == bpf_htons(cfg->port))
      return drop(skb, CPPNET_CNT_DROP_TO_TUNNEL);
    return TC_ACT_OK;
  }
  struct cppnet_route6* rt = route6_to((__u8*)&ip6->daddr);
  const int local = xmit && in_prefix6((__u8*)&ip6->daddr, cfg->subnet6, cfg->subnet6_len);
  /* Not ours to route, or the stack says time exceeded. */
  if ((!rt && !local) || ip6->hop_limit <= 1) return TC_ACT_OK;
  struct ip6_key_ k;
  __builtin_memcpy(k.addr, &ip6->saddr, 16);
  /* An answer in a flow the kernel translated goes back to the kernel (nat.h). */
  const int nat = nat_answer6(ip6, data_end);
  if (bind) {
    if (!bind->delivery) {
      struct cppnet_endpoint e = {.ifindex = skb->ifindex};
      mac_copy(e.mac, eth->h_source);
      mac_copy(e.gw_mac, eth->h_dest);
      bpf_map_update_elem(&cppnet_endpt6, &k, &e, BPF_ANY);
      bind->delivery = 1;
    }
  } else {
    struct cppnet_endpoint* owner = bpf_map_lookup_elem(&cppnet_endpt6, &k);
    if (owner ? !(nat || egress_shaped(owner->ifindex, cfg)) : !container_address6(k.addr, cfg))
      return drop(skb, CPPNET_CNT_DROP_BAD_SOURCE); /* see container_side() */
  }
  if (nat) {
    if (port) count(CPPNET_CNT_NAT_REPLY, skb->len);
    return TC_ACT_OK;
  }
  if (shaped) return TC_ACT_OK; /* an egress rate: the kernel forwards it (cppnet_tc_encap) */
  if (local) {                  /* behind netkit (see container_side()) */
    __builtin_memcpy(k.addr, &ip6->daddr, 16);
    struct cppnet_endpoint* ep = bpf_map_lookup_elem(&cppnet_endpt6, &k);
    if (!local_target(skb, ep)) return TC_ACT_OK;
    ip6->hop_limit--;
    return deliver_local(skb, eth, ep);
  }
  if (!rt) return TC_ACT_OK;
  return overlay_send6(skb, cfg, rt, 1, 0);
}

/* ---- Receive side (tc ingress of the underlay). */

/* Delivers an IPv6 packet for our subnet to its container (see deliver()): hop limit - 1. */
static __always_inline int deliver6(struct __sk_buff* skb, const struct cppnet_config* cfg) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct ipv6hdr* ip6 = (void*)(eth + 1);

  if ((void*)(ip6 + 1) > data_end) return TC_ACT_OK;
  if (cfg->host_ifindex && ip6_equal((__u8*)&ip6->daddr, cfg->subnet6))
    return deliver_to_host(skb, eth, cfg); /* the host's overlay address (::0) */
  if (ip6->hop_limit <= 1) return TC_ACT_OK;
  struct ip6_key_ k;
  __builtin_memcpy(k.addr, &ip6->daddr, 16);
  struct cppnet_endpoint* ep = bpf_map_lookup_elem(&cppnet_endpt6, &k);
  if (endpoint_ready(ep)) {
    ip6->hop_limit--;
    return deliver_to_endpoint(skb, eth, ep, cfg);
  }
  if (!cfg->container_ifindex) return TC_ACT_OK;
  ip6->hop_limit--;
  count(CPPNET_CNT_DELIVER_BRIDGE, skb->len);
  return bpf_redirect_neigh(cfg->container_ifindex, 0, 0, 0);
}

/* The trust boundary (see from_peer()): the route to the inner source names the sender. */
static __always_inline int from_peer6(const __u8* outer_saddr, const __u8* inner_saddr,
                                      __u32* reason) {
  struct cppnet_route6* rt = route6_to(inner_saddr);

  if (rt && ip6_equal(rt->public_ip6, outer_saddr)) return 1;
  struct ip6_key_ k;
  __builtin_memcpy(k.addr, outer_saddr, 16);
  const int known = bpf_map_lookup_elem(&cppnet_peers6, &k) != 0;
  if (known && ip6_equal(inner_saddr, outer_saddr)) return 1; /* the peer itself (from_peer) */
  *reason = known ? CPPNET_CNT_DROP_BAD_INNER_SOURCE : CPPNET_CNT_DROP_UNKNOWN_PEER;
  return 0;
}

/* A packet a host-gw (or DirectRouting) peer routed to us over IPv6: as routed_from_peer(). */
static __always_inline int routed_from_peer6(struct __sk_buff* skb, const struct cppnet_config* cfg,
                                             struct ipv6hdr* ip6) {
  struct cppnet_route6* rt = route6_to((__u8*)&ip6->saddr);

  if (!rt || rt->backend != CPPNET_BACKEND_HOSTGW)
    return drop(skb, CPPNET_CNT_DROP_BAD_INNER_SOURCE);
  struct bpf_fib_lookup fib = {.family = AF_INET6_, .ifindex = cfg->underlay_ifindex};
  __builtin_memcpy(fib.ipv6_dst, rt->public_ip6, 16);
  long r = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
  if (r == BPF_FIB_LKUP_RET_NO_NEIGH || r == BPF_FIB_LKUP_RET_FWD_DISABLED) return TC_ACT_OK;
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > data_end) return TC_ACT_SHOT;
  __u8 peer_mac[8] __attribute__((aligned(4)));
  mac_copy(peer_mac, fib.dmac);
  if (r != BPF_FIB_LKUP_RET_SUCCESS || fib.ifindex != cfg->underlay_ifindex ||
      !mac_equal(peer_mac, eth->h_source))
    return drop(skb, CPPNET_CNT_DROP_UNKNOWN_PEER);
  return deliver6(skb, cfg);
}

/* An IPv6 frame on the underlay: VXLAN over IPv6 to our PublicIPv6 (checked and opened),
 * packets host-gw peers routed to our IPv6 subnet; everything else stays with the stack. */
static __always_inline int underlay_ipv6(struct __sk_buff* skb, const struct cppnet_config* cfg) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct ipv6hdr* ip6 = (void*)(eth + 1);

  if ((void*)(ip6 + 1) > data_end || ip6->version != 6) return TC_ACT_OK;
  if (ip6->nexthdr == IPPROTO_UDP_ && ip6_equal((__u8*)&ip6->daddr, cfg->underlay_ip6)) {
    struct udphdr* udp = (void*)(ip6 + 1);
    if ((void*)(udp + 1) > data_end || udp->dest != bpf_htons(cfg->port) ||
        cfg->backend != CPPNET_BACKEND_VXLAN)
      return TC_ACT_OK;
    struct vxlanhdr_* vx = (void*)(udp + 1);
    struct ethhdr* ieth = (void*)(vx + 1);
    struct ipv6hdr* iip = (void*)(ieth + 1);
    if ((void*)(ieth + 1) > data_end) return drop(skb, CPPNET_CNT_DROP_TRUNCATED);
    if (!(vx->flags & VXLAN_FLAG_VNI)) return drop(skb, CPPNET_CNT_DROP_VXLAN_FLAGS);
    if (bpf_ntohl(vx->vni_reserved) >> 8 != cfg->vni) return drop(skb, CPPNET_CNT_DROP_VNI_UNKNOWN);
    if (!mac_equal(ieth->h_dest, cfg->vtep_mac)) return drop(skb, CPPNET_CNT_DROP_VTEP_MAC);
    if (ieth->h_proto != bpf_htons(ETH_P_IPV6)) return drop(skb, CPPNET_CNT_DROP_INNER_NOT_IPV6);
    if ((void*)(iip + 1) > data_end) return drop(skb, CPPNET_CNT_DROP_TRUNCATED);
    if (iip->version != 6) return drop(skb, CPPNET_CNT_DROP_INNER_BAD_IP);
    if (!in_prefix6((__u8*)&iip->daddr, cfg->subnet6, cfg->subnet6_len))
      return drop(skb, CPPNET_CNT_DROP_NOT_LOCAL);
    __u32 reason = 0;
    if (!from_peer6((__u8*)&ip6->saddr, (__u8*)&iip->saddr, &reason)) return drop(skb, reason);
    if (bpf_skb_adjust_room(skb, -(__s32)VXLAN6_STRIP, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
      return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
    count(CPPNET_CNT_VXLAN_RX, skb->len);
    return deliver6(skb, cfg);
  }
  if (skb->pkt_type == PACKET_HOST &&
      in_prefix6((__u8*)&ip6->daddr, cfg->subnet6, cfg->subnet6_len) &&
      in_prefix6((__u8*)&ip6->saddr, cfg->network6, cfg->network6_len))
    return routed_from_peer6(skb, cfg, ip6);
  return TC_ACT_OK;
}

#endif
