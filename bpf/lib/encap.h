/* Encapsulation: outer headers, flow-hash source port, GSO sizes, ICMP fragmentation needed. */
#ifndef CPPNET_BPF_LIB_ENCAP_H
#define CPPNET_BPF_LIB_ENCAP_H

#include "lib/csum.h"
#include "lib/helpers.h"
#include "lib/stats.h"

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
static __always_inline __u16 src_port_of_hash(__u32 hash) {
  const __u32 lo = 32768, hi = 61000;

  return (__u16)((((__u64)hash * (hi - lo)) >> 32) + lo);
}

static __always_inline __u16 flow_src_port(struct __sk_buff* skb, struct iphdr* ip,
                                           void* data_end) {
  __u32 hash = skb->hash;

  if (!hash) {
    __u32 ports = 0;
    __u32* l4 = (void*)ip + ((ip->ihl * 4) & 0x3c);

    if ((ip->protocol == IPPROTO_TCP_ || ip->protocol == IPPROTO_UDP_) &&
        !(ip->frag_off & bpf_htons(IP_MF_OFFSET)) && (void*)(l4 + 1) <= data_end)
      ports = *l4;
    hash = mix32(ip->saddr ^ mix32(ip->daddr ^ mix32(ports ^ ip->protocol)));
  }
  return src_port_of_hash(hash);
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
                                   __u16 next_hop_mtu, __u64 reply_flags) {
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
  icmp[0] = ICMP_DEST_UNREACH_;
  icmp[1] = ICMP_FRAG_NEEDED_;
  icmp[ICMP_NEXT_HOP_MTU_OFF] = next_hop_mtu >> 8;
  icmp[ICMP_NEXT_HOP_MTU_OFF + 1] = next_hop_mtu & 0xff;
  if (bpf_skb_load_bytes(skb, ETH_HLEN, icmp + ICMP_HLEN, 28)) return TC_ACT_SHOT; /* the quote */
  __u32 sum = 0;
#pragma unroll
  for (int i = 0; i < 36; i += 2) sum += *(__u16*)(icmp + i);
  __u16 csum = csum_fold(sum);
  __builtin_memcpy(icmp + ICMP_CSUM_OFF, &csum, 2);

  if (bpf_skb_change_tail(skb, FRAG_NEEDED_LEN, 0) ||
      bpf_skb_store_bytes(skb, 0, buf, FRAG_NEEDED_LEN, 0))
    return TC_ACT_SHOT;
  count(CPPNET_CNT_FRAG_NEEDED_TX, FRAG_NEEDED_LEN);
  /* Back towards the sender: out of its veth (flags 0), or into the host (BPF_F_INGRESS on
   * CPPNET_HOST_DEV, for what the host itself sent). */
  return bpf_redirect(skb->ifindex, reply_flags);
}

/* Is this the host's own packet, at tc egress of CPPNET_HOST_DEV (its answers go back into the
 * host: BPF_F_INGRESS)? It carries the host's route to the inner destination, through that
 * device: a tunnel packet must get the route to the peer from bpf_redirect_neigh's lookup, or
 * one queued while the peer's MAC is resolved would follow the old route back into the device. */
static __always_inline int host_routed(__u64 reply_flags) {
  return !!(reply_flags & BPF_F_INGRESS);
}

/* The host's own packet to a host-gw peer (see host_routed, the route it carries): held while the
 * peer's MAC is resolved, the neighbour layer would send it by that route, out of the underlay
 * with CPPNET_HOST_DEV's MAC. With the peer's MAC known (bpf_fib_lookup) it leaves straight to
 * the peer; otherwise once through CPPNET_SOFT_DEV, whose veth drops the route, and cppnet_tc_soft
 * sends it on. `fib`: family and destination (the peer) set. */
static __always_inline int host_to_peer(struct __sk_buff* skb, const struct cppnet_config* cfg,
                                        struct bpf_fib_lookup* fib) {
  fib->ifindex = cfg->underlay_ifindex;
  const long r = bpf_fib_lookup(skb, fib, sizeof(*fib), BPF_FIB_LOOKUP_OUTPUT);
  if (r == BPF_FIB_LKUP_RET_SUCCESS && fib->ifindex == cfg->underlay_ifindex) {
    __u8 macs[12]
        __attribute__((aligned(4))); /* destination, source: the Ethernet header's order */
    __builtin_memcpy(macs, fib->dmac, 6);
    __builtin_memcpy(macs + 6, fib->smac, 6);
    if (bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0)) return TC_ACT_SHOT;
    return bpf_redirect(cfg->underlay_ifindex, 0);
  }
  return cfg->soft_ifindex ? bpf_redirect(cfg->soft_ifindex, 0) : TC_ACT_SHOT;
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

#endif
