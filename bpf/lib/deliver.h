/* The last hop into a local container (overlay and VLAN endpoints alike). */
#ifndef CPPNET_BPF_LIB_DELIVER_H
#define CPPNET_BPF_LIB_DELIVER_H

#include "lib/stats.h"

/* Host veths whose root qdisc queues (the bandwidth CNI plugin's tbf: the container's ingress
 * rate), written by the agent; CPPNET_CFG_QUEUED_PORTS says whether there are any. */
CPPNET_IFINDEX_U32_HASH(cppnet_queued);

/* Into the container behind host veth `host_ifindex`: straight into its namespace
 * (bpf_redirect_peer), unless that veth has a queueing qdisc, which bpf_redirect_peer would
 * skip: then out of the veth, through its qdisc. `cfg`: the caller's config entry (may be 0). */
static __always_inline long into_container(__u32 host_ifindex, const struct cppnet_config* cfg) {
  if (cfg && (cfg->flags & CPPNET_CFG_QUEUED_PORTS)) {
    __u32* q = bpf_map_lookup_elem(&cppnet_queued, &host_ifindex);
    if (q && (*q & CPPNET_QUEUED_ROOT)) return bpf_redirect(host_ifindex, 0);
  }
  return bpf_redirect_peer(host_ifindex, 0);
}

/* Does the container behind this host veth have an egress rate (the bandwidth plugin's
 * "ingress" qdisc on the veth)? */
static __always_inline int egress_shaped(__u32 host_ifindex, const struct cppnet_config* cfg) {
  if (!(cfg->flags & CPPNET_CFG_QUEUED_PORTS)) return 0;
  __u32* q = bpf_map_lookup_elem(&cppnet_queued, &host_ifindex);
  return q && (*q & CPPNET_QUEUED_INGRESS);
}

#endif
