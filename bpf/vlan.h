/* VLAN networks: Docker's macvlan/ipvlan on an 802.1Q trunk, in BPF. Helpers shared by
 * the trunk side (cppnet_tc_trunk, cppnet_tc_underlay) and the endpoint side. */
#ifndef CPPNET_BPF_VLAN_H
#define CPPNET_BPF_VLAN_H
#include "common.h"

/* An endpoint is a veth pair. Its frames enter cppnet_tc_vlan_port on the host end
 * and are switched to another local endpoint or tagged and sent out of the trunk.
 * Frames arriving on the trunk are demultiplexed by vlan_from_trunk(): by (trunk,
 * VLAN, destination MAC) for macvlan, by destination IP for ipvlan, flooded to the
 * VLAN's endpoints when broadcast/multicast. */

struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};

static __always_inline struct cppnet_vlan_ep *vlan_ep_by_mac(__u32 trunk, __u16 vid, const __u8 *mac)
{
	struct cppnet_vlan_ep_key k = { .trunk_ifindex = trunk, .vlan = vid, .kind = CPPNET_VLAN_ADDR_MAC };

	mac_copy(k.addr, mac);
	return bpf_map_lookup_elem(&cppnet_vlan_ep, &k);
}

/* ipvlan: the endpoint owning the frame's destination IP (IPv4, IPv6, or an ARP's
 * target), L3 header at offset l3. */
static __always_inline struct cppnet_vlan_ep *vlan_ep_by_ip(struct __sk_buff *skb, __u32 trunk, __u16 vid, __be16 proto,
							   __u32 l3)
{
	struct cppnet_vlan_ep_key k = { .trunk_ifindex = trunk, .vlan = vid };

	if (proto == bpf_htons(ETH_P_IP)) {
		k.kind = CPPNET_VLAN_ADDR_IPV4;
		if (bpf_skb_load_bytes(skb, l3 + 16, k.addr, 4))
			return 0;
	} else if (proto == bpf_htons(ETH_P_ARP)) {
		k.kind = CPPNET_VLAN_ADDR_IPV4; /* target protocol address (Ethernet/IPv4 ARP) */
		if (bpf_skb_load_bytes(skb, l3 + 24, k.addr, 4))
			return 0;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		k.kind = CPPNET_VLAN_ADDR_IPV6;
		if (bpf_skb_load_bytes(skb, l3 + 24, k.addr, 16))
			return 0;
	} else {
		return 0;
	}
	return bpf_map_lookup_elem(&cppnet_vlan_ep, &k);
}

static __always_inline void port_count(__u32 ifindex, __u64 bytes)
{
	struct cppnet_vlan_port *p = bpf_map_lookup_elem(&cppnet_vlan_port, &ifindex);

	if (p) {
		__sync_fetch_and_add(&p->rx_packets, 1);
		__sync_fetch_and_add(&p->rx_bytes, bytes);
	}
}

/* A copy to every endpoint of the network except `except` (the sender). */
static __always_inline void vlan_flood(struct __sk_buff *skb, const struct cppnet_vlan_net *net, __u32 except)
{
	__u32 n = net->nports;

	for (__u32 i = 0; i < CPPNET_VLAN_PORTS_MAX; i++) {
		if (i >= n)
			break;
		__u32 port = net->ports[i];
		if (!port || port == except)
			continue;
		if (bpf_clone_redirect(skb, port, 0) == 0)
			port_count(port, skb->len);
	}
}

#define VLAN_NOT_OURS (-1)

/* tc ingress of a trunk (the underlay program calls it too). Returns a tc verdict, or
 * VLAN_NOT_OURS for frames of no VLAN network here (the host's own traffic, other
 * VLANs, stacked 802.1ad/802.1Q tags), which stay untouched. The core usually untags
 * 802.1Q before tc (skb->vlan_tci); a tag can also still be in the data. */
static __always_inline int vlan_from_trunk(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__be16 proto;
	__u16 vid = 0;
	__u32 l3 = ETH_HLEN;

	if ((void *)(eth + 1) > data_end)
		return VLAN_NOT_OURS;
	proto = eth->h_proto;
	if (skb->vlan_present) {
		if (skb->vlan_proto != bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021Q) ||
		    proto == bpf_htons(ETH_P_8021AD))
			return VLAN_NOT_OURS;
		vid = skb->vlan_tci & 0xfff;
	} else if (proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr_ *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end) {
			count(CPPNET_CNT_DROP_TRUNCATED, skb->len);
			return TC_ACT_SHOT;
		}
		if (vh->proto == bpf_htons(ETH_P_8021Q) || vh->proto == bpf_htons(ETH_P_8021AD))
			return VLAN_NOT_OURS;
		vid = bpf_ntohs(vh->tci) & 0xfff;
		proto = vh->proto;
		l3 += sizeof(*vh);
	} else if (proto == bpf_htons(ETH_P_8021AD)) {
		return VLAN_NOT_OURS;
	}
	const __u32 trunk = skb->ifindex;
	struct cppnet_vlan_net_key nk = { .trunk_ifindex = trunk, .vlan = vid };
	struct cppnet_vlan_net *net = bpf_map_lookup_elem(&cppnet_vlan_net, &nk);
	if (!net)
		return VLAN_NOT_OURS;
	const __u8 mode = net->mode;
	const int ipvlan = mode == CPPNET_VLAN_IPVLAN_L2 || mode == CPPNET_VLAN_IPVLAN_L3;

	/* One of our endpoints' frames reflected back by the switch: only vepa wants it
	 * (that is how its endpoints reach each other); bridge already switched it here. */
	if (ipvlan ? mac_equal(eth->h_source, net->trunk_mac)
		   : mode != CPPNET_VLAN_MACVLAN_VEPA && vlan_ep_by_mac(trunk, vid, eth->h_source)) {
		if (!vid)
			return VLAN_NOT_OURS; /* untagged: the host's own frames */
		count(CPPNET_CNT_DROP_VLAN_LOOP, skb->len);
		return TC_ACT_SHOT;
	}
	if (eth->h_dest[0] & 1) {
		if (mode == CPPNET_VLAN_IPVLAN_L3)
			return vid ? TC_ACT_SHOT : VLAN_NOT_OURS; /* l3: no broadcast to endpoints */
		if (vid && bpf_skb_vlan_pop(skb)) {
			count(CPPNET_CNT_DROP_ENCAP_FAILED, skb->len);
			return TC_ACT_SHOT;
		}
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
		struct cppnet_vlan_ep *ep = vlan_ep_by_mac(trunk, vid, eth->h_dest);
		if (ep)
			target = ep->ifindex;
	} else if (mac_equal(eth->h_dest, net->trunk_mac)) {
		struct cppnet_vlan_ep *ep = vlan_ep_by_ip(skb, trunk, vid, proto, l3);
		if (ep)
			target = ep->ifindex;
	}
	if (!target)
		return VLAN_NOT_OURS;
	if (vid && bpf_skb_vlan_pop(skb)) {
		count(CPPNET_CNT_DROP_ENCAP_FAILED, skb->len);
		return TC_ACT_SHOT;
	}
	count(CPPNET_CNT_VLAN_RX, skb->len);
	port_count(target, skb->len);
	return bpf_redirect_peer(target, 0);
}

#endif
