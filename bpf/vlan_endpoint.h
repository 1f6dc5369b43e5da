/* VLAN endpoint (tc ingress of an endpoint's host veth): source check, per-mode local switching,
 * tagging onto the trunk. */
#ifndef CPPNET_BPF_VLAN_ENDPOINT_H
#define CPPNET_BPF_VLAN_ENDPOINT_H

#include "vlan.h"

CPPNET_IFINDEX_U32_HASH(cppnet_rates);
CPPNET_U32_CELL(cppnet_pacing);

/* The pacing device when the endpoint on host veth `ifindex` has an egress rate (its class in
 * *classid), else 0. One array read while no endpoint has a rate. */
static __always_inline __u32 pace_dev(__u32 ifindex, __u32* classid) {
  const __u32 dev = cell_value(&cppnet_pacing);
  if (!dev) return 0;
  __u32* c = bpf_map_lookup_elem(&cppnet_rates, &ifindex);
  if (!c) return 0;
  *classid = *c;
  return dev;
}

/* Hands a rated endpoint's frame to the pacing device (see CPPNET_PACE_DEV); `next`: where
 * cppnet_tc_paced sends it. */
static __always_inline long paced(struct __sk_buff* skb, __u32 dev, __u32 classid, __u32 next) {
  skb->priority = classid;
  skb->mark = next;
  count(CPPNET_CNT_VLAN_PACED, skb->len);
  return bpf_redirect(dev, 0);
}

/* tc ingress of CPPNET_PACED_DEV: frames the htb let through, on to where skb->mark says. */
SEC("tc")
int cppnet_tc_paced(struct __sk_buff* skb) {
  const __u32 next = skb->mark;
  skb->mark = 0;
  skb->priority = 0;
  if (!next) return TC_ACT_SHOT;
  if (next & CPPNET_PACED_LOCAL) return into_container(next & ~CPPNET_PACED_LOCAL, config_entry());
  return bpf_redirect(next, 0);
}

/* The endpoint's frames: on a veth at tc ingress of its host end, on a netkit device inside
 * the endpoint's own transmit (`xmit`: bpf_redirect_peer works at ingress only, so local
 * delivery leaves through the other endpoint's host end instead). Nothing an endpoint sends
 * reaches the host's stack (as with Linux macvlan/ipvlan, endpoints cannot talk to the parent
 * host): each frame is switched, sent out of the trunk, or dropped. */
static __always_inline int vlan_port(struct __sk_buff* skb, const int xmit) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  __u32 self = skb->ifindex;
  struct cppnet_vlan_port* port = bpf_map_lookup_elem(&cppnet_vlan_port, &self);

  if (!port) return drop(skb, CPPNET_CNT_DROP_VLAN_NO_PORT);
  const __u32 trunk = port->trunk_ifindex;
  const __u16 vid = port->vlan;
  const __u8 mode = port->mode;
  const __u8 vflags = port->flags;
  /* The network entry (flood list, l3 routes) is looked up only where it is needed:
   * unicast to a local endpoint or the wire does without it. */
  struct cppnet_vlan_net_key nk = {.trunk_ifindex = trunk, .vlan = vid};
  struct cppnet_vlan_net* net;
  if ((void*)(eth + 1) > data_end) return drop(skb, CPPNET_CNT_DROP_TRUNCATED);
  /* An endpoint never tags: a tag of its own would hop to another VLAN on the wire. */
  if (skb->vlan_present || eth->h_proto == bpf_htons(ETH_P_8021Q) ||
      eth->h_proto == bpf_htons(ETH_P_8021AD))
    return drop(skb, CPPNET_CNT_DROP_VLAN_TAGGED);
  /* (bpf_skb_load_bytes leaves the packet pointers valid.) */
  if (!mac_equal(eth->h_source, port->mac) ||
      !vlan_source_ok(skb, data, data_end, trunk, vid, self, eth->h_proto, port->mac))
    return drop(skb, CPPNET_CNT_DROP_VLAN_SOURCE);
  __u32 classid = 0;
  const __u32 pace = pace_dev(self, &classid);
  port_count(self, skb->len, 1);
  const int bcast = eth->h_dest[0] & 1;
  struct cppnet_vlan_ep* ep = 0;

  if (mode == CPPNET_VLAN_IPVLAN_L3) {
    /* Routed: endpoints have no neighbours (NOARP); the host resolves next hops. */
    if (bcast || eth->h_proto == bpf_htons(ETH_P_ARP)) return drop(skb, CPPNET_CNT_DROP_VLAN_L3);
    ep = vlan_ep_by_ip(skb, trunk, vid, eth->h_proto, ETH_HLEN);
    if (!ep && (trunk & CPPNET_VLAN_LOCAL_TRUNK)) return drop(skb, CPPNET_CNT_DROP_VLAN_NO_PARENT);
    if (!ep) {
      net = bpf_map_lookup_elem(&cppnet_vlan_net, &nk);
      if (!net) return drop(skb, CPPNET_CNT_DROP_VLAN_NO_PORT);
      int v = vlan_l3_out(skb, net, trunk, vid, eth->h_proto);
      if (v != NOT_OURS) return v;
    } else if (ep->ifindex == self)
      return drop(skb, CPPNET_CNT_DROP_VLAN_NO_ROUTE);
  } else if (bcast) {
    if ((mode == CPPNET_VLAN_MACVLAN_BRIDGE || mode == CPPNET_VLAN_IPVLAN_L2) && !vflags &&
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
  if (ep && ep->ifindex != self && vflags) {
    /* ipvlan private: no traffic between local endpoints; vepa: the switch reflects it
     * (frames between endpoints that share the trunk's MAC carry it on both sides). */
    if (vflags & CPPNET_VLAN_F_PRIVATE) return drop(skb, CPPNET_CNT_DROP_VLAN_PRIVATE);
    data = (void*)(long)skb->data;
    data_end = (void*)(long)skb->data_end;
    eth = data;
    if ((void*)(eth + 1) > data_end) return drop(skb, CPPNET_CNT_DROP_TRUNCATED);
    mac_copy(eth->h_dest, port->mac);
    mac_copy(eth->h_source, port->mac);
    ep = 0;
  }
  if (ep && ep->ifindex != self) {
    const __u32 target = ep->ifindex;
    count(CPPNET_CNT_VLAN_LOCAL, skb->len);
    port_count(target, skb->len, 0);
    if (pace) return paced(skb, pace, classid, target | CPPNET_PACED_LOCAL);
    if (xmit) return bpf_redirect(target, 0);
    return into_container(target, config_entry());
  }
  /* A network without parent has no wire: broadcast went to the local endpoints. */
  if (trunk & CPPNET_VLAN_LOCAL_TRUNK)
    return bcast ? TC_ACT_SHOT : drop(skb, CPPNET_CNT_DROP_VLAN_NO_PARENT);
  /* To the wire: private and vepa always (vepa's switch may hairpin it back),
   * bridge/l2 for what is not local. */
  if (vid && bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), vid))
    return drop(skb, CPPNET_CNT_DROP_ENCAP_FAILED);
  count(CPPNET_CNT_VLAN_TX, skb->len);
  if (pace) return paced(skb, pace, classid, trunk);
  return bpf_redirect(trunk, 0);
}

/* tc ingress (tcx) of an endpoint's host veth. */
SEC("tc")
int cppnet_tc_vlan_port(struct __sk_buff* skb) { return vlan_port(skb, 0); }

/* An endpoint on netkit: attached as BPF_NETKIT_PEER through the host end (the primary), it
 * runs when the endpoint transmits, skb->ifindex being the host end's. Its verdicts are
 * netkit's: TC_ACT_SHOT = NETKIT_DROP, TC_ACT_REDIRECT = NETKIT_REDIRECT. */
SEC("tc")
int cppnet_nk_vlan_port(struct __sk_buff* skb) { return vlan_port(skb, 1); }

#endif
