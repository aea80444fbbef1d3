//! Command-line flags as parsed by clap; verbs turn them into validated
//! library requests.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use lwtkit::Hook;

#[derive(Parser, Debug)]
#[command(
    name = "lwt",
    version,
    about = "eBPF programs on the lightweight-tunnel hooks (lwt_in, lwt_out, lwt_xmit) of Linux routes"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub verb: Verb,
}

/// Options every verb takes, before or after the verb.
#[derive(Args, Debug)]
pub struct Global {
    /// Run the whole command in network namespace NAME (like `ip -n`).
    #[arg(short = 'n', long = "netns", global = true, value_name = "NAME")]
    pub netns: Option<String>,
    /// Print JSON instead of text (errors too: `{"error": ..., "kind": ...}` on stderr).
    #[arg(short = 'j', long = "json", global = true)]
    pub json: bool,
    /// Log what lwtkit does to stderr: -v each kernel change (routes, maps,
    /// pins, programs), -vv more. LWT_LOG (a tracing filter such as
    /// `debug`) overrides it. Default: warnings only.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Attach a program to a route's hook, creating or replacing the route in place.
    Attach(AttachArgs),
    /// Remove lwtkit's program(s) from a route, restoring the route as it was.
    Detach(DetachArgs),
    /// List routes that carry a lightweight-tunnel encap (all tables by default).
    #[command(visible_alias = "ls", visible_alias = "show")]
    List(ListArgs),
    /// Packets and bytes counted by lwtkit's built-ins, per route and hook.
    Stats(StatsArgs),
    /// Follow the events of `log` rules (one line, or JSON object, per event).
    Events(EventsArgs),
    /// List the built-in programs.
    Builtins,
    /// Take off everything lwtkit put in this namespace and remove its pins (before deleting a namespace).
    Reset,
    /// Check that lwtkit's records and pins agree with the kernel (after
    /// finishing any change a killed command left); exit 1 when they do not.
    Check,
    /// What a program may do on each hook (helpers, context fields, packet access, return codes), probed from the running kernel.
    Hooks(HooksArgs),
    /// Is this host ready for LWT programs, and what will bite? Exit 1 when a check fails.
    Doctor,
    /// Run a program on packets (a pcap or specs) without a route: verdicts, time per run, what it changed.
    Test(TestArgs),
    /// Follow every verdict of the program(s) on a route, whoever attached them (Ctrl-C stops).
    Trace(TraceArgs),
    /// Start a new LWT program: one per hook, a Makefile, sample packets for `make test`.
    New(NewArgs),
    /// Filter policies: named rule sets attached to routes, changed live.
    #[command(subcommand)]
    Filter(FilterVerb),
    /// 1:1 NAT (NAT44, NPTv6): an inside prefix mapped onto a public one both ways, as filter rules.
    #[command(subcommand)]
    Nat(NatVerb),
    /// Steer prefixes into tunnels (VXLAN, FOU, GUE, IPIP, SIT, ip6ip6, 4in6, GRE, SRv6) without tunnel devices.
    #[command(subcommand)]
    Encap(EncapVerb),
    /// Strip tunnel headers on a device's ingress (the far side of `lwt encap`), no tunnel modules needed.
    #[command(subcommand)]
    Decap(DecapVerb),
    /// SRv6 End.BPF behaviours on local SIDs.
    #[command(subcommand)]
    Seg6local(Seg6Verb),
    /// Write this namespace's lwtkit state as a config file (TOML; see docs/config.md).
    Export {
        /// Write to FILE instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Make this namespace hold what a config file states: create, update and (with --prune) remove.
    Apply(ApplyArgs),
    /// What `apply` would change, drift made outside lwtkit included; exit 0 in sync, 1 differs, 2 error.
    Diff(DiffArgs),
    /// Apply a config file, then keep it true: repair drift within a second of a route or link change, re-read the file on change or SIGHUP.
    Agent(AgentArgs),
    /// Print a shell completion script (bash: `lwt completions bash > /etc/bash_completion.d/lwt`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (lwt.1 and one per verb, such as lwt-filter-rule-add.1) into DIR.
    Man {
        /// Directory to write into (created when missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The config file (TOML; relative obj and pinned paths are read from its directory).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Check the file and print the plan; change nothing.
    #[arg(long)]
    pub check: bool,
    /// Also remove what lwtkit manages here that the file does not name.
    #[arg(long)]
    pub prune: bool,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The config file (TOML).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Count what the file does not name as differences (what `apply --prune` removes).
    #[arg(long)]
    pub prune: bool,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The config file (TOML), watched for changes; a bad new version is logged and the last good one kept.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (port 0: any free port, logged); listens in the namespace lwt was started in, not the -n one.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Seconds between full checks, the fallback to notifications (more than 0; default 30).
    #[arg(long, default_value_t = lwtkit::agent::DEFAULT_INTERVAL_SECS, value_name = "SECS", value_parser = positive_seconds)]
    pub interval: f64,
    /// Also remove what lwtkit manages here that the file does not name (as apply --prune).
    #[arg(long)]
    pub prune: bool,
}

#[derive(Subcommand, Debug)]
pub enum DecapVerb {
    /// Decapsulate the given tunnel types arriving on DEV for this host (again: reconfigure).
    Add {
        /// Device the tunnel packets arrive on (lwtkit's program goes on its tcx ingress).
        #[arg(long, value_name = "DEV")]
        dev: String,
        /// ipip, sit, ip6ip6, ip4in6, gre, fou, gue (comma-separated).
        #[arg(
            long = "type",
            value_name = "TYPE,...",
            value_delimiter = ',',
            required = true
        )]
        kinds: Vec<String>,
        /// UDP port of FOU (1-65535).
        #[arg(long = "fou-port", value_name = "N")]
        fou_port: Option<u64>,
        /// UDP port of GUE (1-65535).
        #[arg(long = "gue-port", value_name = "N")]
        gue_port: Option<u64>,
        /// GRE: take only packets carrying this 32-bit key (default: only keyless GRE).
        #[arg(long, value_name = "N")]
        key: Option<u64>,
        /// Take only tunnels to these addresses of this host (default: all of its addresses).
        #[arg(long, value_name = "ADDR,...", value_delimiter = ',')]
        local: Vec<String>,
        /// Take only tunnels from these outer sources (default: any).
        #[arg(long, value_name = "ADDR,...", value_delimiter = ',')]
        remote: Vec<String>,
    },
    /// Stop decapsulating on DEV.
    Del {
        /// Device the tunnel packets arrive on (lwtkit's program goes on its tcx ingress).
        #[arg(long, value_name = "DEV")]
        dev: String,
    },
    /// Devices lwtkit decapsulates on, with counters.
    #[command(visible_alias = "ls")]
    List,
}

#[derive(Subcommand, Debug)]
pub enum Seg6Verb {
    /// Run a BPF End behaviour for SID.
    #[command(group = clap::ArgGroup::new("behaviour").required(true).args(["builtin", "obj"]))]
    Add {
        /// The SID: an IPv6 address or prefix (a bare address is a /128).
        #[arg(value_name = "SID")]
        sid: String,
        /// Device of the SID's route.
        #[arg(long, value_name = "DEV")]
        dev: String,
        /// `end` (count per SID) or `end-dt6` (decapsulate, look up in --dt6-table).
        #[arg(long, value_name = "NAME")]
        builtin: Option<String>,
        /// BPF object file with an lwt_seg6local program.
        #[arg(long, value_name = "FILE")]
        obj: Option<PathBuf>,
        /// Section of the program in --obj (as `lwt attach --section`).
        #[arg(long, value_name = "S", requires = "obj", conflicts_with = "builtin")]
        section: Option<String>,
        /// Load the program as lwt_seg6local whatever its section says (the verifier judges).
        #[arg(
            long = "prog-type",
            value_enum,
            requires = "obj",
            conflicts_with = "builtin"
        )]
        prog_type: Option<Seg6ProgTypeArg>,
        /// Table of the SID route.
        #[arg(long, value_name = "ID|NAME")]
        table: Option<String>,
        /// Table `end-dt6` looks decapsulated packets up in (default main).
        #[arg(long = "dt6-table", value_name = "ID|NAME")]
        dt6_table: Option<String>,
    },
    /// Remove a SID lwtkit added.
    Del {
        /// The SID: an IPv6 address or prefix (a bare address is a /128).
        #[arg(value_name = "SID")]
        sid: String,
        /// Routing table of the SID's route: a number, main, local, default or a name from rt_tables [default: main].
        #[arg(long, value_name = "ID|NAME")]
        table: Option<String>,
    },
    /// List lwtkit's SIDs with their counters.
    #[command(visible_alias = "ls")]
    List,
}

#[derive(Subcommand, Debug)]
pub enum EncapVerb {
    /// Encapsulate traffic to PREFIX.
    Add(Box<EncapAddArgs>),
    /// Stop encapsulating PREFIX (the route is restored or removed).
    Del {
        /// Destination prefix the tunnel carries (ADDR/LEN).
        #[arg(value_name = "PREFIX")]
        prefix: String,
        /// Routing table of the route: a number, main, default or a name from rt_tables [default: main].
        #[arg(long, value_name = "ID|NAME")]
        table: Option<String>,
    },
    /// List the tunnels with their counters.
    #[command(visible_alias = "ls")]
    List,
}

#[derive(Args, Debug)]
pub struct EncapAddArgs {
    /// Destination prefix to carry through the tunnel (ADDR/LEN); the route is created or taken over in place.
    #[arg(value_name = "PREFIX")]
    pub prefix: String,
    /// Output device of the route (where the outer packets leave).
    #[arg(long, value_name = "DEV")]
    pub dev: String,
    /// vxlan, fou, gue, ipip, sit, ip6ip6, ip4in6, gre or srv6.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: String,
    /// Outer destination (srv6: defaults to the first segment).
    #[arg(long, value_name = "ADDR")]
    pub remote: Option<String>,
    /// Outer source (default: the device's address of the remote's family).
    #[arg(long, value_name = "ADDR")]
    pub local: Option<String>,
    /// VXLAN network identifier, 0-16777215.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=0xff_ffff))]
    pub vni: Option<u32>,
    /// UDP destination port, 1-65535 (vxlan: 4789 by default; fou and gue need it).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// VXLAN: the MAC of the peer's vxlan device.
    #[arg(long = "inner-dst-mac", value_name = "MAC")]
    pub inner_dst_mac: Option<String>,
    /// SRv6 segment list, first to visit first.
    #[arg(long, value_name = "ADDR,ADDR,...", value_delimiter = ',')]
    pub segments: Vec<String>,
    /// Outer TTL / hop limit, 1-255 (default: copied from the inner packet).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..))]
    pub ttl: Option<u8>,
    /// Outer ToS: `inherit` (default) or a number.
    #[arg(long, value_name = "inherit|N")]
    pub tos: Option<String>,
    /// IPv4 outer DF bit: inherit, set or unset (default: as the kernel's
    /// own tunnel of the type: unset for vxlan, set for the others).
    #[arg(long, value_name = "inherit|set|unset")]
    pub df: Option<String>,
    /// UDP tunnels over IPv6: send a zero UDP checksum (RFC 6935/6936; the
    /// receiver must accept it) instead of computing one.
    #[arg(long = "udp6-zero-csum")]
    pub udp6_zero_csum: bool,
    /// Routing table of the route: a number, main, default or a name from rt_tables [default: main].
    #[arg(long, value_name = "ID|NAME")]
    pub table: Option<String>,
    /// The hook that pushes the headers: `xmit` (traffic leaving by the route) or `in` (traffic arriving and routed by it).
    #[arg(long, value_enum, default_value = "xmit")]
    pub hook: EncapHookArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EncapHookArg {
    Xmit,
    In,
}

#[derive(Subcommand, Debug)]
pub enum FilterVerb {
    /// Create an empty policy.
    Create {
        /// The policy's name.
        name: String,
        /// Verdict when no rule matches.
        #[arg(long, value_enum, default_value = "allow")]
        default: VerdictArg,
        /// Rules to make room for now, 1-4194304 (default 256); the policy
        /// grows past it as rules arrive.
        #[arg(long, value_name = "RULES",
              value_parser = clap::value_parser!(u32).range(1..=i64::from(lwtkit::filter::store::MAX_CAPACITY)))]
        capacity: Option<u32>,
        /// Non-first fragments: pass (their datagram is judged by its first
        /// fragment) or drop.
        #[arg(long, value_enum, default_value = "pass")]
        fragments: FragmentsArg,
        /// Malformed packets: drop, or give them the default verdict.
        #[arg(long, value_enum, default_value = "drop")]
        malformed: MalformedArg,
    },
    /// Change a policy's default verdict, or what it does with non-first fragments and malformed packets.
    #[command(group(clap::ArgGroup::new("setting").required(true).multiple(true)))]
    Set {
        /// The policy's name.
        name: String,
        /// The verdict for packets no rule matches: allow or drop.
        #[arg(long, value_enum, group = "setting")]
        default: Option<VerdictArg>,
        /// Non-first fragments: pass or drop.
        #[arg(long, value_enum, group = "setting")]
        fragments: Option<FragmentsArg>,
        /// Malformed packets: drop, or give them the default verdict.
        #[arg(long, value_enum, group = "setting")]
        malformed: Option<MalformedArg>,
    },
    /// Delete a policy that no route uses.
    Delete {
        /// The policy's name.
        name: String,
    },
    /// Add or delete single rules.
    #[command(subcommand)]
    Rule(RuleVerb),
    /// Replace every rule at once from a file (one rule per line, `#` comments).
    Replace {
        /// The policy's name.
        name: String,
        /// Rules file: one rule per line, `#` starts a comment.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Accept a file without rules (it empties the policy); refused otherwise.
        #[arg(long)]
        allow_empty: bool,
    },
    /// Show a policy's rules with their counters and where it is attached.
    Show {
        /// The policy's name.
        name: String,
    },
    /// List every policy.
    #[command(visible_alias = "ls")]
    List,
    /// Attach a policy to a route's hook.
    Attach {
        /// The policy's name.
        name: String,
        /// Destination of the route (ADDR/LEN; a bare address is a host route).
        #[arg(value_name = "PREFIX")]
        prefix: String,
        /// Output device of the route.
        #[arg(long, value_name = "DEV")]
        dev: String,
        /// The hook to put the policy's filter on (`in`: traffic routed by the route on arrival; `out`: sent by this host; `xmit`: before the route's neighbour).
        #[arg(long, value_enum)]
        hook: HookArg,
        /// Routing table: a number, main, local, default or a name from rt_tables [default: main; local with --local].
        #[arg(long, value_name = "ID|NAME")]
        table: Option<String>,
        /// The route is the kernel's local route of the address, in table local (an `in` hook on traffic to this host).
        #[arg(long)]
        local: bool,
        /// Allow --local with a table other than local (the host then accepts traffic for PREFIX).
        #[arg(long, requires = "local")]
        force: bool,
    },
    /// Take a policy off a route (every hook it is on there).
    Detach {
        /// The policy's name.
        name: String,
        /// Destination of the route (ADDR/LEN; a bare address is a host route).
        #[arg(value_name = "PREFIX")]
        prefix: String,
        /// Routing table: a number, main, local, default or a name from rt_tables [default: main; local with --local].
        #[arg(long, value_name = "ID|NAME")]
        table: Option<String>,
        /// The route is the kernel's local route of the address, in table local (an `in` hook on traffic to this host).
        #[arg(long)]
        local: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum NatVerb {
    /// Map an inside prefix 1:1 onto a public one: `snat` on the outbound
    /// route's xmit, `dnat` on a route for the public prefix (docs/nat.md).
    Add(NatAddArgs),
    /// Take a mapping off: its rules, and the policies and routes `nat add` made, back as they were.
    #[command(group(clap::ArgGroup::new("which").required(true)))]
    Del {
        /// The mapping's inside prefix.
        #[arg(long, value_name = "PREFIX", group = "which")]
        inside: Option<String>,
        /// The mapping's public prefix.
        #[arg(long, value_name = "PREFIX", group = "which")]
        public: Option<String>,
    },
    /// Every mapping, with what its rules counted.
    #[command(visible_alias = "ls")]
    List,
}

#[derive(Args, Debug)]
pub struct NatAddArgs {
    /// The inside prefix or address (10.1.0.0/24, fd01::/64, 10.1.0.2).
    #[arg(long, value_name = "PREFIX")]
    pub inside: String,
    /// The public prefix or address, of the same length (203.0.113.0/24, fd99::/64).
    #[arg(long, value_name = "PREFIX")]
    pub public: String,
    /// The route outbound packets leave by (its xmit hook gets the `snat` rule): 0.0.0.0/0, 10.0.0.0/24, ::/0...
    #[arg(long, value_name = "PREFIX")]
    pub out_route: String,
    /// The outbound route's device [default: the route's, as the kernel has it].
    #[arg(long, value_name = "DEV")]
    pub out_dev: Option<String>,
    /// The device of the public prefix's route, toward the inside [default: that of the route to --inside].
    #[arg(long, value_name = "DEV")]
    pub public_dev: Option<String>,
    /// Routing table of both routes: a number, main, local, default or a name from rt_tables [default: main].
    #[arg(long, value_name = "ID|NAME")]
    pub table: Option<String>,
    /// Name of the policies `nat add` creates where a route has none: NAME-out and NAME-in.
    #[arg(long, value_name = "NAME", default_value = lwtkit::filter::nat::DEFAULT_NAME)]
    pub name: String,
}

#[derive(Subcommand, Debug)]
pub enum RuleVerb {
    /// Add a rule: [priority N] [src CIDR] [dst CIDR] [proto P] [sport P|P-Q] [dport P|P-Q]
    /// [icmp-type N] [tcp-flags FLAGS] allow|drop [log]
    Add {
        /// The policy's name.
        name: String,
        /// The rule: [priority N] [src CIDR] [dst CIDR] [proto P] [sport P|P-Q] [dport P|P-Q] [icmp-type N] [tcp-flags FLAGS] ACTION [log] (docs/filter.md).
        #[arg(required = true, num_args = 1.., value_name = "RULE")]
        words: Vec<String>,
    },
    /// Delete the rule with id ID.
    Del {
        /// The policy's name.
        name: String,
        /// The rule's id (as `lwt filter show` lists it).
        id: u32,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum VerdictArg {
    Allow,
    Drop,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FragmentsArg {
    Pass,
    Drop,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MalformedArg {
    Drop,
    Default,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum HookArg {
    In,
    Out,
    Xmit,
}

impl From<HookArg> for Hook {
    fn from(h: HookArg) -> Self {
        match h {
            HookArg::In => Hook::In,
            HookArg::Out => Hook::Out,
            HookArg::Xmit => Hook::Xmit,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[allow(clippy::enum_variant_names)] // the kernel's own names: lwt_in, lwt_out, lwt_xmit
pub enum ProgTypeArg {
    #[value(name = "lwt_in")]
    LwtIn,
    #[value(name = "lwt_out")]
    LwtOut,
    #[value(name = "lwt_xmit")]
    LwtXmit,
}

/// The one program type an End.BPF route takes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Seg6ProgTypeArg {
    #[value(name = "lwt_seg6local")]
    LwtSeg6local,
}

impl From<ProgTypeArg> for Hook {
    fn from(t: ProgTypeArg) -> Self {
        match t {
            ProgTypeArg::LwtIn => Hook::In,
            ProgTypeArg::LwtOut => Hook::Out,
            ProgTypeArg::LwtXmit => Hook::Xmit,
        }
    }
}

/// Where the route is: prefix, table, local.
#[derive(Args, Debug, Clone)]
pub struct RouteArgs {
    /// Destination prefix (ADDR/LEN; a bare address is a host route).
    #[arg(value_name = "PREFIX")]
    pub prefix: String,
    /// Routing table (number or name); default main, or local with --local.
    #[arg(long, value_name = "ID|NAME")]
    pub table: Option<String>,
    /// A `local`-type route (table local unless --table says otherwise).
    #[arg(long)]
    pub local: bool,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["obj", "pinned", "builtin"]))]
pub struct AttachArgs {
    #[command(flatten)]
    pub route: RouteArgs,
    /// Output device of the route.
    #[arg(long, value_name = "DEV")]
    pub dev: String,
    /// Hook to attach to.
    #[arg(long, value_enum)]
    pub hook: HookArg,
    /// BPF object file holding the program.
    #[arg(long, value_name = "FILE")]
    pub obj: Option<PathBuf>,
    /// Section of the program in --obj.
    #[arg(long, value_name = "S", requires = "obj", conflicts_with_all = ["pinned", "builtin"])]
    pub section: Option<String>,
    /// Function name of the program in --obj.
    #[arg(long, value_name = "NAME", requires = "obj", conflicts_with_all = ["pinned", "builtin"])]
    pub program: Option<String>,
    /// Force the program type (for section names libbpf does not know).
    #[arg(long = "prog-type", value_enum, requires = "obj", conflicts_with_all = ["pinned", "builtin"])]
    pub prog_type: Option<ProgTypeArg>,
    /// A program already pinned on bpffs.
    #[arg(long, value_name = "PATH")]
    pub pinned: Option<PathBuf>,
    /// One of lwtkit's built-in programs (see `lwt builtins`).
    #[arg(long, value_name = "NAME")]
    pub builtin: Option<String>,
    /// Bytes of headroom to reserve for headers the program adds (max 256).
    #[arg(long, value_name = "N")]
    pub headroom: Option<u32>,
    /// Gateway of the route.
    #[arg(long, value_name = "GW")]
    pub via: Option<String>,
    /// Allow --local with a table other than local (the host then accepts traffic for PREFIX).
    #[arg(long, requires = "local")]
    pub force: bool,
}

/// A hook `lwt test` takes (seg6local only to say why it cannot).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TestHookArg {
    In,
    Out,
    Xmit,
    Seg6local,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["obj", "pinned", "builtin", "policy"]))]
#[command(group = clap::ArgGroup::new("packets").required(true).args(["pcap", "packet"]))]
pub struct TestArgs {
    /// The hook whose program type and semantics to test under.
    #[arg(long, value_enum)]
    pub hook: TestHookArg,
    /// BPF object file holding the program (selected as `attach` does).
    #[arg(long, value_name = "FILE")]
    pub obj: Option<PathBuf>,
    /// Section of the program in --obj.
    #[arg(long, value_name = "S", requires = "obj")]
    pub section: Option<String>,
    /// Function name of the program in --obj.
    #[arg(long, value_name = "NAME", requires = "obj")]
    pub program: Option<String>,
    /// Force the program type (for section names libbpf does not know).
    #[arg(long = "prog-type", value_enum, requires = "obj")]
    pub prog_type: Option<ProgTypeArg>,
    /// One of lwtkit's built-in programs (see `lwt builtins`).
    #[arg(long, value_name = "NAME")]
    pub builtin: Option<String>,
    /// A filter policy of this namespace, on its live maps.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// A program pinned on bpffs.
    #[arg(long, value_name = "PATH")]
    pub pinned: Option<PathBuf>,
    /// Packets from a pcap file (Ethernet, Linux cooked or raw IP).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// A packet: `tcp 10.0.0.2:40000 > 10.0.0.3:8080 flags S`, `udp [fd00::2]:5000 > [fd00::3]:53 len 100`, `icmp A > B` (repeatable).
    #[arg(long, value_name = "SPEC")]
    pub packet: Vec<String>,
    /// Runs per packet for the timing (the verdict and output come from one clean run).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = positive_count)]
    pub repeat: u64,
    /// Write the packets as the program left them to FILE (pcap, raw IP).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    #[command(flatten)]
    pub route: RouteArgs,
    /// Only the program on this hook (default: every BPF hook of the route).
    #[arg(long, value_enum)]
    pub hook: Option<HookArg>,
    /// Stop after N packets (1 or more).
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub count: Option<u64>,
    /// Stop after SECS seconds (more than 0).
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    pub timeout: Option<f64>,
    /// Also write the packets (their first 128 bytes) to FILE as pcap (raw IP).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Stream bpf_printk lines from the kernel's trace_pipe instead (global: all programs).
    #[arg(long, conflicts_with_all = ["hook", "pcap"])]
    pub printk: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LangArg {
    C,
    Rust,
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// Project name: the directory, object and program names.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The language of the programs: C (clang) or Rust (aya-ebpf).
    #[arg(long, value_enum, default_value = "c")]
    pub lang: LangArg,
    /// Where to create NAME/ (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct DetachArgs {
    #[command(flatten)]
    pub route: RouteArgs,
    /// Only if lwtkit attached on this device.
    #[arg(long, value_name = "DEV")]
    pub dev: Option<String>,
    /// Remove only this hook.
    #[arg(long, value_enum)]
    pub hook: Option<HookArg>,
    /// Restore (or delete) the route even if it was changed outside lwtkit
    /// and no longer carries lwtkit's programs.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this table (number, name, or `all`, the default).
    #[arg(long, value_name = "ID|NAME|all")]
    pub table: Option<String>,
}

#[derive(Args, Debug)]
pub struct HooksArgs {
    /// Only this hook: in, out, xmit, seg6local (or lwt_in, ...).
    #[arg(value_name = "HOOK")]
    pub hook: Option<String>,
    /// Print the reference page docs/hooks.md is (all hooks, Markdown).
    #[arg(long, conflicts_with = "hook")]
    pub markdown: bool,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Refresh every --interval seconds and show rates (Ctrl-C stops).
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch (more than 0).
    #[arg(long, default_value_t = 1.0, value_name = "SECS", value_parser = positive_seconds)]
    pub interval: f64,
    /// Stop --watch after this many refreshes (1 or more).
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub count: Option<u64>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Stop after N events (1 or more).
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub count: Option<u64>,
    /// Stop after SECS seconds (more than 0).
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    pub timeout: Option<f64>,
    /// Also write the captured bytes to FILE as pcap (link type raw IP).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
}

/// A count of 1 or more (stopping after none makes no sense).
fn positive_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a count of 1 or more")),
    }
}

/// A number of seconds greater than 0 (a zero or negative wait makes no sense).
fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds greater than 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_argument_of_every_verb_has_help() {
        use clap::CommandFactory;
        let mut missing = Vec::new();
        let mut todo = vec![(String::from("lwt"), Cli::command())];
        while let Some((path, cmd)) = todo.pop() {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            if cmd.get_about().is_none() && path != "lwt" {
                missing.push(format!("{path} (the verb)"));
            }
            for sub in cmd.get_subcommands() {
                todo.push((format!("{path} {}", sub.get_name()), sub.clone()));
            }
        }
        assert!(missing.is_empty(), "without help: {missing:?}");
    }
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_verb() {
        for argv in [
            &["lwt", "-n", "x", "-j", "list"][..],
            &["lwt", "list", "-n", "x", "--json"][..],
        ] {
            let cli = Cli::try_parse_from(argv).expect("parses");
            assert_eq!(cli.global.netns.as_deref(), Some("x"));
            assert!(cli.global.json);
        }
    }

    #[test]
    fn attach_needs_exactly_one_program_source() {
        let base = [
            "lwt",
            "attach",
            "10.0.0.3/32",
            "--dev",
            "v0",
            "--hook",
            "out",
        ];
        assert!(Cli::try_parse_from(base).is_err(), "no source");
        let two = [
            &base[..],
            &["--builtin", "count", "--pinned", "/sys/fs/bpf/x"],
        ]
        .concat();
        assert!(Cli::try_parse_from(two).is_err(), "two sources");
        let section_without_obj = [&base[..], &["--builtin", "count", "--section", "s"]].concat();
        assert!(Cli::try_parse_from(section_without_obj).is_err());
        let ok = [
            &base[..],
            &["--obj", "x.o", "--section", "s", "--prog-type", "lwt_out"],
        ]
        .concat();
        assert!(Cli::try_parse_from(ok).is_ok());
    }

    #[test]
    fn force_goes_with_local_and_ranges_are_checked_at_parse_time() {
        let attach = |extra: &[&str]| {
            let base = [
                "lwt",
                "attach",
                "10.0.0.3/32",
                "--dev",
                "v0",
                "--hook",
                "in",
                "--builtin",
                "count",
            ];
            Cli::try_parse_from([&base[..], extra].concat())
        };
        assert!(attach(&["--force"]).is_err(), "--force without --local");
        assert!(attach(&["--local", "--table", "main", "--force"]).is_ok());
        let encap = |extra: &[&str]| {
            let base = [
                "lwt",
                "encap",
                "add",
                "10.1.0.0/24",
                "--dev",
                "v0",
                "--type",
                "fou",
                "--remote",
                "10.0.0.3",
            ];
            Cli::try_parse_from([&base[..], extra].concat())
        };
        assert!(encap(&["--port", "0"]).is_err());
        assert!(encap(&["--port", "1"]).is_ok());
        assert!(encap(&["--ttl", "0"]).is_err());
        assert!(encap(&["--vni", "16777216"]).is_err());
        assert!(encap(&["--vni", "16777215"]).is_ok());
        for bad in [
            &["lwt", "stats", "--watch", "--count", "0"][..],
            &["lwt", "stats", "--watch", "--interval", "-1"],
            &["lwt", "events", "--timeout", "0"],
            &["lwt", "events", "--count", "0"],
            &["lwt", "filter", "create", "p", "--capacity", "0"],
            &[
                "lwt",
                "seg6local",
                "add",
                "fc00::b",
                "--dev",
                "v0",
                "--builtin",
                "end",
                "--prog-type",
                "lwt_seg6local",
            ],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
