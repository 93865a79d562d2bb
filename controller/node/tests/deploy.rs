//! The examples of `deploy/` are read as the controller reads them, so an
//! example that drifts from the schema fails here.

use std::path::Path;

use clap::Parser as _;
use lb_config::{Keys, Vip, node::Gateway};
use lb_controller::settings::{Args, Settings};

fn deploy(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file)
}

fn settings(file: &str) -> Settings {
    let path = deploy(file);
    let args = Args::try_parse_from(["lb-controller", "--config", path.to_str().unwrap()]).unwrap();
    Settings::resolve(args).unwrap()
}

#[test]
fn settings_files_resolve() {
    let yaml = settings("controller.yaml");
    assert_eq!(yaml.interface, "eth0");
    assert_eq!(yaml.node_name, "lb-1");
    assert_eq!(yaml.node.gateway, Gateway::Resolve);
    // Every size the file names is the default: the file documents them.
    assert_eq!(yaml.load_options(), lb_dataplane::LoadOptions::default());

    let json = settings("controller.json");
    assert_eq!(json.node.mtu, 9000);
    assert_eq!(json.node.gateway, Gateway::Static([2, 0, 0, 0, 0, 1]));
    assert_eq!(json.load_options().max_vips, 256);
}

#[test]
fn flags_override_the_file() {
    let path = deploy("controller.yaml");
    let args = Args::try_parse_from([
        "lb-controller",
        "--config",
        path.to_str().unwrap(),
        "--interface",
        "eth7",
        "--node-name",
        "other",
        "--metrics",
        "none",
    ])
    .unwrap();
    let s = Settings::resolve(args).unwrap();
    assert_eq!(
        (s.interface.as_str(), s.node_name.as_str()),
        ("eth7", "other")
    );
    assert_eq!(s.metrics, None);
}

#[test]
fn vip_examples_decode() {
    let keys = Keys::new("").unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(deploy("vips")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        let name = value["name"].as_str().unwrap().to_owned();
        let vip = Vip::decode(
            &keys,
            &keys.vip(&name),
            &serde_json::to_vec(&value).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!vip.backends.is_empty());
        seen += 1;
    }
    assert_eq!(seen, 3, "web.yaml, dns.json and demo.yaml");
}

#[test]
fn the_api_serves_other_hosts_only_over_mutual_tls() {
    let resolve = |extra: &[&str]| {
        let mut args = vec!["lb-controller", "--interface", "eth0", "--node-name", "n"];
        args.extend(extra);
        Settings::resolve(Args::try_parse_from(args).unwrap())
    };
    let default = resolve(&[]).unwrap();
    assert_eq!(default.api, Some("127.0.0.1:9620".parse().unwrap()));
    assert!(default.api_tls.is_none());
    assert_eq!(resolve(&["--api", "none"]).unwrap().api, None);
    let err = resolve(&["--api", "0.0.0.0:9620"]).unwrap_err().to_string();
    assert!(
        err.contains("not a loopback address") && err.contains("clientCa"),
        "{err}"
    );
    let tls = ["--api-tls-cert", "/c.pem", "--api-tls-key", "/k.pem"];
    let err = resolve(&[&["--api", "0.0.0.0:9620"][..], &tls].concat())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a loopback address"),
        "TLS without client CA: {err}"
    );
    let mutual = resolve(
        &[
            &["--api", "0.0.0.0:9620", "--api-client-ca", "/ca.pem"][..],
            &tls,
        ]
        .concat(),
    )
    .unwrap();
    assert_eq!(
        mutual.api_tls.unwrap().client_ca.unwrap(),
        Path::new("/ca.pem")
    );
}
