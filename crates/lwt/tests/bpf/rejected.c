// Loads a byte past the packet without a bounds check: the verifier must
// refuse it, and lwt must show why.
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

SEC("lwt_out") int unchecked_read(struct __sk_buff *skb)
{
	unsigned char *data = (void *)(long)skb->data;
	return data[100] == 7 ? BPF_DROP : BPF_OK;
}

char _license[] SEC("license") = "GPL";
