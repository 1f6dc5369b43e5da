/* VLAN trunk (tc ingress of a trunk that is not the overlay's underlay). */
#ifndef CPPNET_BPF_VLAN_TRUNK_H
#define CPPNET_BPF_VLAN_TRUNK_H

#include "vlan_demux.h"

/* tc ingress of a trunk that is not the underlay. */
SEC("tc")
int cppnet_tc_trunk(struct __sk_buff* skb) {
  int v = vlan_from_trunk(skb);

  return v == NOT_OURS ? TC_ACT_OK : v;
}

#endif
