//! Two or more builds of the balancer, timed side by side: which is faster
//! per path, and by how much.
//!
//! Sequential runs of `xdp_paths` cannot settle a change of a few ns here:
//! the host's speed moves by tens of percent between stretches of seconds.
//! This bench loads every build in one process and, round after round,
//! times each path on each build back to back. A difference is the median
//! of the per-round differences against the first build, so drift between
//! rounds cancels; "net" subtracts the empty program timed in the round.
//!
//! `LB_AB_OBJECTS=<a>,<b>,...` names balancer object files; `embedded` is
//! this build's own. To keep the object of the build at hand before
//! changing it:
//!
//! ```text
//! cargo build -p lb-dataplane
//! cp "$(ls -t target/debug/build/lb-dataplane-*/out/balancer | head -1)" /tmp/before.o
//! ```
//!
//! then, after the change (as root):
//! `LB_AB_OBJECTS=/tmp/before.o,embedded cargo bench -p lb-bench --bench xdp_ab`.
//! An object built before this crate gained a map fails to load, naming
//! it. `LB_BENCH_REPEAT` and `LB_BENCH_SAMPLES` change the effort.

mod common;

use common::{env, frag_needed, frame, loaded, loaded_object, median, time, udp_frame};
use lb_dataplane::{Dataplane, ProgramKind, Runner};

/// One build's dataplanes: SYNs past the flood guard (as `xdp_paths`
/// times them), and recorded flows for the hit rows.
struct Build {
    name: String,
    guarded: Dataplane,
    flows: Dataplane,
}

impl Build {
    fn load(name: &str) -> Self {
        let (guarded, flows) = if name == "embedded" {
            (loaded(1, true), loaded(0, true))
        } else {
            let object =
                std::fs::read(name).unwrap_or_else(|e| panic!("read balancer object {name}: {e}"));
            (
                loaded_object(&object, 1, true),
                loaded_object(&object, 0, true),
            )
        };
        Self {
            name: name.to_string(),
            guarded,
            flows,
        }
    }
}

/// A path: its frame, and whether it runs on the guarded dataplane.
struct Path {
    name: &'static str,
    frame: Vec<u8>,
    guarded: bool,
}

impl Path {
    /// The dataplane of a build's pair that this path runs on.
    fn runner<'r, 'a>(&self, (guarded, flows): (&'r Runner<'a>, &'r Runner<'a>)) -> &'r Runner<'a> {
        if self.guarded { guarded } else { flows }
    }
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Ok(names) = std::env::var("LB_AB_OBJECTS") else {
        eprintln!("xdp_ab: set LB_AB_OBJECTS=<object>,<object>,... (`embedded`: this build)");
        return;
    };
    let repeat = env("LB_BENCH_REPEAT", 200_000);
    let samples = env("LB_BENCH_SAMPLES", 61);
    let builds: Vec<Build> = names.split(',').map(Build::load).collect();
    let v4_ack = frame("192.0.2.1", "10.0.0.100", false);
    let v6_ack = frame("2001:db8:c::1", "2001:db8::100", false);
    let udp = udp_frame();
    let non_vip = frame("192.0.2.1", "10.0.0.101", true);
    let paths = [
        Path {
            name: "v4 SYN",
            frame: frame("192.0.2.1", "10.0.0.100", true),
            guarded: true,
        },
        Path {
            name: "v4 flow-table hit",
            frame: v4_ack.clone(),
            guarded: false,
        },
        Path {
            name: "v4 non-VIP",
            frame: non_vip.clone(),
            guarded: true,
        },
        Path {
            name: "v6 flow-table hit",
            frame: v6_ack.clone(),
            guarded: false,
        },
        Path {
            name: "v4 UDP flow-table hit",
            frame: udp.clone(),
            guarded: false,
        },
        Path {
            name: "v4 ICMP frag-needed steered",
            frame: frag_needed(),
            guarded: false,
        },
    ];
    let runners: Vec<(Runner<'_>, Runner<'_>)> = builds
        .iter()
        .map(|b| {
            (
                b.guarded.runner(ProgramKind::Balancer).unwrap(),
                b.flows.runner(ProgramKind::Balancer).unwrap(),
            )
        })
        .collect();
    for (_, flows) in &runners {
        flows.run(&v4_ack).unwrap();
        flows.run(&v6_ack).unwrap();
        flows.run(&udp).unwrap();
    }
    // Every build must take the same action on a path: timing two
    // different paths against each other would mean nothing. The timed
    // runs are held to it.
    let mut wants = Vec::with_capacity(paths.len());
    for path in &paths {
        let actions: Vec<u32> = runners
            .iter()
            .map(|(g, f)| path.runner((g, f)).run(&path.frame).unwrap().action)
            .collect();
        assert!(
            actions.iter().all(|a| *a == actions[0]),
            "{}: the builds disagree ({actions:?})",
            path.name
        );
        wants.push(actions[0]);
    }
    let pass = builds[0].guarded.runner(ProgramKind::Pass).unwrap();
    let xdp_pass = 2;
    // net[build][path]: one timing per round, less the round's empty run.
    let mut net = vec![vec![Vec::new(); paths.len()]; builds.len()];
    for _ in 0..samples {
        let empty = time(&pass, &non_vip, repeat, xdp_pass);
        for (b, (guarded, flows)) in runners.iter().enumerate() {
            for (p, path) in paths.iter().enumerate() {
                let runner = path.runner((guarded, flows));
                net[b][p].push(time(runner, &path.frame, repeat, wants[p]) - empty);
            }
        }
    }
    println!(
        "XDP builds side by side, ns/packet net of the empty program: median of {samples} rounds × {repeat} runs"
    );
    println!();
    let header: Vec<String> = builds.iter().map(|b| b.name.clone()).collect();
    let diffs: Vec<String> = builds[1..]
        .iter()
        .map(|b| format!("{} − {}", b.name, builds[0].name))
        .collect();
    println!("| path | {} | {} |", header.join(" | "), diffs.join(" | "));
    println!("|---|{}", "---:|".repeat(header.len() + diffs.len()));
    for (p, path) in paths.iter().enumerate() {
        let medians: Vec<String> = (0..builds.len())
            .map(|b| format!("{:.1}", median(net[b][p].clone())))
            .collect();
        let paired: Vec<String> = (1..builds.len())
            .map(|b| {
                let d = net[b][p].iter().zip(&net[0][p]).map(|(x, y)| x - y);
                format!("{:+.1}", median(d.collect()))
            })
            .collect();
        println!(
            "| {} | {} | {} |",
            path.name,
            medians.join(" | "),
            paired.join(" | ")
        );
    }
}
