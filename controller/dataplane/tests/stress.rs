//! Concurrency stress: two threads pinned to the two CPUs send traffic —
//! SYNs, then ACKs of the flows they placed, and fresh flows — while the
//! main thread, on CPU 1, applies random batches: backends added, removed,
//! re-weighted and drained, VIPs removed and added again, ring slots and
//! ids recycled through the reader barrier (the tables are sized so it is
//! paid every few batches). The dataplane is loaded with readers on CPU 0
//! that pause between reading a VIP's state and its ring, and between
//! finding a flow entry and copying it, as an interrupted CPU would, so
//! the writer races them. Two races (`Race`), each with the caches off
//! and on: batches alone against a tiny flow table the traffic churns, and
//! batches sharing the writer's time with recycling flow-table elements
//! under CPU 0 (freed and taken at once by another VIP's flow, as the
//! kernel's LRU does without a grace period).
//!
//! Checked on every packet sent out: it goes to a backend of its own VIP
//! (every VIP has addresses of its own), and to one the VIP had when the
//! packet was sent (its config as of the last `apply` that returned, or of
//! the one in progress); and no packet meets a backend entry cleared under
//! it. Without the reader barrier, the flow entries' key tag or the
//! backend generation check, each run breaks these rules (checked by hand:
//! dozens to thousands of packets per run).

mod common;

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use common::*;
use lb_abi::vip::VipKey;
use lb_dataplane::{
    BackendConfig, Batch, Dataplane, DataplaneError, LoadOptions, Programmer, Protocol, Runner,
    VipConfig,
};
use lb_testbed::pin_to_cpu;

const VIPS: [&str; 2] = ["10.0.0.1", "10.0.0.2"];
const XDP_TX: u32 = 3;
const FLOWS_PER_THREAD: u16 = 48;
const WRITING: Duration = Duration::from_secs(3);
/// Recycling of flow-table elements between two batches.
const RECYCLING: Duration = Duration::from_millis(2);

/// The backend addresses VIP `v` may ever have: its own.
fn pool(v: usize) -> Vec<IpAddr> {
    (1..=8)
        .map(|h| IpAddr::V4(Ipv4Addr::new(10, 20 + v as u8, 0, h)))
        .collect()
}

fn key(v: usize) -> VipKey {
    vip(VIPS[v], 80, Protocol::Tcp, &[]).key()
}

/// Backends each VIP may be sent to now: as of the last `apply` that
/// returned, and of the one in progress.
#[derive(Default)]
struct Allowed {
    current: HashMap<VipKey, HashSet<IpAddr>>,
    pending: HashMap<VipKey, HashSet<IpAddr>>,
    /// Batches applied so far.
    applied: u64,
}

impl Allowed {
    fn of(&self, key: &VipKey) -> (u64, HashSet<IpAddr>) {
        let mut all = self.current.get(key).cloned().unwrap_or_default();
        all.extend(self.pending.get(key).into_iter().flatten());
        (self.applied, all)
    }
}

/// The next config of VIP `v`: `None` removes it.
fn next_config(rng: &mut Rng, v: usize, now: Option<&VipConfig>) -> Option<VipConfig> {
    let pool = pool(v);
    let Some(now) = now else {
        let mut config = vip(VIPS[v], 80, Protocol::Tcp, &[]);
        for &address in &pool[..2 + rng.below(4) as usize] {
            config.backends.push(BackendConfig { address, weight: 1 });
        }
        return Some(config);
    };
    let mut next = now.clone();
    let pick = rng.below(next.backends.len().max(1) as u64) as usize;
    match rng.below(6) {
        0 => return None,
        1 if !next.backends.is_empty() => next.backends[pick].weight = 1 + rng.below(3) as u32,
        2 if !next.backends.is_empty() => next.backends[pick].weight = 0,
        3 if next.backends.len() > 1 => {
            next.backends.remove(pick);
        }
        _ => {
            if let Some(&address) = pool
                .iter()
                .find(|a| next.backends.iter().all(|b| b.address != **a))
            {
                next.backends.push(BackendConfig { address, weight: 1 });
            }
        }
    }
    Some(next)
}

/// From the calling CPU: frees CPU 0's flow `f`, places a flow of the
/// other VIP (from client port `taker`) into what was freed, and places
/// `f` again.
fn recycle(runner: &Runner<'_>, programmer: &mut Programmer, f: u16, taker: u16) {
    let v = usize::from(f) % VIPS.len();
    let flow = tcp("192.0.2.1", 1_000 + f, VIPS[v], 80, Tcp::Ack, &[]);
    programmer
        .remove_flow(&lb_model::parse(&flow).unwrap().key)
        .unwrap();
    let other = VIPS[(v + 1) % VIPS.len()];
    runner
        .run(&tcp("192.0.2.9", taker, other, 80, Tcp::Syn, &[]))
        .unwrap();
    runner
        .run(&tcp("192.0.2.1", 1_000 + f, VIPS[v], 80, Tcp::Syn, &[]))
        .unwrap();
}

/// Traffic from one CPU until `stop`: the violations it saw, and how many
/// packets went out.
fn traffic(
    runner: &Runner<'_>,
    cpu: usize,
    allowed: &Mutex<Allowed>,
    stop: &AtomicBool,
) -> (Vec<String>, u64) {
    pin_to_cpu(cpu);
    let client = format!("192.0.2.{}", cpu + 1);
    let mut placed = vec![false; usize::from(FLOWS_PER_THREAD)];
    let mut violations = Vec::new();
    let mut sent = 0u64;
    let mut churn = 0u16;
    while !stop.load(Ordering::Relaxed) {
        for f in 0..FLOWS_PER_THREAD {
            let v = usize::from(f) % VIPS.len();
            // Half the flows are fresh every time: new flows take the
            // ring path, and CPU 1's (which does not pause) churn the table
            // while CPU 0 reads it.
            let churning = f.is_multiple_of(2);
            let (sport, flags) = if churning {
                churn = churn.wrapping_add(1);
                (20_000 + churn % 20_000, Tcp::Syn)
            } else if placed[usize::from(f)] {
                (1_000 + f, Tcp::Ack)
            } else {
                placed[usize::from(f)] = true;
                (1_000 + f, Tcp::Syn)
            };
            let frame = tcp(&client, sport, VIPS[v], 80, flags, &[]);
            let (before, mut may) = allowed.lock().unwrap().of(&key(v));
            let out = runner.run(&frame).unwrap();
            // A batch may have started while the packet ran: it may see
            // that one's config too. (Past one batch, it is not checked.)
            let (after, then) = allowed.lock().unwrap().of(&key(v));
            if out.action != XDP_TX || after > before + 1 {
                continue;
            }
            may.extend(then);
            // CPU 1 shares its CPU with the writer: let it run.
            if cpu == 1 {
                thread::yield_now();
            }
            sent += 1;
            let to = IpAddr::V4(Ipv4Addr::new(
                out.frame[30],
                out.frame[31],
                out.frame[32],
                out.frame[33],
            ));
            if !pool(v).contains(&to) {
                violations.push(format!("VIP {} sent to {to}, no backend of it", VIPS[v]));
            } else if !may.contains(&to) {
                violations.push(format!(
                    "VIP {} sent to {to} after it left (has {may:?})",
                    VIPS[v]
                ));
            }
        }
    }
    (violations, sent)
}

/// One stress run at a time: each pins a thread to each CPU.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The two ways the writer's thread races the readers: the whole time on
/// batches with a tiny flow table the traffic churns (ring slots and ids
/// recycle fastest), or sharing its time with recycling flow-table
/// elements under CPU 0 in a table with room for every flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Race {
    Batches,
    FlowElements,
}

fn stress(per_cpu_caches: bool, race: Race) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut dp = Dataplane::load(&LoadOptions {
        // Slots and ids for little more than what is live: the barrier is
        // paid every few batches and everything recycles.
        max_vips: 2,
        max_backends: 18,
        // For element recycling, room for every flow: elements are freed
        // on purpose (below), and a CPU's own freed ones stay its next to
        // give out.
        flow_table_entries: if race == Race::Batches { 16 } else { 4096 },
        per_cpu_caches,
        reader_pause: true,
        ..small_options(251)
    })
    .expect("load dataplane (run as root)");
    dp.programmer().set_node(&node()).unwrap();
    let (runner, programmer) = dp.split(lb_dataplane::ProgramKind::Balancer).unwrap();
    let allowed = Mutex::new(Allowed::default());
    let stop = AtomicBool::new(false);
    let mut configs: Vec<Option<VipConfig>> = vec![None; VIPS.len()];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut applied, mut full) = (0u32, 0u32);
    let results = thread::scope(|s| {
        let traffic: Vec<_> = (0..2)
            .map(|cpu| {
                let (runner, allowed, stop) = (&runner, &allowed, &stop);
                s.spawn(move || traffic(runner, cpu, allowed, stop))
            })
            .collect();
        // The writer races the slow reader on CPU 0 from CPU 1.
        pin_to_cpu(1);
        let mut taker = 0u16;
        let mut last_apply = Duration::ZERO;
        let started = Instant::now();
        while started.elapsed() < WRITING {
            let mut batch = Batch::default();
            let mut next = configs.clone();
            for _ in 0..1 + rng.below(2) {
                let v = rng.below(VIPS.len() as u64) as usize;
                next[v] = next_config(&mut rng, v, next[v].as_ref());
            }
            let mut pending = HashMap::new();
            for v in 0..VIPS.len() {
                if next[v] == configs[v] {
                    continue;
                }
                match &next[v] {
                    Some(c) => batch.upserts.push(c.clone()),
                    None => batch.removals.push(key(v)),
                }
                let addresses = next[v]
                    .iter()
                    .flat_map(|c| c.backends.iter().map(|b| b.address));
                pending.insert(key(v), addresses.collect::<HashSet<_>>());
            }
            // Flow-table elements are recycled without a grace period: from
            // CPU 1, free each of CPU 0's established flows, let a fresh
            // flow of the other VIP take the element at once (a CPU's own
            // freed elements are its next to give out), then place the
            // flow again, while CPU 0 may be reading it. Between batches,
            // for as long as the last batch took (at most `RECYCLING`), so
            // the writer's time is shared evenly however fast it applies.
            let recycling = Instant::now();
            while race == Race::FlowElements && recycling.elapsed() < last_apply.min(RECYCLING) {
                taker = taker.wrapping_add(1);
                // CPU 0's established flows: the odd ones.
                let f = 1 + taker % (FLOWS_PER_THREAD - 1);
                if !f.is_multiple_of(2) {
                    recycle(&runner, programmer, f, taker);
                }
            }
            allowed.lock().unwrap().pending = pending.clone();
            let applying = Instant::now();
            let result = programmer.apply(&batch);
            last_apply = applying.elapsed();
            match result {
                Ok(()) => {
                    applied += 1;
                    let mut a = allowed.lock().unwrap();
                    a.current.extend(pending);
                    a.pending.clear();
                    a.applied += 1;
                    configs = next;
                }
                Err(DataplaneError::Full { .. }) => {
                    full += 1;
                    allowed.lock().unwrap().pending.clear();
                }
                Err(e) => panic!("apply: {e}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        traffic
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    // A ring names only ids whose entries stay until no reader can hold
    // that ring: an empty entry met means one was cleared under a reader.
    let bad = programmer
        .stats()
        .unwrap()
        .global(lb_abi::stats::GlobalCounter::DropBadBackend);
    let sent: u64 = results.iter().map(|(_, n)| n).sum();
    eprintln!(
        "caches {per_cpu_caches}, {race:?}: {applied} batches applied, {full} refused; packets out per CPU {:?}",
        results.iter().map(|(_, n)| n).collect::<Vec<_>>()
    );
    let violations: Vec<&String> = results.iter().flat_map(|(v, _)| v).collect();
    assert_eq!(bad, 0, "packets met a backend entry cleared under them");
    assert!(
        violations.is_empty(),
        "{} of {sent} packets broke the rules ({applied} batches applied), first: {:#?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert!(
        applied > 100 && sent > 2_000,
        "too little happened: {applied} batches ({full} refused), {sent} packets"
    );
}

#[test]
fn concurrent_batches_never_misdirect_a_packet_caches_off() {
    stress(false, Race::Batches);
    stress(false, Race::FlowElements);
}

#[test]
fn concurrent_batches_never_misdirect_a_packet_caches_on() {
    stress(true, Race::Batches);
    stress(true, Race::FlowElements);
}
