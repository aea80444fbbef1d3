// Third-party style LWT program, compiled by clang at test time: the
// seed's "drop TCP to port 8080", one entry per hook, IPv4 and IPv6.
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>

#define SEC(name) __attribute__((section(name), used))

static __attribute__((always_inline)) int verdict(struct __sk_buff *skb)
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

SEC("lwt_in") int drop_in(struct __sk_buff *skb) { return verdict(skb); }
SEC("lwt_out") int drop_out(struct __sk_buff *skb) { return verdict(skb); }
SEC("lwt_xmit") int drop_xmit(struct __sk_buff *skb) { return verdict(skb); }

char _license[] SEC("license") = "GPL";
