//! Our balancer against Katran's, on this host, on identical frames.
//!
//! The targets compare with Katran, and DESIGN.md §6 records Katran's
//! figures as they were measured once. This host's speed has moved far
//! from that since (the empty program alone costs ~25 ns where §6 says ~5),
//! so a fair comparison times both balancers here, in one process, the way
//! `xdp_ab` times two builds of ours: every round times each path on each
//! balancer back to back, less the round's empty program, and the ratio
//! reported is the median of the per-round ratios.
//!
//! Katran is not in this repository. `LB_KATRAN_OBJECTS=<a>,<b>` names two
//! builds of its `katran/lib/bpf/balancer.bpf.c` (`balancer_kern.c` before
//! September 2023), both with the bench-only restore described in
//! `benches/README.md`: `<a>` with Katran's defaults, for the flow rows;
//! `<b>` with `-DMAX_CONN_RATE=1`, for the SYN rows (every SYN past its
//! flood guard, as our SYN rows are past ours). Without the variable the
//! bench says so and does nothing. `LB_KATRAN_DECAP` optionally names a
//! build of its `katran/decap/bpf/decap.bpf.c`, with the restore our decap
//! has, for a decap row. Katran runs with one LRU per CPU, as deployed;
//! `LB_KATRAN_LRU=fallback` leaves them out, and it uses the single
//! fallback LRU its own tests use (too small for the many-flow rows, which
//! it then skips). `LB_BENCH_PASSES` sets the many-flow rows' passes.
//!
//! Run as root: `LB_KATRAN_OBJECTS=… cargo bench -p lb-bench --bench
//! katran_ab`. `LB_BENCH_REPEAT` and `LB_BENCH_SAMPLES` change the effort.

mod common;

use std::net::IpAddr;

use aya::{
    Ebpf, EbpfLoader, Pod,
    maps::{Array, HashMap, MapData, PerCpuArray, of_maps::ArrayOfMaps},
    programs::Xdp,
};
use common::{
    bench_options, env, established_flows, frame, global_counter, loaded, median, place_flows,
    single_run_ns, spare_dataplane, time, udp_frame,
};
use lb_abi::stats::GlobalCounter;
use lb_dataplane::{Decap, ProgramKind, Runner};
use lb_model::Model;
use lb_testbed::pin_to_cpu;

/// Katran's map values and keys, laid out as its `balancer_structs.h`
/// declares them (C layout, addresses in network byte order).
mod abi {
    /// `struct vip_definition`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct VipDefinition {
        pub addr: [u32; 4],
        pub port: u16,
        pub proto: u8,
        pub _pad: u8,
    }

    /// `struct vip_meta`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct VipMeta {
        pub flags: u32,
        pub vip_num: u32,
    }

    /// `struct real_definition`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct RealDefinition {
        pub addr: [u32; 4],
        pub flags: u8,
        pub _pad: [u8; 3],
    }

    /// `struct lb_stats`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct LbStats {
        pub v1: u64,
        pub v2: u64,
    }

    /// `real_definition.flags`: the real is IPv6.
    pub const F_IPV6: u8 = 1;
    /// Katran's ring size and VIP count (its defaults).
    pub const RING_SIZE: u32 = 65_537;
    pub const MAX_VIPS: u32 = 512;
    /// `stats` index of its LRU counters: v1 packets, v2 LRU misses.
    pub const LRU_CNTRS: u32 = MAX_VIPS;
    /// Sizes of `struct flow_key` and `struct real_pos_lru`, the per-CPU
    /// LRUs' key and value.
    pub const FLOW_KEY_SIZE: u32 = 40;
    pub const REAL_POS_LRU_SIZE: u32 = 16;
    /// Its default flow capacity, split across the per-CPU LRUs.
    pub const LRU_ENTRIES: u32 = 8_000_000;
}

// SAFETY: plain C structs of integers; padding is written as zero.
unsafe impl Pod for abi::VipDefinition {}
unsafe impl Pod for abi::VipMeta {}
unsafe impl Pod for abi::RealDefinition {}
unsafe impl Pod for abi::LbStats {}

/// Katran's words for an address, and whether it is IPv6.
fn katran_addr(s: &str) -> ([u32; 4], bool) {
    let (family, words) = lb_abi::wire_addr(s.parse::<IpAddr>().unwrap());
    (words, family == lb_abi::FAMILY_V6)
}

/// One loaded Katran program. The balancer is configured like
/// `common::loaded`'s dataplane: the v4 and v6 TCP VIPs on port 80 and the
/// v4 UDP VIP on port 53, ten reals each, the gateway MAC, and one LRU per
/// CPU as Katran's own loader creates them in production
/// ([`add_per_cpu_lrus`]); without those, Katran falls back to the one
/// small LRU in its object, as its own tests run it. The decap program
/// needs no configuration.
struct Katran {
    ebpf: Ebpf,
    program: &'static str,
}

impl Katran {
    /// `program` of the object at `path`, loaded and verified.
    fn open(path: &str, program: &'static str) -> Self {
        let object = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let mut ebpf = EbpfLoader::new()
            .load(&object)
            .unwrap_or_else(|e| panic!("load {path}: {e}"));
        let xdp: &mut Xdp = ebpf
            .program_mut(program)
            .unwrap_or_else(|| panic!("{path} has no program {program}"))
            .try_into()
            .unwrap();
        xdp.load()
            .unwrap_or_else(|e| panic!("verify {program} of {path}: {e}"));
        Self { ebpf, program }
    }

    fn decap(path: &str) -> Self {
        Self::open(path, "xdpdecap")
    }

    fn balancer(path: &str, per_cpu_lrus: bool) -> Self {
        let Self { mut ebpf, .. } = Self::open(path, "balancer_ingress");
        let mut control: Array<_, u64> =
            Array::try_from(ebpf.map_mut("ctl_array").unwrap()).unwrap();
        let mut mac = [0u8; 8];
        mac[..6].copy_from_slice(&[2, 0, 0, 0, 0, 3]);
        control.set(0, &u64::from_ne_bytes(mac), 0).unwrap();

        let vips = [
            ("10.0.0.100", 80, lb_abi::PROTO_TCP, "10.1.0."),
            ("2001:db8::100", 80, lb_abi::PROTO_TCP, "2001:db8:1::"),
            ("10.0.0.100", 53, lb_abi::PROTO_UDP, "10.1.0."),
        ];
        let mut vip_map: HashMap<_, abi::VipDefinition, abi::VipMeta> =
            HashMap::try_from(ebpf.map_mut("vip_map").unwrap()).unwrap();
        for (vip_num, (address, port, proto, _)) in vips.iter().enumerate() {
            let key = abi::VipDefinition {
                addr: katran_addr(address).0,
                port: u16::to_be(*port),
                proto: *proto,
                _pad: 0,
            };
            let meta = abi::VipMeta {
                flags: 0,
                vip_num: vip_num as u32,
            };
            vip_map.insert(&key, &meta, 0).unwrap();
        }
        // Reals 1–10 for VIP 0, 11–20 for VIP 1, 21–30 for VIP 2; each
        // VIP's ring cycles through its ten. What a ring holds does not
        // change what a lookup in it costs.
        let mut reals: Array<_, abi::RealDefinition> =
            Array::try_from(ebpf.map_mut("reals").unwrap()).unwrap();
        for (vip_num, (.., prefix)) in vips.iter().enumerate() {
            for i in 1..=10u32 {
                let (addr, v6) = katran_addr(&format!("{prefix}{i}"));
                let real = abi::RealDefinition {
                    addr,
                    flags: if v6 { abi::F_IPV6 } else { 0 },
                    _pad: [0; 3],
                };
                reals.set(vip_num as u32 * 10 + i, &real, 0).unwrap();
            }
        }
        let mut rings: Array<_, u32> = Array::try_from(ebpf.map_mut("ch_rings").unwrap()).unwrap();
        for vip_num in 0..vips.len() as u32 {
            for position in 0..abi::RING_SIZE {
                let real = vip_num * 10 + 1 + position % 10;
                rings
                    .set(vip_num * abi::RING_SIZE + position, &real, 0)
                    .unwrap();
            }
        }
        if per_cpu_lrus {
            add_per_cpu_lrus(&mut ebpf);
        }
        Self {
            ebpf,
            program: "balancer_ingress",
        }
    }

    fn runner(&self) -> Runner<'_> {
        let program = self.ebpf.program(self.program).unwrap().try_into().unwrap();
        Runner::for_program(program, self.program)
    }

    /// LRU misses so far, over all CPUs.
    fn lru_misses(&self) -> u64 {
        let stats: PerCpuArray<_, abi::LbStats> =
            PerCpuArray::try_from(self.ebpf.map("stats").unwrap()).unwrap();
        let per_cpu = stats.get(&abi::LRU_CNTRS, 0).unwrap();
        per_cpu.iter().map(|s| s.v2).sum()
    }
}

/// One LRU per CPU in Katran's `lru_mapping`, as its loader sets them up
/// (its default flow capacity split across them). The outer map holds
/// them from then on.
fn add_per_cpu_lrus(ebpf: &mut Ebpf) {
    let cpus = aya::util::nr_cpus().unwrap().get() as u32;
    let mut lru_mapping: ArrayOfMaps<_, MapData> =
        ArrayOfMaps::try_from(ebpf.map_mut("lru_mapping").unwrap()).unwrap();
    for cpu in 0..cpus {
        let definition = aya_obj::Map::new_from_params(
            aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_LRU_HASH as u32,
            abi::FLOW_KEY_SIZE,
            abi::REAL_POS_LRU_SIZE,
            abi::LRU_ENTRIES / cpus,
            0,
        );
        let lru = MapData::create(definition, "katran_lru", None).expect("create an LRU");
        lru_mapping.set(cpu, &lru, 0).unwrap();
    }
}

/// Which pair of programs a path runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The balancers past their flood guards: SYNs balanced, not recorded.
    Guarded,
    /// The balancers that record flows: the hit rows, ours answered by its
    /// per-CPU flow cache.
    Flows,
    /// Ours with the per-CPU caches off, so a hit is its flow table alone;
    /// Katran's flow balancer, which has no such cache.
    Table,
    /// The backends' decap programs.
    Decap,
}

/// A timed path: its frame, the pair it runs on, and the action it must
/// end in.
struct Path {
    name: &'static str,
    frame: Vec<u8>,
    side: Side,
    want: u32,
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Ok(objects) = std::env::var("LB_KATRAN_OBJECTS") else {
        eprintln!(
            "katran_ab: set LB_KATRAN_OBJECTS=<default build>,<MAX_CONN_RATE=1 build> \
             and optionally LB_KATRAN_DECAP=<decap build> (see benches/README.md)"
        );
        return;
    };
    let (flows_object, guarded_object) = objects
        .split_once(',')
        .expect("LB_KATRAN_OBJECTS names two objects");
    let repeat = env("LB_BENCH_REPEAT", 200_000);
    let samples = env("LB_BENCH_SAMPLES", 61);
    let passes = env("LB_BENCH_PASSES", 5).max(1);
    // Both balancers keep per-CPU flow state (our cache, Katran's LRUs),
    // and the many-flow rows place their flows before timing them.
    pin_to_cpu(0);
    let per_cpu_lrus = std::env::var("LB_KATRAN_LRU").as_deref() != Ok("fallback");
    let katran_flows = Katran::balancer(flows_object, per_cpu_lrus);
    let katran_guarded = Katran::balancer(guarded_object, per_cpu_lrus);
    let katran_decap = std::env::var("LB_KATRAN_DECAP")
        .ok()
        .map(|path| Katran::decap(&path));
    let mut ours_guarded = loaded(1, true);
    let ours_flows = loaded(0, true);
    let ours_table = loaded(0, false);

    let (pass, tx) = (2, 3);
    let (v4_client, v4_vip) = ("192.0.2.1", "10.0.0.100");
    let (v6_client, v6_vip) = ("2001:db8:c::1", "2001:db8::100");
    let v4_ack = frame(v4_client, v4_vip, false);
    let v6_ack = frame(v6_client, v6_vip, false);
    let non_vip = frame(v4_client, "10.0.0.101", true);
    // The empty program is timed on it, as in xdp_ab.
    let empty_frame = non_vip.clone();
    // What a backend receives: our balancer's frame for a v4 SYN, as the
    // model builds it. Both decaps strip it and pass the inner packet on;
    // ours also checks that the outer destination is its address and the
    // inner one a VIP it serves.
    let tunnelled = Model::new(ours_guarded.programmer().state().clone())
        .process(&frame("192.0.2.9", v4_vip, true))
        .frame;
    let mut our_decap = Decap::load_for_bench().unwrap();
    let backend: [u8; 4] = tunnelled[30..34].try_into().unwrap();
    our_decap.add_address(backend.into()).unwrap();
    our_decap.add_vip(v4_vip.parse().unwrap()).unwrap();
    let mut paths: Vec<Path> = [
        ("v4 SYN", frame(v4_client, v4_vip, true), Side::Guarded, tx),
        ("v4 hit, one flow repeated", v4_ack.clone(), Side::Flows, tx),
        ("v4 hit, one flow, caches off", v4_ack, Side::Table, tx),
        ("v4 non-VIP", non_vip, Side::Guarded, pass),
        ("v6 SYN", frame(v6_client, v6_vip, true), Side::Guarded, tx),
        ("v6 hit, one flow repeated", v6_ack.clone(), Side::Flows, tx),
        ("v6 hit, one flow, caches off", v6_ack, Side::Table, tx),
        (
            "v4 UDP hit, one flow repeated",
            udp_frame(),
            Side::Flows,
            tx,
        ),
        (
            "v4 UDP hit, one flow, caches off",
            udp_frame(),
            Side::Table,
            tx,
        ),
        ("decap IPIP (backend program)", tunnelled, Side::Decap, pass),
    ]
    .into_iter()
    .map(|(name, frame, side, want)| Path {
        name,
        frame,
        side,
        want,
    })
    .collect();
    if katran_decap.is_none() {
        paths.retain(|p| p.side != Side::Decap);
    }

    let our_runners = [
        ours_guarded.runner(ProgramKind::Balancer).unwrap(),
        ours_flows.runner(ProgramKind::Balancer).unwrap(),
        our_decap.runner().unwrap(),
        ours_table.runner(ProgramKind::Balancer).unwrap(),
    ];
    let ours = |side: Side| -> &Runner<'_> {
        match side {
            Side::Guarded => &our_runners[0],
            Side::Flows => &our_runners[1],
            Side::Decap => &our_runners[2],
            Side::Table => &our_runners[3],
        }
    };
    let katran_runners = (
        katran_guarded.runner(),
        katran_flows.runner(),
        katran_decap.as_ref().map(Katran::runner),
    );
    let katran = |side: Side| -> &Runner<'_> {
        match side {
            Side::Guarded => &katran_runners.0,
            Side::Flows | Side::Table => &katran_runners.1,
            Side::Decap => katran_runners
                .2
                .as_ref()
                .expect("decap rows need LB_KATRAN_DECAP"),
        }
    };
    // Place the flows on both, and hold Katran to a restored frame: without
    // the restore, repetitions after the first would time another path.
    for p in &paths {
        if matches!(p.side, Side::Flows | Side::Table) {
            assert_eq!(ours(p.side).run(&p.frame).unwrap().action, p.want);
        }
        let out = katran(p.side).run(&p.frame).unwrap();
        assert_eq!(out.action, p.want, "{}: Katran's action", p.name);
        assert_eq!(
            out.frame, p.frame,
            "{}: Katran built without the restore",
            p.name
        );
    }
    let misses_before = katran_flows.lru_misses();

    let empty = ours_guarded.runner(ProgramKind::Pass).unwrap();
    let mut net_ours = vec![Vec::new(); paths.len()];
    let mut net_katran = vec![Vec::new(); paths.len()];
    let mut empties = Vec::new();
    for _ in 0..samples {
        let base = time(&empty, &empty_frame, repeat, pass);
        empties.push(base);
        for (i, p) in paths.iter().enumerate() {
            net_ours[i].push(time(ours(p.side), &p.frame, repeat, p.want) - base);
            net_katran[i].push(time(katran(p.side), &p.frame, repeat, p.want) - base);
        }
    }
    // A flow misses once on each CPU the bench ran on, then hits.
    let cpus = aya::util::nr_cpus().unwrap().get() as u64;
    let misses = katran_flows.lru_misses() - misses_before;
    assert!(
        misses <= 3 * cpus,
        "Katran's flow rows missed its LRU {misses} times"
    );

    println!(
        "Ours and Katran side by side, ns/packet net of the empty program: median of {samples} rounds × {repeat} runs"
    );
    println!(
        "(empty program: {:.0} ns; Katran's LRU: {})",
        median(empties),
        if per_cpu_lrus {
            "one per CPU"
        } else {
            "fallback"
        }
    );
    println!();
    println!("| path | ours | Katran | ours / Katran |");
    println!("|---|---:|---:|---:|");
    for (i, p) in paths.iter().enumerate() {
        let ratios = net_ours[i]
            .iter()
            .zip(&net_katran[i])
            .map(|(o, k)| o / k)
            .collect();
        println!(
            "| {} | {:.0} | {:.0} | {:.2} |",
            p.name,
            median(net_ours[i].clone()),
            median(net_katran[i].clone()),
            median(ratios)
        );
    }
    println!();
    if per_cpu_lrus {
        many_flow_rows(&katran_flows, &empty, passes);
    } else {
        println!("(no many-flow rows: Katran's fallback LRU holds too few flows)");
    }
}

/// Hits with `n` established flows taking turns, one packet each, as a busy
/// node sees them (`flow_churn`'s method; the one-flow rows above never
/// leave our per-CPU cache or Katran's CPU cache lines). Every packet is one
/// single run, interleaved: ours with the caches on (as deployed), ours
/// with them off (the flow table alone) and Katran, each going first in
/// turn, then the empty program.
/// Per pass over the flows each side's median less the empty program's is
/// its net, and the ratios are taken per pass; the medians over passes are
/// printed.
fn many_flow_rows(katran: &Katran, empty: &Runner<'_>, passes: u32) {
    let (pass, tx) = (2, 3);
    println!(
        "TCP hits with N flows taking turns: ns/packet net of the empty program, median over {passes} passes of single runs"
    );
    println!();
    println!(
        "| flows taking turns | ours | ours, caches off | Katran | ours / Katran | caches off / Katran | answered by our cache |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in [16_384, 65_536] {
        let frames = established_flows(n);
        let _spare = spare_dataplane(&bench_options());
        let (mut on, mut off) = (loaded(0, true), loaded(0, false));
        place_flows(&mut on, &frames);
        place_flows(&mut off, &frames);
        let katran_runner = katran.runner();
        for f in &frames {
            assert_eq!(katran_runner.run(f).unwrap().action, tx, "Katran's action");
        }
        let katran_misses = katran.lru_misses();
        let unanswered = |dp: &mut lb_dataplane::Dataplane| {
            global_counter(dp, GlobalCounter::FlowCacheMiss)
                + global_counter(dp, GlobalCounter::FlowCacheBypass)
        };
        let cache_misses = unanswered(&mut on);
        let (mut nets, mut ratios) = ([const { Vec::new() }; 3], [const { Vec::new() }; 2]);
        {
            let sides = [
                on.runner(ProgramKind::Balancer).unwrap(),
                off.runner(ProgramKind::Balancer).unwrap(),
                katran_runner,
            ];
            for _ in 0..passes {
                let mut timed = [const { Vec::new() }; 3];
                let mut empties = Vec::new();
                for (i, f) in frames.iter().enumerate() {
                    // The first run of a frame pays for its cold lines
                    // more than the next: each side goes first in turn.
                    for k in 0..sides.len() {
                        let side = (i + k) % sides.len();
                        timed[side].push(single_run_ns(&sides[side], f, tx));
                    }
                    empties.push(single_run_ns(empty, f, pass));
                }
                let base = median(empties);
                let net = timed.map(|t| median(t) - base);
                ratios[0].push(net[0] / net[2]);
                ratios[1].push(net[1] / net[2]);
                for (side, v) in net.into_iter().enumerate() {
                    nets[side].push(v);
                }
            }
        }
        // Katran's LRUs hold 4M flows per CPU: every flow must stay in.
        let missed = katran.lru_misses() - katran_misses;
        assert_eq!(
            missed, 0,
            "Katran's LRU missed {missed} of {n} placed flows"
        );
        let lookups = u64::from(passes) * u64::from(n);
        let cache_hits = 1.0 - (unanswered(&mut on) - cache_misses) as f64 / lookups as f64;
        let [ours, table, katran_net] = nets.map(median);
        let [ours_ratio, table_ratio] = ratios.map(median);
        println!(
            "| {n} | {ours:.0} | {table:.0} | {katran_net:.0} | {ours_ratio:.2} | {table_ratio:.2} | {:.0}% |",
            cache_hits * 100.0
        );
    }
}
