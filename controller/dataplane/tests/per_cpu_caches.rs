//! The per-CPU caches in front of the flow table and the VIP map: a flow
//! copy is honoured only while no CPU has written the table for its slot
//! since and no config change could have failed its entry's generation
//! checks, userspace clearing the flows drops every copy, a VIP update is
//! seen by the next packet on every CPU, and the load-time switch turns the
//! caches off.

mod common;

use common::*;
use etherparse::{NetSlice, SlicedPacket};
use lb_abi::flow::FlowKey;
use lb_abi::flow_cache::{DEFAULT_FLOW_CACHE_SLOTS, flow_cache_index};
use lb_abi::stats::GlobalCounter;
use lb_dataplane::{Dataplane, LoadOptions, ProgramKind, Protocol};
use lb_testbed::pin_to_cpu;
use std::time::{Duration, Instant};

const VIP: &str = "10.0.0.100";
const BACKENDS: [&str; 3] = ["10.1.0.1", "10.1.0.2", "10.1.0.3"];

fn outer_dst(frame: &[u8]) -> String {
    match SlicedPacket::from_ethernet(frame).unwrap().net.unwrap() {
        NetSlice::Ipv4(ip) => ip.header().destination_addr().to_string(),
        _ => panic!("outer not IPv4"),
    }
}

fn send(dp: &Dataplane, frame: &[u8]) -> String {
    let out = dp
        .runner(ProgramKind::Balancer)
        .unwrap()
        .run(frame)
        .unwrap();
    assert_eq!(out.action, 3, "XDP_TX");
    outer_dst(&out.frame)
}

/// A dataplane whose VIP's ring has every backend but `drained`.
fn drain(dp: &mut Dataplane, drained: &str) {
    dp.programmer()
        .upsert_vip(&vip(
            VIP,
            80,
            Protocol::Tcp,
            &all_but(&BACKENDS, drained.parse().unwrap()),
        ))
        .unwrap();
}

fn loaded() -> Dataplane {
    loaded_with(LoadOptions {
        per_cpu_caches: true,
        ..small_options(1021)
    })
}

fn loaded_with(options: LoadOptions) -> Dataplane {
    let mut dp = Dataplane::load(&options).expect("load dataplane (run as root)");
    dp.programmer().set_node(&node()).unwrap();
    let all: Vec<(&str, u32)> = BACKENDS.iter().map(|b| (*b, 1)).collect();
    dp.programmer()
        .upsert_vip(&vip(VIP, 80, Protocol::Tcp, &all))
        .unwrap();
    dp
}

/// A dataplane with a 128-entry flow table that a few thousand flows
/// evict from, the caches on or off with `slots` flow-cache slots, driven
/// from CPU 0. The cache gate is off: those flows' lookups all miss the
/// cache, which would otherwise bypass it for the lookups the tests are
/// about.
fn small_table(per_cpu_caches: bool, slots: u32) -> Dataplane {
    let dp = loaded_with(LoadOptions {
        per_cpu_caches,
        flow_cache_slots: slots,
        flow_cache_gate: false,
        flow_table_entries: 128,
        ..small_options(1021)
    });
    pin_to_cpu(0);
    dp
}

/// A flow placed on CPU 0 and answered once more there, so CPU 0 holds a
/// copy of its entry; its backend.
fn cached_flow(dp: &Dataplane, client: &str, port: u16) -> (Vec<u8>, String) {
    pin_to_cpu(0);
    let syn = tcp(client, port, VIP, 80, Tcp::Syn, b"");
    let ack = tcp(client, port, VIP, 80, Tcp::Ack, b"data");
    let backend = send(dp, &syn);
    assert_eq!(send(dp, &ack), backend);
    (ack, backend)
}

/// [`cached_flow`], its backend then drained: still valid, only out of the
/// ring, so the flow stays and the copy still answers.
fn drained_cached_flow(dp: &mut Dataplane, client: &str, port: u16) -> (Vec<u8>, String) {
    let (ack, backend) = cached_flow(dp, client, port);
    drain(dp, &backend);
    assert_eq!(send(dp, &ack), backend);
    (ack, backend)
}

#[test]
fn a_flow_placed_anew_on_another_cpu_is_not_answered_from_this_cpus_copy() {
    assert!(
        std::thread::available_parallelism().unwrap().get() >= 2,
        "this test needs two CPUs"
    );
    let mut dp = loaded();
    let syn = tcp("192.0.2.1", 40000, VIP, 80, Tcp::Syn, b"");
    let ack = tcp("192.0.2.1", 40000, VIP, 80, Tcp::Ack, b"data");
    pin_to_cpu(0);
    let first = send(&dp, &syn);
    // CPU 0 now holds a copy of the flow's entry.
    assert_eq!(send(&dp, &ack), first);
    // The same 5-tuple starts a new connection on CPU 1, after the ring
    // dropped the first backend: the table now names another.
    drain(&mut dp, &first);
    pin_to_cpu(1);
    let second = send(&dp, &syn);
    assert_ne!(second, first);
    pin_to_cpu(0);
    assert_eq!(
        send(&dp, &ack),
        second,
        "CPU 0 answered from its copy of the old entry"
    );
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::TxFlowHit), 2);
}

#[test]
fn clearing_the_flows_drops_every_cached_copy() {
    let mut dp = loaded();
    let (ack, first) = drained_cached_flow(&mut dp, "192.0.2.2", 40001);
    dp.programmer().clear_flows().unwrap();
    assert_ne!(send(&dp, &ack), first, "a cached copy outlived clear_flows");
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::TxFlowHit), 2);
    assert_eq!(stats.global(GlobalCounter::FlowMiss), 1);
    // The first ACK (the copy was not there yet) and the last.
    assert_eq!(stats.global(GlobalCounter::FlowCacheMiss), 2);
}

/// The flow key of a TCP packet `client:port → VIP:80`, as the program
/// builds it.
fn key(client: std::net::Ipv4Addr, port: u16) -> FlowKey {
    FlowKey {
        src: [u32::from_ne_bytes(client.octets()), 0, 0, 0],
        dst: [
            u32::from_ne_bytes(VIP.parse::<std::net::Ipv4Addr>().unwrap().octets()),
            0,
            0,
            0,
        ],
        src_port: port.to_be(),
        dst_port: 80u16.to_be(),
        proto: lb_abi::PROTO_TCP,
        family: lb_abi::FAMILY_V4,
        _pad: [0; 2],
    }
}

/// Fills a small flow table with flows that leave cache slot `kept` (of
/// `slots`) alone, each used twice so that the LRU holds them as dear as
/// any flow placed before: the earlier flows are evicted, and only `kept`
/// may still hold a copy of one.
fn evict_all_but_slot(dp: &Dataplane, kept: u32, slots: u32) -> u64 {
    let mut placed = 0;
    for n in 0..4000u32 {
        let other = std::net::Ipv4Addr::from(0xc633_6400 + n);
        if flow_cache_index(&key(other, 1000), slots) == kept {
            continue;
        }
        let other = other.to_string();
        send(dp, &tcp(&other, 1000, VIP, 80, Tcp::Syn, b""));
        send(dp, &tcp(&other, 1000, VIP, 80, Tcp::Ack, b""));
        placed += 1;
    }
    assert!(placed > 2000);
    placed
}

/// A client port of `client`, other than `not`, whose flow's slot among
/// `slots` passes `wanted`.
fn port_where(
    client: std::net::Ipv4Addr,
    not: u16,
    slots: u32,
    wanted: impl Fn(u32) -> bool,
) -> u16 {
    (1024..u16::MAX)
        .find(|&p| p != not && wanted(flow_cache_index(&key(client, p), slots)))
        .expect("some port fits")
}

/// Evicts one flow from a small flow table and asks for it again: with the
/// cache on, this CPU's copy still answers (affinity outlives the LRU
/// entry); with it off, every hit is the table's, so the flow is placed
/// anew. Shows the switch works and what the cache adds.
fn evicted_flow_goes_to(flow_cache: bool) -> (String, String, u64) {
    let mut dp = small_table(flow_cache, DEFAULT_FLOW_CACHE_SLOTS);
    let client: std::net::Ipv4Addr = "192.0.2.3".parse().unwrap();
    let kept = flow_cache_index(&key(client, 40002), DEFAULT_FLOW_CACHE_SLOTS);
    let syn = tcp(&client.to_string(), 40002, VIP, 80, Tcp::Syn, b"");
    let ack = tcp(&client.to_string(), 40002, VIP, 80, Tcp::Ack, b"data");
    let first = send(&dp, &syn);
    assert_eq!(send(&dp, &ack), first);
    drain(&mut dp, &first);
    evict_all_but_slot(&dp, kept, DEFAULT_FLOW_CACHE_SLOTS);
    let after = send(&dp, &ack);
    if !flow_cache {
        let stats = dp.programmer().stats().unwrap();
        assert_eq!(stats.global(GlobalCounter::FlowCacheMiss), 0);
        // Bumps the one epoch allocated with the caches off.
        dp.programmer().clear_flows().unwrap();
    }
    let misses = dp
        .programmer()
        .stats()
        .unwrap()
        .global(GlobalCounter::FlowMiss);
    (first, after, misses)
}

#[test]
fn with_the_cache_on_an_evicted_flow_keeps_its_backend() {
    let (first, after, misses) = evicted_flow_goes_to(true);
    assert_eq!(after, first);
    assert_eq!(misses, 0);
}

#[test]
fn with_the_cache_off_every_hit_is_the_tables() {
    let (first, after, misses) = evicted_flow_goes_to(false);
    assert_ne!(after, first, "the evicted flow was answered from a cache");
    assert_eq!(misses, 1);
}

/// With more active flows than slots, flows that share a slot must not
/// evict each other on every packet: the slot keeps the current copy it
/// has, and the other flow is answered from the table.
#[test]
fn a_current_copy_is_not_displaced_by_a_flow_sharing_its_slot() {
    let slots = DEFAULT_FLOW_CACHE_SLOTS;
    let mut dp = small_table(true, slots);
    let client: std::net::Ipv4Addr = "192.0.2.4".parse().unwrap();
    let slot = flow_cache_index(&key(client, 40003), slots);
    let other_port = port_where(client, 40003, slots, |s| s == slot);
    let c = client.to_string();
    let packet = |port, flags| tcp(&c, port, VIP, 80, flags, b"");
    // Both placed first: each placement is a table write at the slot's
    // index, which would make an earlier copy stale.
    let first = send(&dp, &packet(40003, Tcp::Syn));
    let other = send(&dp, &packet(other_port, Tcp::Syn));
    // The first flow's packet fills the slot; the other's is a table hit
    // and leaves it.
    assert_eq!(send(&dp, &packet(40003, Tcp::Ack)), first);
    assert_eq!(send(&dp, &packet(other_port, Tcp::Ack)), other);
    drain(&mut dp, &first);
    let placed = evict_all_but_slot(&dp, slot, slots);
    assert_eq!(
        send(&dp, &packet(40003, Tcp::Ack)),
        first,
        "the slot's copy was replaced by the other flow's"
    );
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::FlowMiss), 0);
    // Both flows' first ACKs, and each evicting flow's ACK (its SYN made
    // its slot stale); the last ACK was the cache's.
    assert_eq!(stats.global(GlobalCounter::FlowCacheMiss), 2 + placed);
}

/// The loader's slot count is the one the program indexes by: a copy in
/// slot `kept` of 5 outlives its evicted table entry, and the placement of
/// a flow that shares slot `kept` of 5 (but not the slot it would have at
/// the default size) drops the copy.
#[test]
fn the_cache_has_the_slot_count_it_was_loaded_with() {
    let slots = 5;
    let mut dp = small_table(true, slots);
    let client: std::net::Ipv4Addr = "192.0.2.5".parse().unwrap();
    let kept = flow_cache_index(&key(client, 40004), slots);
    let at_default = flow_cache_index(&key(client, 40004), DEFAULT_FLOW_CACHE_SLOTS);
    let decoy = port_where(client, 40004, slots, |s| s == kept);
    assert_ne!(
        flow_cache_index(&key(client, decoy), DEFAULT_FLOW_CACHE_SLOTS),
        at_default
    );
    let c = client.to_string();
    let packet = |port, flags| tcp(&c, port, VIP, 80, flags, b"");
    let first = send(&dp, &packet(40004, Tcp::Syn));
    assert_eq!(send(&dp, &packet(40004, Tcp::Ack)), first);
    drain(&mut dp, &first);
    let _ = evict_all_but_slot(&dp, kept, slots);
    assert_eq!(send(&dp, &packet(40004, Tcp::Ack)), first, "copy not kept");
    // Placing the decoy is a table write at slot `kept`: it bumps the
    // epoch, so the evicted flow is placed anew.
    send(&dp, &packet(decoy, Tcp::Syn));
    assert_ne!(send(&dp, &packet(40004, Tcp::Ack)), first, "stale copy");
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::FlowMiss), 1);
    // Bumps exactly the loaded slots' epochs.
    dp.programmer().clear_flows().unwrap();
}

#[test]
fn a_copy_is_not_honoured_once_its_backend_is_removed() {
    let mut dp = loaded();
    let (ack, first) = drained_cached_flow(&mut dp, "192.0.2.5", 42000);
    let rest: Vec<(&str, u32)> = BACKENDS
        .iter()
        .filter(|b| **b != first)
        .map(|b| (*b, 1))
        .collect();
    dp.programmer()
        .upsert_vip(&vip(VIP, 80, Protocol::Tcp, &rest))
        .unwrap();
    // Removed, it gets nothing: the copy names an id that was cleared.
    assert_ne!(send(&dp, &ack), first, "a copy outlived its backend");
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::TxFlowHit), 2);
    assert_eq!(stats.global(GlobalCounter::FlowMiss), 1);
    // The first ACK (no copy yet) and the last (its copy was dropped).
    assert_eq!(stats.global(GlobalCounter::FlowCacheMiss), 2);
}

#[test]
fn a_copy_is_not_honoured_once_its_vip_skips_the_flow_table() {
    let mut dp = loaded();
    let (ack, _) = cached_flow(&dp, "192.0.2.6", 42001);
    let all: Vec<(&str, u32)> = BACKENDS.iter().map(|b| (*b, 1)).collect();
    let mut config = vip(VIP, 80, Protocol::Tcp, &all);
    config.flags = lb_abi::vip::flags::NO_FLOW_TABLE;
    dp.programmer().upsert_vip(&config).unwrap();
    send(&dp, &ack);
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(
        stats.global(GlobalCounter::TxFlowHit),
        1,
        "a copy answered for a VIP that no longer uses the flow table"
    );
    assert_eq!(stats.global(GlobalCounter::TxRing), 2);
}

/// A dataplane with the TCP VIP and a UDP one on port 53 (same backends),
/// UDP flows expiring after `timeout`.
fn with_udp(timeout: Duration) -> Dataplane {
    let mut dp = loaded_with(LoadOptions {
        per_cpu_caches: true,
        udp_flow_timeout: timeout,
        ..small_options(1021)
    });
    let all: Vec<(&str, u32)> = BACKENDS.iter().map(|b| (*b, 1)).collect();
    dp.programmer()
        .upsert_vip(&vip(VIP, 53, Protocol::Udp, &all))
        .unwrap();
    dp
}

#[test]
fn udp_hits_are_answered_from_the_cache() {
    let mut dp = with_udp(Duration::from_secs(30));
    pin_to_cpu(0);
    let query = udp("192.0.2.7", 5300, VIP, 53, b"q");
    let first = send(&dp, &query);
    for _ in 0..3 {
        assert_eq!(send(&dp, &query), first);
    }
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::TxFlowHit), 3);
    // UDP has no SYN: the first packet looked too, before the ring placed
    // the flow. The first hit found no copy either, and took one.
    assert_eq!(stats.global(GlobalCounter::FlowCacheMiss), 2);
}

#[test]
fn a_udp_flow_answered_from_a_copy_stays_alive_in_the_table() {
    assert!(
        std::thread::available_parallelism().unwrap().get() >= 2,
        "this test needs two CPUs"
    );
    // Long beside the sleeps below, so a slow host cannot idle the flow
    // out between two of them.
    let timeout = Duration::from_secs(1);
    let mut dp = with_udp(timeout);
    pin_to_cpu(0);
    let query = udp("192.0.2.8", 5301, VIP, 53, b"q");
    let first = send(&dp, &query);
    // A flow placed anew would go elsewhere from now on.
    let weights = all_but(&BACKENDS, first.parse().unwrap());
    dp.programmer()
        .upsert_vip(&vip(VIP, 53, Protocol::Udp, &weights))
        .unwrap();
    // Active on CPU 0 for longer than the timeout, answered from its copy.
    let start = Instant::now();
    while start.elapsed() < timeout * 3 / 2 {
        std::thread::sleep(timeout / 5);
        assert_eq!(send(&dp, &query), first);
    }
    // CPU 1 has no copy: the table decides, and the flow is alive there.
    pin_to_cpu(1);
    assert_eq!(
        send(&dp, &query),
        first,
        "CPU 0's cached hits left the table's entry to expire"
    );
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.global(GlobalCounter::FlowMiss), 1, "placed once");
}

#[test]
fn a_vip_update_is_seen_by_the_next_packet_on_every_cpu() {
    assert!(
        std::thread::available_parallelism().unwrap().get() >= 2,
        "this test needs two CPUs"
    );
    let mut dp = loaded_with(LoadOptions {
        per_cpu_caches: true,
        ..small_options(1021)
    });
    let only = |backend: &str| vip(VIP, 80, Protocol::Tcp, &[(backend, 1)]);
    dp.programmer().upsert_vip(&only(BACKENDS[0])).unwrap();
    // Both CPUs look the VIP up, and so hold a copy of it.
    for (cpu, port) in [(0, 41000), (1, 41001)] {
        pin_to_cpu(cpu);
        let syn = tcp("192.0.2.4", port, VIP, 80, Tcp::Syn, b"");
        assert_eq!(send(&dp, &syn), BACKENDS[0]);
    }
    dp.programmer().upsert_vip(&only(BACKENDS[1])).unwrap();
    for (cpu, port) in [(0, 41002), (1, 41003)] {
        pin_to_cpu(cpu);
        let syn = tcp("192.0.2.4", port, VIP, 80, Tcp::Syn, b"");
        assert_eq!(
            send(&dp, &syn),
            BACKENDS[1],
            "CPU {cpu} used its copy of the old VIP"
        );
    }
    // Removed: the VIP's traffic passes, on every CPU.
    dp.programmer()
        .remove_vip(&lb_abi::vip::VipKey::new(
            VIP.parse().unwrap(),
            80,
            lb_abi::PROTO_TCP,
        ))
        .unwrap();
    for (cpu, port) in [(0, 41004), (1, 41005)] {
        pin_to_cpu(cpu);
        let syn = tcp("192.0.2.4", port, VIP, 80, Tcp::Syn, b"");
        let out = dp.runner(ProgramKind::Balancer).unwrap().run(&syn).unwrap();
        assert_eq!(out.action, 2, "XDP_PASS on CPU {cpu}");
    }
}

/// The backend address at each ring entry of the VIP `port`, read from the
/// ring map.
fn ring_addresses(dp: &mut Dataplane, port: u16, backends: &[&str]) -> Vec<String> {
    let key = vip(VIP, port, Protocol::Tcp, &[]).key();
    let by_id: std::collections::HashMap<u32, String> = backends
        .iter()
        .filter_map(|b| {
            let id = dp.programmer().backend_id(&key, b.parse().unwrap())?;
            Some((id, b.to_string()))
        })
        .collect();
    let ring = dp.programmer().ring_in_map(&key).unwrap();
    ring.iter().map(|id| by_id[id].clone()).collect()
}

/// A busy TCP flow answered from this CPU's cache never touched its table
/// entry before, so the LRU took it for idle and evicted it, and the next
/// config change re-placed it (a reset connection). Now a packet answered
/// from the copy touches the entry every `tcp_flow_refresh` (and writes it
/// back if evicted). The flow is one whose ring entry changes owner when
/// an unrelated backend leaves, so only its table entry keeps it where it
/// is; an idle flow placed with it is evicted.
#[test]
fn a_busy_flow_answered_from_the_cache_keeps_its_entry_and_its_backend() {
    let backends = ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5"];
    let leaving = backends[4];
    let slots = lb_abi::flow_cache::MAX_FLOW_CACHE_SLOTS;
    let mut dp = Dataplane::load(&LoadOptions {
        per_cpu_caches: true,
        flow_cache_slots: slots,
        // The churning flows' lookups all miss the cache; gated, it would
        // leave the busy flow's to the table, which keeps it anyway.
        flow_cache_gate: false,
        flow_table_entries: 256,
        tcp_flow_refresh: Duration::from_millis(20),
        ..small_options(1021)
    })
    .expect("load dataplane (run as root)");
    dp.programmer().set_node(&node()).unwrap();
    let before: Vec<(&str, u32)> = backends.iter().map(|b| (*b, 1)).collect();
    let after = &before[..4];
    dp.programmer()
        .upsert_vip(&vip(VIP, 80, Protocol::Tcp, &before))
        .unwrap();
    // The ring after the change, built on a scratch VIP (a ring depends
    // on the backends only).
    dp.programmer()
        .upsert_vip(&vip(VIP, 81, Protocol::Tcp, after))
        .unwrap();
    let old_ring = ring_addresses(&mut dp, 80, &backends);
    let new_ring = ring_addresses(&mut dp, 81, &backends);
    dp.programmer()
        .remove_vip(&vip(VIP, 81, Protocol::Tcp, &[]).key())
        .unwrap();
    let client: std::net::Ipv4Addr = "192.0.2.7".parse().unwrap();
    let entry = |port| {
        let hash = lb_abi::hash::flow_hash(&key(client, port), false);
        lb_abi::hash::ring_index(hash, 1021) as usize
    };
    let busy = (1024..u16::MAX)
        .find(|&p| old_ring[entry(p)] != leaving && old_ring[entry(p)] != new_ring[entry(p)])
        .expect("a flow whose ring entry changes owner");
    let idle = busy + 1;
    pin_to_cpu(0);
    let c = client.to_string();
    let packet = |port, flags| tcp(&c, port, VIP, 80, flags, b"");
    let placed = send(&dp, &packet(busy, Tcp::Syn));
    assert_eq!(placed, old_ring[entry(busy)]);
    assert_eq!(send(&dp, &packet(busy, Tcp::Ack)), placed, "copy taken");
    send(&dp, &packet(idle, Tcp::Syn));

    // New flows turn the 256-entry table over every 100 ms or so (well
    // past the refresh interval) for a second, never at the busy flow's
    // cache slot, while the busy flow sends every 2 ms.
    let busy_slot = flow_cache_index(&key(client, busy), slots);
    let mut churn = (0..u32::MAX)
        .map(|n| std::net::Ipv4Addr::from(0xc633_6400 + n))
        .filter(|c| flow_cache_index(&key(*c, 1000), slots) != busy_slot);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        assert_eq!(send(&dp, &packet(busy, Tcp::Ack)), placed);
        for _ in 0..5 {
            // Used twice, so the LRU holds it as dear as the busy flow's
            // one table lookup made that: it has to rotate its active list.
            let other = churn.next().unwrap().to_string();
            send(&dp, &tcp(&other, 1000, VIP, 80, Tcp::Syn, b""));
            send(&dp, &tcp(&other, 1000, VIP, 80, Tcp::Ack, b""));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        dp.programmer().flow_entry(&key(client, idle)).unwrap(),
        None,
        "the idle flow was evicted"
    );
    // A backend leaves: its retirement drops every cached copy, so the
    // busy flow's next packet is the table's to answer.
    dp.programmer()
        .upsert_vip(&vip(VIP, 80, Protocol::Tcp, after))
        .unwrap();
    assert_eq!(
        send(&dp, &packet(busy, Tcp::Ack)),
        placed,
        "the busy flow kept its backend"
    );
}

/// Counters of `dp` that show what answered the last lookups:
/// (flow-cache misses, bypassed lookups, flow-table misses).
fn cache_counters(dp: &mut Dataplane) -> (u64, u64, u64) {
    let stats = dp.programmer().stats().unwrap();
    (
        stats.global(GlobalCounter::FlowCacheMiss),
        stats.global(GlobalCounter::FlowCacheBypass),
        stats.global(GlobalCounter::FlowMiss),
    )
}

/// With many more active flows than slots, almost every probe misses and
/// costs a cold slot read for nothing: the gate then sends all but a
/// sampled few lookups straight to the table, which answers as it
/// would anyway (every flow keeps its backend). Misses that fill their
/// slot are the cache warming up, not waste: a working set that fits is
/// never bypassed. When the working set fits again, the sampled probes
/// find it cached and the gate opens.
#[test]
fn the_gate_bypasses_a_cache_that_misses_and_reopens_when_flows_fit() {
    use lb_abi::flow_cache::{GATE_JUDGED, GATE_RECHECK_SAMPLE, GATE_SAMPLE, GATE_WINDOW};
    let gated = |gate, slots| {
        let mut dp = loaded_with(LoadOptions {
            per_cpu_caches: true,
            flow_cache_slots: slots,
            flow_cache_gate: gate,
            ..small_options(1021)
        });
        pin_to_cpu(0);
        // 1,000 flows: over 16 slots each slot keeps one flow's copy, so
        // at most 16 lookups of a pass can hit; over 4,096 most fit.
        let clients: Vec<String> = (0..1000u32)
            .map(|n| std::net::Ipv4Addr::from(0xc633_6400 + n).to_string())
            .collect();
        let placed: Vec<String> = clients
            .iter()
            .map(|c| send(&dp, &tcp(c, 1000, VIP, 80, Tcp::Syn, b"")))
            .collect();
        let before = cache_counters(&mut dp);
        for _ in 0..3 {
            for (c, backend) in clients.iter().zip(&placed) {
                let ack = tcp(c, 1000, VIP, 80, Tcp::Ack, b"");
                assert_eq!(&send(&dp, &ack), backend, "{c} moved");
            }
        }
        let after = cache_counters(&mut dp);
        assert_eq!(after.2, before.2, "every lookup found its flow");
        (dp, after.0 - before.0, after.1 - before.1)
    };
    let lookups = 3000;
    let (_, misses, bypassed) = gated(false, 16);
    assert_eq!(bypassed, 0, "no gate, no bypass");
    assert!(misses > lookups - 50, "{misses} misses ungated");
    let (_, misses, bypassed) = gated(true, DEFAULT_FLOW_CACHE_SLOTS);
    assert_eq!(
        bypassed, 0,
        "a cache warming up to flows that fit was bypassed"
    );
    // The first pass fills; the later ones are answered.
    assert!(misses < lookups / 2, "{misses} misses where flows fit");

    let (mut dp, misses, bypassed) = gated(true, 16);
    // The first window probes every lookup; after it, about 1 in
    // GATE_RECHECK_SAMPLE, then 1 in GATE_SAMPLE, drawn at random: at most
    // twice the first rate, allowing for chance.
    let probed = u64::from(GATE_WINDOW)
        + 2 * (lookups - u64::from(GATE_WINDOW)) / u64::from(GATE_RECHECK_SAMPLE);
    assert!(
        misses <= probed && bypassed >= lookups - probed,
        "{misses} misses, {bypassed} bypassed of {lookups}"
    );

    // One flow from now on: its sampled probes hit its copy, and once a
    // whole window of lookups has (the window under way still holds the
    // 1,000 flows' misses), every lookup is the cache's again: a bypassed
    // window ends after GATE_JUDGED sampled probes, not GATE_WINDOW (which
    // would take sixteen times as many lookups).
    let ack = tcp("192.0.2.8", 40005, VIP, 80, Tcp::Ack, b"");
    let backend = send(&dp, &tcp("192.0.2.8", 40005, VIP, 80, Tcp::Syn, b""));
    for _ in 0..3 * GATE_JUDGED * GATE_SAMPLE {
        assert_eq!(send(&dp, &ack), backend);
    }
    let settled = cache_counters(&mut dp);
    for _ in 0..100 {
        assert_eq!(send(&dp, &ack), backend);
    }
    assert_eq!(
        cache_counters(&mut dp),
        settled,
        "the cache answers the one flow without a miss or a bypass"
    );
}
