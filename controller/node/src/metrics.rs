//! The Prometheus view of a node: its status, its reconciles, and the
//! dataplane's counters, named as Prometheus asks (`lb_` prefix, `_total`
//! counters, seconds and bytes).
//!
//! Counters of the dataplane are read every collection interval and set
//! as absolute values; every series is set again each interval, so the
//! exporter's idle timeout drops the series of VIPs and backends that are
//! gone. Backend series are per backend address (what the dataplane
//! counts: an address shared by two VIPs is one series) and bounded: the
//! first N addresses in address order, the rest counted in
//! `lb_backend_series_omitted`.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use lb_abi::stats::GlobalCounter;
use lb_config::VipId;
use lb_dataplane::{Fill, Stats};
use lb_reconcile::Desired;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{ExporterFuture, Matcher, PrometheusBuilder};
use metrics_util::MetricKindMask;
use thiserror::Error;

use crate::status::{NodeStatus, Problem, SyncState};

#[derive(Debug, Error)]
#[error("the metrics endpoint on {addr}: {reason}")]
pub struct MetricsError {
    addr: SocketAddr,
    reason: String,
}

/// Installs the global recorder and binds the scrape endpoint; the
/// future serves it. Series untouched for `idle` are dropped.
pub fn install(addr: SocketAddr, idle: Duration) -> Result<ExporterFuture, MetricsError> {
    let error = |reason: String| MetricsError { addr, reason };
    let (recorder, serve) = PrometheusBuilder::new()
        .with_http_listener(addr)
        .idle_timeout(MetricKindMask::COUNTER | MetricKindMask::GAUGE, Some(idle))
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ],
        )
        .map_err(|e| error(e.to_string()))?
        .build()
        .map_err(|e| error(e.to_string()))?;
    metrics::set_global_recorder(recorder).map_err(|e| error(e.to_string()))?;
    describe();
    Ok(serve)
}

fn describe() {
    describe_gauge!(
        "lb_config_sync_state",
        "1 for the controller's sync state with the store (waiting, syncing, in_sync), 0 for the others"
    );
    describe_gauge!(
        "lb_config_store_revision",
        "Newest store revision the controller has seen"
    );
    describe_gauge!(
        "lb_config_applied_revision",
        "Store revision up to which every event on the VIP prefix is in the maps"
    );
    describe_gauge!("lb_config_vips", "VIPs programmed");
    describe_gauge!("lb_config_rejected_vips", "Keys not programmed, by reason");
    describe_gauge!(
        "lb_config_stale_vips",
        "VIPs whose current value is invalid, their last good version programmed"
    );
    describe_counter!(
        "lb_config_rejections_total",
        "Key values refused (each value counted once), by reason"
    );
    describe_counter!(
        "lb_config_relists_total",
        "Full listings of the store, by reason"
    );
    describe_histogram!(
        "lb_config_event_to_live_seconds",
        "From a store event received to the maps serving it"
    );
    describe_counter!(
        "lb_reconcile_total",
        "Reconcile passes, by result (applied, unchanged, failed)"
    );
    describe_histogram!(
        "lb_reconcile_duration_seconds",
        "Reconcile pass duration, the map writes included"
    );
    describe_gauge!(
        "lb_map_entries",
        "Entries in use (or awaiting reuse) in a sized table"
    );
    describe_gauge!("lb_map_max_entries", "Size of a table, fixed at load");
    describe_counter!(
        "lb_packets_total",
        "Packets by the balancer's verdict (tx, pass, drop) and reason"
    );
    describe_counter!(
        "lb_flow_table_lookups_total",
        "Flow-table lookups of VIP packets, by result"
    );
    describe_counter!(
        "lb_flow_table_not_recorded_total",
        "New flows balanced but not recorded in the flow table, by reason"
    );
    describe_counter!(
        "lb_flow_cache_lookups_total",
        "Flow-table hits the per-CPU flow cache did not answer: missed, or bypassed by its gate"
    );
    describe_counter!("lb_vip_packets_total", "Packets sent to a VIP's backends");
    describe_counter!(
        "lb_vip_bytes_total",
        "Bytes (as received, Ethernet header included) sent to a VIP's backends"
    );
    describe_counter!(
        "lb_vip_flows_not_recorded_total",
        "New flows of a VIP over its flood guard: balanced, not recorded"
    );
    describe_counter!(
        "lb_backend_packets_total",
        "Packets sent to a backend address, over every VIP that has it"
    );
    describe_counter!(
        "lb_backend_bytes_total",
        "Bytes sent to a backend address, over every VIP that has it"
    );
    describe_gauge!(
        "lb_backend_series_omitted",
        "Backend addresses with no series: past the configured bound"
    );
}

/// Sets every status series.
pub fn status(s: &NodeStatus) {
    for state in SyncState::ALL {
        gauge!("lb_config_sync_state", "state" => state.as_str())
            .set(f64::from(u8::from(s.state == state)));
    }
    gauge!("lb_config_store_revision").set(s.store_revision as f64);
    gauge!("lb_config_applied_revision").set(s.applied_revision as f64);
    gauge!("lb_config_vips").set(s.programmed_vips as f64);
    gauge!("lb_config_stale_vips").set(s.stale_vips() as f64);
    let mut rejected: BTreeMap<&str, usize> = BTreeMap::new();
    for p in s.problems.values() {
        if !matches!(p, Problem::Stale(_)) {
            *rejected.entry(p.reason()).or_default() += 1;
        }
    }
    for reason in Problem::reasons() {
        gauge!("lb_config_rejected_vips", "reason" => reason)
            .set(rejected.get(reason).copied().unwrap_or(0) as f64);
    }
    let u = &s.usage;
    for (map, fill) in [
        ("vips", u.vips),
        ("backends", u.backends),
        ("rings", u.ring_slots),
    ] {
        map_fill(map, fill);
    }
    gauge!("lb_map_max_entries", "map" => "flows").set(f64::from(u.flow_table_entries));
}

fn map_fill(map: &'static str, fill: Fill) {
    gauge!("lb_map_entries", "map" => map).set(f64::from(fill.used));
    gauge!("lb_map_max_entries", "map" => map).set(f64::from(fill.capacity));
}

/// A value refused, counted once.
pub fn rejection(reason: &'static str) {
    counter!("lb_config_rejections_total", "reason" => reason).increment(1);
}

pub fn relist(reason: &'static str) {
    counter!("lb_config_relists_total", "reason" => reason).increment(1);
}

pub fn reconciled(result: &'static str, took: Duration) {
    counter!("lb_reconcile_total", "result" => result).increment(1);
    histogram!("lb_reconcile_duration_seconds").record(took.as_secs_f64());
}

pub fn event_to_live(took: Duration) {
    histogram!("lb_config_event_to_live_seconds").record(took.as_secs_f64());
}

/// The VIPs' names, for labels: the dataplane counts by (address, port,
/// protocol).
pub fn vip_names(desired: &Desired) -> BTreeMap<(IpAddr, u16, u8), String> {
    desired
        .vips
        .iter()
        .map(|(id, a)| (stats_key(id), a.vip.name.clone()))
        .collect()
}

fn stats_key(id: &VipId) -> (IpAddr, u16, u8) {
    (
        id.address,
        id.port,
        crate::apply::protocol(id.protocol).number(),
    )
}

/// Sets the dataplane's counters.
pub fn traffic(stats: &Stats, names: &BTreeMap<(IpAddr, u16, u8), String>) {
    for (&c, &n) in &stats.global {
        let (name, labels) = global_series(c);
        counter!(name, &labels).absolute(n);
        if c == GlobalCounter::TxFlowHit {
            counter!("lb_flow_table_lookups_total", "result" => "hit").absolute(n);
        }
    }
    for (key, t) in &stats.vips {
        let Some(name) = names.get(key) else { continue };
        let labels = [
            ("vip", name.clone()),
            ("address", key.0.to_string()),
            ("port", key.1.to_string()),
            (
                "protocol",
                if key.2 == lb_abi::PROTO_TCP {
                    "tcp"
                } else {
                    "udp"
                }
                .to_owned(),
            ),
        ];
        counter!("lb_vip_packets_total", &labels).absolute(t.packets);
        counter!("lb_vip_bytes_total", &labels).absolute(t.bytes);
        if let Some(&n) = stats.vip_flows_not_recorded_flood.get(key) {
            counter!("lb_vip_flows_not_recorded_total", &labels).absolute(n);
        }
    }
    for (address, t) in &stats.backends {
        let labels = [("backend", address.to_string())];
        counter!("lb_backend_packets_total", &labels).absolute(t.packets);
        counter!("lb_backend_bytes_total", &labels).absolute(t.bytes);
    }
    gauge!("lb_backend_series_omitted").set(stats.backends_not_read as f64);
}

/// A global counter's series: verdict counters under `lb_packets_total`
/// by verdict and reason, flow-table and cache counters by result.
fn global_series(c: GlobalCounter) -> (&'static str, Vec<(&'static str, &'static str)>) {
    use GlobalCounter as G;
    match c {
        G::FlowMiss => ("lb_flow_table_lookups_total", vec![("result", "miss")]),
        G::FlowNotRecordedFlood => (
            "lb_flow_table_not_recorded_total",
            vec![("reason", "flood")],
        ),
        G::FlowCacheMiss => ("lb_flow_cache_lookups_total", vec![("result", "miss")]),
        G::FlowCacheBypass => ("lb_flow_cache_lookups_total", vec![("result", "bypass")]),
        c => {
            let label = c.label();
            let (verdict, reason) = label.split_once('_').unwrap_or((label, ""));
            (
                "lb_packets_total",
                vec![("verdict", verdict), ("reason", reason)],
            )
        }
    }
}
