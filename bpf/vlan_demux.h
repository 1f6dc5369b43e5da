/* VLAN trunk demultiplexing (the trunk program and the underlay's call it): accept the VLANs with
 * endpoints here, untag, switch into the endpoint. */
#ifndef CPPNET_BPF_VLAN_DEMUX_H
#define CPPNET_BPF_VLAN_DEMUX_H

#include "vlan.h"

/* tc ingress of a trunk (the underlay program calls it too). Returns a tc verdict, or
 * NOT_OURS for frames of no VLAN network here (the host's own traffic, other
 * VLANs, stacked 802.1ad/802.1Q tags), which stay untouched. The core usually untags
 * 802.1Q before tc (skb->vlan_tci); a tag can also still be in the data. */
static __always_inline int vlan_from_trunk(struct __sk_buff* skb) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  __be16 proto;
  __u16 vid = 0;
  __u32 l3 = ETH_HLEN;

  if ((void*)(eth + 1) > data_end) return NOT_OURS;
  proto = eth->h_proto;
  if (skb->vlan_present) {
    if (skb->vlan_proto != bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021Q) ||
        proto == bpf_htons(ETH_P_8021AD))
      return NOT_OURS;
    vid = skb->vlan_tci & 0xfff;
  } else if (proto == bpf_htons(ETH_P_8021Q)) {
    struct vlan_hdr_* vh = (void*)(eth + 1);

    if ((void*)(vh + 1) > data_end) return drop(skb, CPPNET_CNT_DROP_TRUNCATED);
    if (vh->proto == bpf_htons(ETH_P_8021Q) || vh->proto == bpf_htons(ETH_P_8021AD))
      return NOT_OURS;
    vid = bpf_ntohs(vh->tci) & 0xfff;
    proto = vh->proto;
    l3 += sizeof(*vh);
  } else if (proto == bpf_htons(ETH_P_8021AD)) {
    return NOT_OURS;
  }
  const __u32 trunk = skb->ifindex;
  struct cppnet_vlan_net_key nk = {.trunk_ifindex = trunk, .vlan = vid};
  struct cppnet_vlan_net* net = bpf_map_lookup_elem(&cppnet_vlan_net, &nk);
  if (!net) return NOT_OURS;
  const __u8 mode = net->mode;
  const int ipvlan = mode == CPPNET_VLAN_IPVLAN_L2 || mode == CPPNET_VLAN_IPVLAN_L3;

  /* One of our endpoints' frames reflected back by the switch: only vepa (macvlan mode or
   * ipvlan flag) wants it
   * (that is how its endpoints reach each other); bridge already switched it here.
   * Bridge unicast needs no source lookup: a frame for a local endpoint never left
   * the host, so a reflected one is for a MAC we do not serve and passes anyway. */
  const int bcast = eth->h_dest[0] & 1;
  if (ipvlan ? !(net->flags & CPPNET_VLAN_F_VEPA) && mac_equal(eth->h_source, net->trunk_mac)
             : mode != CPPNET_VLAN_MACVLAN_VEPA && (bcast || mode != CPPNET_VLAN_MACVLAN_BRIDGE) &&
                   vlan_ep_by_mac(trunk, vid, eth->h_source)) {
    if (!vid) return NOT_OURS; /* untagged: the host's own frames */
    return drop(skb, CPPNET_CNT_DROP_VLAN_LOOP);
  }
  if (mode == CPPNET_VLAN_IPVLAN_L3) {
    int v = vlan_l3_nd(skb, net, trunk, vid, proto, l3);
    if (v != NOT_OURS) return v;
    data = (void*)(long)skb->data;
    data_end = (void*)(long)skb->data_end;
    eth = data;
    if ((void*)(eth + 1) > data_end) return NOT_OURS;
  }
  if (bcast) {
    if (mode == CPPNET_VLAN_IPVLAN_L3)
      return vid ? TC_ACT_SHOT : NOT_OURS; /* l3: no broadcast to endpoints */
    if (vid && bpf_skb_vlan_pop(skb)) return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
    count(CPPNET_CNT_VLAN_RX, skb->len);
    vlan_flood(skb, net, 0);
    /* Untagged: the host shares the segment and gets its copy. A tagged frame of
     * our VLAN has no other receiver on this host. */
    return vid ? TC_ACT_SHOT : TC_ACT_OK;
  }
  __u32 target = 0;
  if (mode == CPPNET_VLAN_MACVLAN_PASSTHRU) {
    target = net->ports[0]; /* the one endpoint owns the parent */
  } else if (!ipvlan) {
    struct cppnet_vlan_ep* ep = vlan_ep_by_mac(trunk, vid, eth->h_dest);
    if (ep) target = ep->ifindex;
  } else if (mac_equal(eth->h_dest, net->trunk_mac)) {
    struct cppnet_vlan_ep* ep = vlan_ep_by_ip(skb, trunk, vid, proto, l3);
    if (ep) target = ep->ifindex;
  }
  if (!target) return NOT_OURS;
  if (vid && bpf_skb_vlan_pop(skb)) return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
  count(CPPNET_CNT_VLAN_RX, skb->len);
  port_count(target, skb->len, 0);
  return into_container(target, config_entry());
}

#endif
