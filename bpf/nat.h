/* Flows the kernel translated to our containers (portmap's hostPort DNAT). The kernel delivers
 * such a flow (through the bridge: cppnet_tc_bridge_out records it); the container's answers
 * must meet the same conntrack entry, which gives them the host's address back as source. The
 * container side sends overlay packets itself, past conntrack, so for a recorded flow it hands
 * them to the kernel instead (nat_answer). Hosts where no flow was ever translated skip the
 * lookup (cppnet_natseen). */
#ifndef CPPNET_BPF_NAT_H
#define CPPNET_BPF_NAT_H

#include <bpf/bpf_core_read.h>
#include "lib/stats.h"
#include "lib/helpers.h"

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, CPPNET_NAT_FLOWS_MAX);
  __type(key, struct cppnet_nat_flow);
  __type(value, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_natflows SEC(".maps");

CPPNET_U32_CELL(cppnet_natseen);

/* Conntrack's status bit for a destination-translated connection, and the ctinfo values of its
 * original direction (IP_CT_ESTABLISHED, IP_CT_RELATED, IP_CT_NEW), kept in skb->_nfct's low
 * bits (include/uapi/linux/netfilter/nf_conntrack_common.h). */
#define CT_STATUS_DST_NAT 0x20
#define CT_INFO_MASK 7UL
#define CT_INFO_REPLY_FIRST 3

extern void* bpf_cast_to_kern_ctx(void* ctx) __ksym;

/* Fills `k` with the flow of an IPv4/IPv6 TCP or UDP packet whose L4 header starts at `l4`;
 * `local_is_src`: the container sent it (else the kernel delivers it to the container).
 * Addresses are copied by the caller. 0 when the packet has no ports. */
static __always_inline int nat_flow_ports(struct cppnet_nat_flow* k, const void* l4,
                                          const void* data_end, __u8 proto, int local_is_src) {
  const __be16* ports = l4;

  if ((proto != IPPROTO_TCP_ && proto != IPPROTO_UDP_) || (void*)(ports + 2) > data_end) return 0;
  k->proto = proto;
  k->local_port = ports[local_is_src ? 0 : 1];
  k->remote_port = ports[local_is_src ? 1 : 0];
  return 1;
}

/* Is this IPv4 packet from a container its answer in a translated flow? Costs an array
 * lookup on hosts where none was ever seen. Fragments after the first pass as they are. */
static __always_inline int nat_answer4(const struct iphdr* ip, const void* data_end) {
  if (!cell_value(&cppnet_natseen) || (ip->frag_off & bpf_htons(IP_FRAG_OFFSET))) return 0;
  struct cppnet_nat_flow k = {.family = 4};
  if (!nat_flow_ports(&k, (void*)ip + ((ip->ihl * 4) & 0x3c), data_end, ip->protocol, 1)) return 0;
  __builtin_memcpy(k.local, &ip->saddr, 4);
  __builtin_memcpy(k.remote, &ip->daddr, 4);
  return bpf_map_lookup_elem(&cppnet_natflows, &k) != 0;
}

/* The same for IPv6 (TCP or UDP right after the fixed header; extension headers: not looked
 * into). */
static __always_inline int nat_answer6(const struct ipv6hdr* ip6, const void* data_end) {
  if (!cell_value(&cppnet_natseen)) return 0;
  struct cppnet_nat_flow k = {.family = 6};
  if (!nat_flow_ports(&k, ip6 + 1, data_end, ip6->nexthdr, 1)) return 0;
  __builtin_memcpy(k.local, &ip6->saddr, 16);
  __builtin_memcpy(k.remote, &ip6->daddr, 16);
  return bpf_map_lookup_elem(&cppnet_natflows, &k) != 0;
}

/* Was the packet in skb destination-translated by conntrack, in its original direction? */
static __always_inline int kernel_dnat(struct __sk_buff* skb) {
  if (!bpf_core_field_exists(struct sk_buff, _nfct)) return 0;
  struct sk_buff* kskb = bpf_cast_to_kern_ctx(skb);
  unsigned long nfct = BPF_CORE_READ(kskb, _nfct);
  struct nf_conn* ct = (void*)(nfct & ~CT_INFO_MASK);

  if (!ct || (nfct & CT_INFO_MASK) >= CT_INFO_REPLY_FIRST) return 0;
  return (BPF_CORE_READ(ct, status) & CT_STATUS_DST_NAT) != 0;
}

/* tc egress of the container bridge: what the kernel routes to our containers. Records the
 * flows conntrack translated (see above); every packet goes on unchanged. */
SEC("tc")
int cppnet_tc_bridge_out(struct __sk_buff* skb) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct cppnet_nat_flow k = {};

  if ((void*)(eth + 1) > data_end) return TC_ACT_OK;
  if (eth->h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr* ip = (void*)(eth + 1);
    if ((void*)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5 ||
        (ip->frag_off & bpf_htons(IP_FRAG_OFFSET)) ||
        !nat_flow_ports(&k, (void*)ip + ((ip->ihl * 4) & 0x3c), data_end, ip->protocol, 0))
      return TC_ACT_OK;
    k.family = 4;
    __builtin_memcpy(k.local, &ip->daddr, 4);
    __builtin_memcpy(k.remote, &ip->saddr, 4);
  } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr* ip6 = (void*)(eth + 1);
    if ((void*)(ip6 + 1) > data_end || !nat_flow_ports(&k, ip6 + 1, data_end, ip6->nexthdr, 0))
      return TC_ACT_OK;
    k.family = 6;
    __builtin_memcpy(k.local, &ip6->daddr, 16);
    __builtin_memcpy(k.remote, &ip6->saddr, 16);
  } else {
    return TC_ACT_OK;
  }
  if (!kernel_dnat(skb)) return TC_ACT_OK;
  __u32 one = 1, zero = 0;
  /* An existing entry stays (no write per packet); the LRU keeps live flows in. */
  if (!bpf_map_lookup_elem(&cppnet_natflows, &k))
    bpf_map_update_elem(&cppnet_natflows, &k, &one, BPF_ANY);
  __u32* seen = bpf_map_lookup_elem(&cppnet_natseen, &zero);
  if (seen && !*seen) *seen = 1;
  return TC_ACT_OK;
}

#endif
