//! Output: aligned tables for people; for scripts, the API's messages as
//! proto3 JSON (one document per line with `--watch`) or YAML.

use lb_proto::v1 as pb;
use serde::Serialize;

use crate::cli::Output;

/// Prints `value` as asked: `table` renders it for people.
pub fn print<T: Serialize>(output: Output, value: &T, table: impl FnOnce(&T) -> String) {
    match output {
        Output::Table => print!("{}", table(value)),
        Output::Json => println!(
            "{}",
            serde_json::to_string(value).expect("a message serializes")
        ),
        Output::Yaml => print!(
            "---\n{}",
            serde_yaml_ng::to_string(value).expect("a message serializes")
        ),
    }
}

/// Columns aligned on the widest cell, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub fn protocol(p: i32) -> &'static str {
    match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Tcp) => "tcp",
        Ok(pb::Protocol::Udp) => "udp",
        _ => "?",
    }
}

fn service(v: &pb::Vip) -> String {
    if v.address.contains(':') {
        format!("[{}]:{}/{}", v.address, v.port, protocol(v.protocol))
    } else {
        format!("{}:{}/{}", v.address, v.port, protocol(v.protocol))
    }
}

fn options(v: &pb::Vip) -> String {
    let Some(o) = &v.options else {
        return "-".into();
    };
    let mut set: Vec<String> = [
        (o.source_only_hash, "sourceOnlyHash"),
        (o.no_flow_table, "noFlowTable"),
        (o.all_ports, "allPorts"),
        (o.clamp_mss, "clampMss"),
        (o.local_services, "localServices"),
        (o.pass_echo, "passEcho"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| (*n).to_owned())
    .collect();
    if let Some(n) = o.new_flows_per_cpu_per_sec {
        set.push(format!("newFlowsPerCpuPerSec={n}"));
    }
    if set.is_empty() {
        "-".into()
    } else {
        set.join(",")
    }
}

/// VIPs as `ipvsadm -Ln` shows services: each VIP, then its backends.
pub fn vips(resources: &[pb::VipResource]) -> String {
    let mut rows = Vec::new();
    for r in resources {
        let Some(v) = &r.vip else {
            rows.push(vec![
                "?".into(),
                "(not a VIP)".into(),
                String::new(),
                String::new(),
                String::new(),
                r.etag.clone(),
                format!("invalid: {}", r.invalid),
            ]);
            continue;
        };
        rows.push(vec![
            v.name.clone(),
            service(v),
            String::new(),
            String::new(),
            options(v),
            r.etag.clone(),
            if r.invalid.is_empty() {
                v.owner.clone()
            } else {
                format!("invalid: {}", r.invalid)
            },
        ]);
        for b in &v.backends {
            let state = match pb::BackendState::try_from(b.state) {
                Ok(pb::BackendState::Draining) => "draining",
                _ => "active",
            };
            rows.push(vec![
                String::new(),
                format!("  -> {}", b.address),
                b.weight.unwrap_or(1).to_string(),
                state.into(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }
    table(
        &[
            "VIP",
            "SERVICE / BACKEND",
            "WEIGHT",
            "STATE",
            "OPTIONS",
            "ETAG",
            "OWNER",
        ],
        &rows,
    )
}

/// A node's status: its sync state and digests, then each VIP's three
/// views, disagreements marked `!`.
pub fn status(s: &pb::NodeStatus) -> String {
    let state = match pb::SyncState::try_from(s.sync_state) {
        Ok(pb::SyncState::InSync) => "in sync",
        Ok(pb::SyncState::Syncing) => "syncing",
        Ok(pb::SyncState::Waiting) => "waiting for the store",
        _ => "?",
    };
    let mut out = format!(
        "node {}: {state}; store revision {}, applied revision {}; {}\n",
        s.node,
        s.store_revision,
        s.applied_revision,
        if s.converged {
            "desired = applied = actual"
        } else {
            "desired, applied and actual DISAGREE"
        }
    );
    if let Some(d) = &s.digests {
        let short = |h: &str| h.get(..12).unwrap_or(h).to_owned();
        out.push_str(&format!(
            "digests: desired {}  applied {}{}  actual {}{}\n",
            short(&d.desired),
            short(&d.applied),
            if d.applied != d.desired { "!" } else { "" },
            if d.actual.is_empty() {
                format!("unreadable ({})", d.actual_error)
            } else {
                short(&d.actual)
            },
            if !d.actual.is_empty() && d.actual != d.applied {
                "!"
            } else {
                ""
            },
        ));
    }
    if let Some(u) = &s.usage {
        let fill =
            |f: &Option<pb::Fill>| f.map_or("-".into(), |f| format!("{}/{}", f.used, f.capacity));
        out.push_str(&format!(
            "usage: vips {}  backends {}  ring slots {}  flow table {}\n",
            fill(&u.vips),
            fill(&u.backends),
            fill(&u.ring_slots),
            u.flow_table_entries
        ));
    }
    if !s.error.is_empty() {
        out.push_str(&format!("error: {}\n", s.error));
    }
    let rows: Vec<Vec<String>> = s
        .vips
        .iter()
        .map(|v| {
            let state = pb::VipState::try_from(v.state).unwrap_or(pb::VipState::Unspecified);
            let mark = if state == pb::VipState::Programmed {
                ""
            } else {
                "!"
            };
            let rev = |r: u64| {
                if r == 0 {
                    "-".to_owned()
                } else {
                    r.to_string()
                }
            };
            vec![
                format!("{mark}{}", if v.name.is_empty() { "?" } else { &v.name }),
                v.service.clone(),
                state
                    .as_str_name()
                    .trim_start_matches("VIP_STATE_")
                    .to_lowercase(),
                rev(v.desired_revision),
                rev(v.applied_revision),
                rev(v.actual_revision),
                v.backends.to_string(),
                v.message.clone(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &[
            "VIP", "SERVICE", "STATE", "DESIRED", "APPLIED", "ACTUAL", "BACKENDS", "MESSAGE",
        ],
        &rows,
    ));
    out
}

pub fn stats(s: &pb::Stats) -> String {
    let sent = |t: &Option<pb::TrafficCounters>| t.unwrap_or_default();
    let mut rows: Vec<Vec<String>> = s
        .vips
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.service.clone(),
                sent(&v.sent).packets.to_string(),
                sent(&v.sent).bytes.to_string(),
            ]
        })
        .collect();
    rows.sort();
    let mut out = table(&["VIP", "SERVICE", "PACKETS", "BYTES"], &rows);
    out.push('\n');
    let rows: Vec<Vec<String>> = s
        .backends
        .iter()
        .map(|b| {
            vec![
                b.address.clone(),
                sent(&b.sent).packets.to_string(),
                sent(&b.sent).bytes.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(&["BACKEND", "PACKETS", "BYTES"], &rows));
    if s.backends_not_read > 0 {
        out.push_str(&format!(
            "({} more backends not read)\n",
            s.backends_not_read
        ));
    }
    out.push('\n');
    let mut verdicts: Vec<(&String, &u64)> = s.verdicts.iter().filter(|(_, n)| **n > 0).collect();
    verdicts.sort();
    let rows: Vec<Vec<String>> = verdicts
        .into_iter()
        .map(|(k, n)| vec![k.clone(), n.to_string()])
        .collect();
    out.push_str(&table(&["VERDICT", "PACKETS"], &rows));
    out
}

pub fn explanation(e: &pb::FlowExplanation) -> String {
    let verdict = pb::Verdict::try_from(e.verdict)
        .unwrap_or(pb::Verdict::Unspecified)
        .as_str_name()
        .trim_start_matches("VERDICT_")
        .to_lowercase();
    let mut out = format!("verdict: {verdict} ({})\n", e.counter);
    if !e.service.is_empty() {
        out.push_str(&format!(
            "vip: {} {}\n",
            if e.vip.is_empty() { "?" } else { &e.vip },
            e.service
        ));
    }
    if !e.backend.is_empty() {
        out.push_str(&format!("backend: {}\n", e.backend));
    }
    out.push_str(&format!("why: {}\n", e.explanation));
    out
}
