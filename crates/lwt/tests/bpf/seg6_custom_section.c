// An End.BPF program in a section libbpf does not know (as the kernel
// selftests name theirs): lets the End behaviour continue; needs
// --prog-type lwt_seg6local.
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

SEC("lwtkit_test_end_pass") int end_pass(struct __sk_buff *skb) { return BPF_OK; }

char _license[] SEC("license") = "GPL";
