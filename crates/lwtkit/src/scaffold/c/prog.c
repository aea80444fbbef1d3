// {{name}}: one LWT program per hook, from `lwt new {{name}} --lang c`.
//
//   make          build {{name}}.o (clang, BTF included by -g)
//   make test     run every hook's program on packets.pcap with `lwt test`
//
// Then on a route:  lwt attach 10.0.0.3/32 --dev DEV --hook out --obj {{name}}.o
// and watch it:     lwt trace 10.0.0.3/32
// What each hook may do (helpers, context fields, return codes): lwt hooks out
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>

#define SEC(name) __attribute__((section(name), used))

// The example decision, the same on every hook: drop TCP to port 8080,
// pass everything else. `data` starts at the IP header on every LWT hook.
static __attribute__((always_inline)) int decide(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data;
	struct tcphdr *tcp;

	if ((void *)(ip + 1) > end)
		return BPF_OK;
	if (ip->version == 4) {
		if (ip->protocol != IPPROTO_TCP)
			return BPF_OK;
		tcp = (void *)ip + ip->ihl * 4;
	} else if (ip->version == 6) {
		struct ipv6hdr *ip6 = data;

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return BPF_OK;
		tcp = (void *)(ip6 + 1);
	} else {
		return BPF_OK;
	}
	if ((void *)(tcp + 1) > end)
		return BPF_OK;
	return tcp->dest == __builtin_bswap16(8080) ? BPF_DROP : BPF_OK;
}

// lwt_in: packets the input route lookup matched to this route (read only).
SEC("lwt_in") int {{ident}}_in(struct __sk_buff *skb) { return decide(skb); }

// lwt_out: locally generated packets, before the neighbour (read only).
SEC("lwt_out") int {{ident}}_out(struct __sk_buff *skb) { return decide(skb); }

// lwt_xmit: just before transmission, forwarded packets too; may write the
// packet, redirect, push an encapsulation (then return BPF_LWT_REROUTE).
SEC("lwt_xmit") int {{ident}}_xmit(struct __sk_buff *skb) { return decide(skb); }

// seg6local End.BPF (lwt seg6local add SID --obj {{name}}.o): the SRH is
// validated and the next segment already set; BPF_OK goes on to it.
// (The kernel cannot test-run this type: try it on a route.)
SEC("lwt_seg6local") int {{ident}}_seg6local(struct __sk_buff *skb) { return BPF_OK; }

char _license[] SEC("license") = "GPL";
