//! `lbctl` as a process against a real controller (embedded store, loaded
//! balancer, gRPC over loopback): every command, and what each refuses.

mod support;

use support::{failed, path_str, with_controller};

const WEB: &str = "\
# The example of deploy/: three backends.
name: web
address: 192.0.2.10
port: 80
protocol: PROTOCOL_TCP
backends:
  - address: 10.0.0.1
  - address: 10.0.0.2
    weight: 2
  - address: 10.0.0.3
";

#[test]
fn vip_and_backend_commands_change_the_store_and_the_node_follows() {
    with_controller(|c| {
        let created = c.json(&[
            "vip",
            "create",
            "--name",
            "web",
            "--address",
            "192.0.2.10",
            "--port",
            "80",
            "--backend",
            "10.0.0.1",
            "--backend",
            "10.0.0.2*3",
        ]);
        let revision: u64 = created["storeRevision"].as_str().unwrap().parse().unwrap();
        let etag = created["etag"].as_str().unwrap().to_owned();
        assert_eq!(created["vip"]["backends"][1]["weight"], 3);

        // The node applies it, and says so.
        let status = c.json(&["status", "--wait", &revision.to_string(), "--timeout", "10"]);
        assert_eq!(status["converged"], true, "{status}");
        assert_eq!(
            status["vips"][0]["state"], "VIP_STATE_PROGRAMMED",
            "{status}"
        );

        // A table as operators know it from ipvsadm.
        let table = c.ok(&["vip", "list"]);
        assert!(table.contains("192.0.2.10:80/tcp"), "{table}");
        assert!(table.contains("-> 10.0.0.2"), "{table}");

        c.ok(&["backend", "add", "web", "10.0.0.3", "--weight", "5"]);
        c.ok(&["backend", "weight", "web", "10.0.0.1", "7"]);
        c.ok(&["backend", "drain", "web", "10.0.0.2"]);
        let got = c.json(&["vip", "get", "web"]);
        let backends = &got["vip"]["backends"];
        assert_eq!(backends[0]["weight"], 7);
        assert_eq!(backends[1]["state"], "BACKEND_STATE_DRAINING");
        assert_eq!(backends[2]["address"], "10.0.0.3");
        c.ok(&["backend", "activate", "web", "10.0.0.2"]);
        c.ok(&["backend", "remove", "web", "10.0.0.3"]);
        let got = c.json(&["vip", "get", "web"]);
        assert_eq!(got["vip"]["backends"].as_array().unwrap().len(), 2);
        assert_eq!(got["vip"]["backends"][1].get("state"), None, "active again");

        // The etag of the first read is stale now: refused, nothing changed.
        let stale = c.lbctl(&["backend", "remove", "web", "10.0.0.1", "--etag", &etag]);
        let (code, err) = failed(&stale);
        assert_eq!(code, 3, "{err}");
        assert!(
            err.contains("ETAG_MISMATCH") && err.contains("read it again"),
            "{err}"
        );
        assert_eq!(
            c.json(&["vip", "get", "web"])["vip"]["backends"][0]["address"],
            "10.0.0.1"
        );

        // Validate-only writes nothing.
        c.ok(&["backend", "add", "web", "10.0.0.9", "--validate-only"]);
        c.ok(&[
            "vip",
            "create",
            "--name",
            "dns",
            "--address",
            "192.0.2.53",
            "--port",
            "53",
            "--protocol",
            "udp",
            "--validate-only",
        ]);
        let (code, err) = failed(&c.lbctl(&["vip", "get", "dns"]));
        assert_eq!(code, 3, "{err}");
        assert!(
            err.contains("no VIP named \"dns\"") && err.contains("VIP_NOT_FOUND"),
            "{err}"
        );
        assert_eq!(
            c.json(&["vip", "get", "web"])["vip"]["backends"]
                .as_array()
                .unwrap()
                .len(),
            2
        );

        // Update replaces whole, from a file.
        let file = c.write_file("web.yaml", WEB);
        c.ok(&["vip", "update", "-f", path_str(&file)]);
        assert_eq!(
            c.json(&["vip", "get", "web"])["vip"]["backends"]
                .as_array()
                .unwrap()
                .len(),
            3
        );

        let deleted = c.json(&["vip", "delete", "web"]);
        let revision = deleted["storeRevision"].as_str().unwrap();
        let status = c.json(&["status", "--wait", revision]);
        assert_eq!(status.get("vips"), None, "{status}");
    });
}

#[test]
fn bad_requests_name_every_bad_field_and_write_nothing() {
    with_controller(|c| {
        let out = c.lbctl(&[
            "vip",
            "create",
            "--name",
            "web",
            "--address",
            "192.0.2.300",
            "--port",
            "70000",
            "--backend",
            "10.0.0.1*0",
            "--backend",
            "nowhere",
        ]);
        let (code, err) = failed(&out);
        assert_eq!(code, 3, "{err}");
        for field in [
            "vip.address",
            "vip.port",
            "vip.backends[0].weight",
            "vip.backends[1].address",
        ] {
            assert!(err.contains(field), "{field} not named: {err}");
        }
        assert!(err.contains("INVALID_FIELD"), "{err}");
        let (code, _) = failed(&c.lbctl(&["vip", "get", "web"]));
        assert_eq!(code, 3, "nothing was created");

        // Two VIPs on one service.
        c.ok(&[
            "vip",
            "create",
            "--name",
            "a",
            "--address",
            "192.0.2.1",
            "--port",
            "80",
        ]);
        let (code, err) = failed(&c.lbctl(&[
            "vip",
            "create",
            "--name",
            "b",
            "--address",
            "192.0.2.1",
            "--port",
            "80",
        ]));
        assert_eq!(code, 3);
        assert!(
            err.contains("VIP_ADDRESS_TAKEN") && err.contains("\"a\""),
            "{err}"
        );
        let (code, err) = failed(&c.lbctl(&[
            "vip",
            "create",
            "--name",
            "a",
            "--address",
            "192.0.2.2",
            "--port",
            "80",
        ]));
        assert_eq!(code, 3);
        assert!(err.contains("VIP_EXISTS"), "{err}");
        let (code, err) = failed(&c.lbctl(&["backend", "remove", "a", "10.9.9.9"]));
        assert_eq!(code, 3);
        assert!(err.contains("BACKEND_NOT_FOUND"), "{err}");
    });
}

#[test]
fn diff_apply_and_prune_manage_only_their_own() {
    with_controller(|c| {
        let dir = c.dir.join("vips");
        c.write_file("vips/web.yaml", WEB);
        c.write_file(
            "vips/dns.json",
            r#"{"name": "dns", "address": "192.0.2.53", "port": 53, "protocol": "PROTOCOL_UDP",
                "backends": [{"address": "10.0.1.1"}]}"#,
        );
        let dir = path_str(&dir);
        // A VIP of someone else's, made by hand.
        c.ok(&[
            "vip",
            "create",
            "--name",
            "manual",
            "--address",
            "192.0.2.99",
            "--port",
            "80",
        ]);

        let diff = c.lbctl(&["diff", "-f", dir]);
        assert_eq!(diff.status.code(), Some(1), "differences: exit 1");
        let text = String::from_utf8_lossy(&diff.stdout);
        assert!(
            text.contains("+ create web") && text.contains("+ create dns"),
            "{text}"
        );

        let applied = c.ok(&["apply", "-f", dir]);
        assert!(
            applied.contains("created dns") && applied.contains("created web"),
            "{applied}"
        );
        let diff = c.lbctl(&["diff", "-f", dir]);
        assert_eq!(
            diff.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&diff.stdout)
        );
        assert_eq!(c.json(&["vip", "get", "web"])["vip"]["owner"], "lbctl");

        // A change shows as an update, line by line.
        c.write_file("vips/web.yaml", &WEB.replace("weight: 2", "weight: 4"));
        let diff = c.lbctl(&["diff", "-f", dir]);
        assert_eq!(diff.status.code(), Some(1));
        let text = String::from_utf8_lossy(&diff.stdout);
        assert!(
            text.contains("~ update web") && text.contains("-     weight: 2\n+     weight: 4"),
            "{text}"
        );
        c.ok(&["apply", "-f", dir]);

        // A file removed: without --prune nothing is deleted.
        std::fs::remove_file(c.dir.join("vips/dns.json")).unwrap();
        let out = c.ok(&["apply", "-f", dir]);
        assert!(out.contains("no changes"), "{out}");
        c.ok(&["vip", "get", "dns"]);
        // With --prune, only what this owner applied goes.
        let out = c.ok(&["apply", "-f", dir, "--prune"]);
        assert!(
            out.contains("deleted dns") && !out.contains("manual"),
            "{out}"
        );
        assert_eq!(failed(&c.lbctl(&["vip", "get", "dns"])).0, 3);
        c.ok(&["vip", "get", "manual"]);
        assert_eq!(
            c.lbctl(&["diff", "-f", dir, "--prune"]).status.code(),
            Some(0)
        );
    });
}

#[test]
fn a_bad_file_is_reported_at_its_line_and_column_and_nothing_is_applied() {
    with_controller(|c| {
        let unknown = c.write_file(
            "bad/unknown.yaml",
            "name: web\naddress: 192.0.2.10\nport: 80\nprotocol: PROTOCOL_TCP\nbackends:\n  - address: 10.0.0.1\n    wieght: 2\n",
        );
        let (code, err) = failed(&c.lbctl(&["apply", "-f", path_str(&unknown)]));
        assert_eq!(code, 2, "{err}");
        let at = format!("{}:7:", unknown.display());
        assert!(err.contains(&at) && err.contains("wieght"), "{err}");

        let json = c.write_file(
            "bad/dns.json",
            "{\n  \"name\": \"dns\",\n  \"address\": \"192.0.2.53\",\n  \"prot\": 53\n}\n",
        );
        let (code, err) = failed(&c.lbctl(&["apply", "-f", path_str(&json)]));
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&format!("{}:4:", json.display())) && err.contains("prot"),
            "{err}"
        );
        let port = c.write_file("bad/port.json", "{\"name\": \"web\", \"port\": \"eighty\"}");
        let (code, err) = failed(&c.lbctl(&["apply", "-f", path_str(&port)]));
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("port.json:1:") && err.contains("port: invalid digit"),
            "{err}"
        );

        let invalid = c.write_file(
            "bad/address.yaml",
            "---\nname: ok\naddress: 192.0.2.1\nport: 80\nprotocol: PROTOCOL_TCP\n---\nname: web\naddress: 192.0.2.999\nport: 80\nprotocol: PROTOCOL_TCP\n",
        );
        let (code, err) = failed(&c.lbctl(&["apply", "-f", path_str(&invalid)]));
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&format!("{}:7: address", invalid.display())),
            "{err}"
        );
        assert_eq!(
            failed(&c.lbctl(&["vip", "get", "ok"])).0,
            3,
            "nothing applied"
        );
    });
}

#[test]
fn status_wait_gives_up_after_its_timeout() {
    with_controller(|c| {
        let (code, err) = failed(&c.lbctl(&["status", "--wait", "1000000", "--timeout", "0.5"]));
        assert_eq!(code, 5, "{err}");
        assert!(err.contains("has not applied revision 1000000"), "{err}");
    });
}

#[test]
fn completion_and_help() {
    with_controller(|c| {
        let bash = c.ok(&["completion", "bash"]);
        assert!(bash.contains("lbctl") && bash.contains("apply"), "{bash}");
        let help = c.ok(&["--help"]);
        assert!(
            help.contains("Exit codes") && help.contains("5  `status --wait`"),
            "{help}"
        );
    });
}

#[test]
fn the_endpoint_comes_from_flags_then_the_environment_then_the_config_file() {
    with_controller(|c| {
        let config = c.write_file(
            ".config/lbctl/config.yaml",
            &format!("endpoint: {}\nrequestTimeout: 5\n", c.endpoint),
        );
        let run = |env_endpoint: Option<&str>, args: &[&str]| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lbctl"));
            cmd.args(args)
                .env("HOME", &c.dir)
                .env_remove("LBCTL_CONFIG");
            match env_endpoint {
                Some(e) => cmd.env("LBCTL_ENDPOINT", e),
                None => cmd.env_remove("LBCTL_ENDPOINT"),
            };
            cmd.output().unwrap()
        };
        // The file in $HOME alone reaches the controller.
        assert!(run(None, &["status"]).status.success());
        // The environment wins over the file, the flag over both.
        let dead = "http://127.0.0.1:1";
        assert_eq!(run(Some(dead), &["status"]).status.code(), Some(4));
        assert!(
            run(Some(dead), &["--endpoint", &c.endpoint, "status"])
                .status
                .success()
        );
        // A bad key in the file is named with its position.
        std::fs::write(&config, "endpont: x\n").unwrap();
        let (code, err) = failed(&run(None, &["status"]));
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("config.yaml:1:") && err.contains("endpont"),
            "{err}"
        );
    });
}

#[test]
fn stats_watch_prints_a_snapshot_each_interval() {
    with_controller(|c| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lbctl"))
            .args(["stats", "--watch", "--interval", "0.2", "-o", "json"])
            .env("HOME", &c.dir)
            .env("LBCTL_ENDPOINT", &c.endpoint)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        for _ in 0..3 {
            let line = lines.next().unwrap().unwrap();
            let stats: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert!(stats["verdicts"].is_object(), "{line}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
    });
}
