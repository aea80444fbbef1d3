// An lwt_xmit program that rewrites TCP to port 8080 into port 8081 (with
// the checksum fixed by the helper) and marks the packet: what `lwt test
// --out` must show.
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <stddef.h>

#define SEC(name) __attribute__((section(name), used))

static long (*bpf_skb_store_bytes)(void *skb, __u32 offset, const void *from,
				   __u32 len, __u64 flags) = (void *)BPF_FUNC_skb_store_bytes;
static long (*bpf_l4_csum_replace)(void *skb, __u32 offset, __u64 from,
				   __u64 to, __u64 flags) = (void *)BPF_FUNC_l4_csum_replace;

SEC("lwt_xmit") int rewrite(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data;
	struct tcphdr *tcp = (void *)(ip + 1);
	__u16 to = __builtin_bswap16(8081);
	__u16 from;

	if ((void *)(tcp + 1) > end || ip->version != 4 || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_TCP || tcp->dest != __builtin_bswap16(8080))
		return BPF_OK;
	from = tcp->dest;
	bpf_l4_csum_replace(skb, sizeof(*ip) + offsetof(struct tcphdr, check),
			    from, to, sizeof(to));
	bpf_skb_store_bytes(skb, sizeof(*ip) + offsetof(struct tcphdr, dest),
			    &to, sizeof(to), 0);
	skb->mark = 0x42;
	return BPF_OK;
}

char _license[] SEC("license") = "GPL";
