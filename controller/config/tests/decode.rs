//! Every way a stored VIP can be wrong, each refused alone with its key,
//! field and reason; and the stored form of a good one.

use std::net::IpAddr;

use lb_config::{Backend, BackendState, Keys, Protocol, Rejection, Vip, VipOptions};

const KEY: &str = "/lb/v1/vips/web";

fn keys() -> Keys {
    Keys::new("").unwrap()
}

fn decode(json: &str) -> Result<Vip, lb_config::ConfigError> {
    Vip::decode(&keys(), KEY, json.as_bytes())
}

fn web() -> Vip {
    Vip {
        name: "web".into(),
        address: "192.0.2.10".parse().unwrap(),
        port: 443,
        protocol: Protocol::Tcp,
        options: VipOptions {
            clamp_mss: true,
            new_flows_per_cpu_per_sec: Some(0),
            ..VipOptions::default()
        },
        backends: vec![
            Backend {
                address: "10.0.0.1".parse().unwrap(),
                weight: 1,
                state: BackendState::Active,
            },
            Backend {
                address: "2001:db8::2".parse().unwrap(),
                weight: 3,
                state: BackendState::Draining,
            },
        ],
        owner: String::new(),
        health_check: false,
    }
}

#[test]
fn a_good_vip_reads_back_as_written_and_its_stored_form_is_canonical() {
    let vip = web();
    let stored = vip.encode();
    assert_eq!(
        std::str::from_utf8(&stored).unwrap(),
        concat!(
            r#"{"schema":1,"name":"web","address":"192.0.2.10","port":443,"#,
            r#""protocol":"PROTOCOL_TCP","options":{"clampMss":true,"newFlowsPerCpuPerSec":0},"#,
            r#""backends":[{"address":"10.0.0.1"},"#,
            r#"{"address":"2001:db8::2","weight":3,"state":"BACKEND_STATE_DRAINING"}]}"#
        )
    );
    assert_eq!(Vip::decode(&keys(), KEY, &stored).unwrap(), vip);
}

#[test]
fn proto_field_names_and_defaults_are_read_as_proto3_json_says() {
    // Original (snake_case) names are accepted beside lowerCamelCase;
    // absent schema is 1, absent weight 1, absent state active.
    let vip = decode(
        r#"{"name":"web","address":"192.0.2.10","port":443,"protocol":"PROTOCOL_TCP",
            "options":{"clamp_mss":true,"new_flows_per_cpu_per_sec":0},
            "backends":[{"address":"10.0.0.1"},
                        {"address":"2001:db8::2","weight":3,"state":"BACKEND_STATE_DRAINING"}]}"#,
    )
    .unwrap();
    assert_eq!(vip, web());
}

#[test]
fn an_all_ports_vip_has_port_zero() {
    let vip = decode(
        r#"{"name":"web","address":"2001:db8::1","protocol":"PROTOCOL_UDP",
            "options":{"allPorts":true},"backends":[{"address":"2001:db8::2"}]}"#,
    )
    .unwrap();
    assert_eq!((vip.port, vip.protocol), (0, Protocol::Udp));
    assert_eq!(vip.id().address, "2001:db8::1".parse::<IpAddr>().unwrap());
}

/// A good document with `field` replaced by `value` (JSON), or with
/// `extra` members appended.
fn with(field: &str, value: &str) -> String {
    let mut doc: serde_json::Value = serde_json::from_slice(&web().encode()).unwrap();
    let mut at = &mut doc;
    let parts: Vec<&str> = field.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        at = match part.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*part],
        };
    }
    let last = parts[parts.len() - 1];
    let value: serde_json::Value = serde_json::from_str(value).unwrap();
    match last.parse::<usize>() {
        Ok(i) => at[i] = value,
        Err(_) => at[last] = value,
    }
    doc.to_string()
}

#[test]
fn each_fault_is_named_by_field_and_kind() {
    use Rejection::*;
    let cases: &[(&str, String, Rejection, &str, &str)] = &[
        (
            "unknown field",
            with("maglevSeed", "7"),
            UnknownField,
            "maglevSeed",
            "newer controller",
        ),
        (
            "unknown nested field",
            with("backends.1.priority", "2"),
            UnknownField,
            "backends[1].priority",
            "schema",
        ),
        (
            "newer schema",
            with("schema", "2"),
            NewerSchema,
            "schema",
            "upgrade",
        ),
        (
            "name not the key's",
            with("name", "\"api\""),
            Invalid,
            "name",
            "not the key's name",
        ),
        (
            "bad address",
            with("address", "\"192.0.2.300\""),
            Invalid,
            "address",
            "not an IPv4 or IPv6",
        ),
        (
            "multicast address",
            with("address", "\"224.0.0.1\""),
            Invalid,
            "address",
            "not a unicast",
        ),
        (
            "protocol unset",
            with("protocol", "\"PROTOCOL_UNSPECIFIED\""),
            Invalid,
            "protocol",
            "must be set",
        ),
        (
            "protocol unknown",
            with("protocol", "\"PROTOCOL_SCTP\""),
            Malformed,
            "protocol",
            "",
        ),
        (
            "port as text",
            with("port", "\"https\""),
            Malformed,
            "port",
            "",
        ),
        (
            "port too big",
            with("port", "70000"),
            Invalid,
            "port",
            "above 65535",
        ),
        (
            "port 0 alone",
            with("port", "0"),
            Invalid,
            "port",
            "allPorts",
        ),
        (
            "port with all ports",
            with("options.allPorts", "true"),
            Invalid,
            "port",
            "must be 0",
        ),
        (
            "backend address",
            with("backends.0.address", "\"backend-1\""),
            Invalid,
            "backends[0].address",
            "not an IPv4",
        ),
        (
            "duplicate backend",
            with("backends.1.address", "\"10.0.0.1\""),
            Invalid,
            "backends[1].address",
            "already backends[0]",
        ),
        (
            "weight zero",
            with("backends.1.weight", "0"),
            Invalid,
            "backends[1].weight",
            "BACKEND_STATE_DRAINING",
        ),
        (
            "weight too big",
            with("backends.1.weight", "65536"),
            Invalid,
            "backends[1].weight",
            "above the maximum 65535",
        ),
        (
            "weight negative",
            with("backends.1.weight", "-1"),
            Malformed,
            "backends[1].weight",
            "",
        ),
        (
            "state unknown",
            with("backends.1.state", "\"BACKEND_STATE_GONE\""),
            Malformed,
            "backends[1].state",
            "",
        ),
        (
            "cut short",
            "{\"name\":".to_owned(),
            Malformed,
            "name",
            "EOF",
        ),
        (
            "not JSON",
            "vip web".to_owned(),
            Malformed,
            "(document)",
            "expected",
        ),
        (
            "not an object",
            "[1,2]".to_owned(),
            Malformed,
            "(document)",
            "",
        ),
    ];
    for (what, doc, kind, field, says) in cases {
        let err = decode(doc).expect_err(what);
        assert_eq!(
            (err.kind, err.field.as_str()),
            (*kind, *field),
            "{what}: {err}"
        );
        assert!(err.reason.contains(says), "{what}: {err}");
        assert_eq!(err.key, KEY, "{what}");
        assert!(
            err.to_string().starts_with(&format!("{KEY}: {field}: ")),
            "{err}"
        );
    }
}

#[test]
fn an_ipv4_backend_cannot_carry_an_ipv6_vip() {
    let doc = with("address", "\"2001:db8::1\"");
    let err = decode(&doc).unwrap_err();
    assert_eq!(err.field, "backends[0].address");
    assert!(err.reason.contains("cannot carry IPv6 VIP"), "{err}");
}

#[test]
fn bytes_that_are_not_utf8_are_malformed() {
    let err = Vip::decode(&keys(), KEY, b"\xff\xfe{}").unwrap_err();
    assert_eq!(
        (err.kind, err.field.as_str()),
        (Rejection::Malformed, "(document)")
    );
}

#[test]
fn the_key_is_checked_before_the_value() {
    let err = Vip::decode(&keys(), "/lb/v1/vips/no spaces", &web().encode()).unwrap_err();
    assert_eq!(err.kind, Rejection::Key);
    let err = Vip::decode(&Keys::new("/prod").unwrap(), KEY, &web().encode()).unwrap_err();
    assert!(err.reason.contains("not under /prod/lb/v1/vips/"), "{err}");
}

#[test]
fn every_fault_of_a_message_is_named_at_once() {
    let mut stored = web().to_proto();
    stored.address = "300.1.1.1".into();
    stored.port = 70_000;
    stored.owner = "ci pipeline".into();
    stored.backends[0].weight = Some(0);
    stored.backends[1].address = "nowhere".into();
    let faults = Vip::from_proto(&keys(), KEY, stored).unwrap_err();
    let fields: Vec<&str> = faults.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "address",
            "port",
            "owner",
            "backends[0].weight",
            "backends[1].address"
        ]
    );
    assert!(faults.iter().all(|f| f.kind == Rejection::Invalid));
}

#[test]
fn an_owner_is_kept_and_read_back() {
    let mut vip = web();
    vip.owner = "lbctl/team-a".into();
    vip.health_check = true;
    let stored = vip.encode();
    let text = std::str::from_utf8(&stored).unwrap();
    assert!(text.contains(r#""owner":"lbctl/team-a""#), "{text}");
    assert!(text.contains(r#""healthCheck":{}"#), "{text}");
    assert_eq!(Vip::decode(&keys(), KEY, &stored).unwrap(), vip);
}
