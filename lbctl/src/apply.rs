//! `apply` and `diff`: the changes that make the store's VIPs match the
//! files. Each VIP applied carries the owner; only VIPs of that owner are
//! pruned. Updates and deletes carry the etag read, so that a VIP changed
//! between the read and the write fails the transaction instead of being
//! overwritten.

use std::collections::BTreeMap;

use lb_proto::v1::{self as pb, VipChange, vip_change::Change as PbChange};

use crate::files::Document;

/// One change of the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Create {
        vip: pb::Vip,
        source: String,
    },
    Update {
        before: Option<pb::Vip>,
        vip: pb::Vip,
        etag: String,
        source: String,
    },
    Delete {
        before: pb::Vip,
        etag: String,
    },
}

impl Change {
    pub fn name(&self) -> &str {
        match self {
            Change::Create { vip, .. } | Change::Update { vip, .. } => &vip.name,
            Change::Delete { before, .. } => &before.name,
        }
    }

    pub fn to_request(&self) -> VipChange {
        match self {
            Change::Create { vip, .. } => VipChange {
                change: Some(PbChange::Create(vip.clone())),
                etag: String::new(),
            },
            Change::Update { vip, etag, .. } => VipChange {
                change: Some(PbChange::Update(vip.clone())),
                etag: etag.clone(),
            },
            Change::Delete { before, etag } => VipChange {
                change: Some(PbChange::Delete(before.name.clone())),
                etag: etag.clone(),
            },
        }
    }
}

/// The changes from `stored` to `files` for `owner`, in name order.
pub fn plan(
    files: &[Document],
    stored: &[pb::VipResource],
    owner: &str,
    prune: bool,
) -> Vec<Change> {
    let by_name: BTreeMap<String, &pb::VipResource> = stored
        .iter()
        .filter_map(|r| Some((r.vip.as_ref()?.name.clone(), r)))
        .collect();
    let mut changes = Vec::new();
    for d in files {
        let mut vip = d.vip.clone();
        vip.owner = owner.to_owned();
        let wanted = vip.to_proto();
        match by_name.get(&wanted.name) {
            None => changes.push(Change::Create {
                vip: wanted,
                source: d.source.clone(),
            }),
            Some(r) if r.invalid.is_empty() && r.vip.as_ref() == Some(&wanted) => {}
            Some(r) => changes.push(Change::Update {
                before: r.vip.clone(),
                vip: wanted,
                etag: r.etag.clone(),
                source: d.source.clone(),
            }),
        }
    }
    if prune {
        for (name, r) in &by_name {
            let vip = r.vip.as_ref().expect("listed by name");
            if vip.owner == owner && !files.iter().any(|d| &d.vip.name == name) {
                changes.push(Change::Delete {
                    before: vip.clone(),
                    etag: r.etag.clone(),
                });
            }
        }
    }
    changes.sort_by(|a, b| a.name().cmp(b.name()));
    changes
}

/// The plan as a person reads it: each VIP, then its lines that go (`-`)
/// and come (`+`), as YAML.
pub fn render(changes: &[Change]) -> String {
    let yaml = |v: &pb::Vip| serde_yaml_ng::to_string(v).expect("a message serializes");
    let mut out = String::new();
    for c in changes {
        match c {
            Change::Create { vip, source } => {
                out.push_str(&format!("+ create {} ({source})\n", vip.name));
                for line in yaml(vip).lines() {
                    out.push_str(&format!("+   {line}\n"));
                }
            }
            Change::Update {
                before,
                vip,
                etag,
                source,
            } => {
                out.push_str(&format!("~ update {} (etag {etag}, {source})\n", vip.name));
                let old = before.as_ref().map(yaml).unwrap_or_default();
                let new = yaml(vip);
                out.push_str(&line_diff(&old, &new));
            }
            Change::Delete { before, etag } => {
                out.push_str(&format!(
                    "- delete {} (etag {etag}; owner {:?})\n",
                    before.name, before.owner
                ));
            }
        }
    }
    out
}

/// The lines of `new` against `old` by their longest common subsequence:
/// unchanged lines with two spaces, removed with `-`, added with `+`.
fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("    {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] > lcs[i + 1][j]) {
            out.push_str(&format!("+   {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("-   {}\n", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, port: u16) -> Document {
        Document {
            source: format!("{name}.yaml:1"),
            vip: lb_config::Vip {
                name: name.into(),
                address: "192.0.2.1".parse().unwrap(),
                port,
                protocol: lb_config::Protocol::Tcp,
                options: lb_config::VipOptions::default(),
                backends: vec![],
                owner: String::new(),
                health_check: false,
            },
        }
    }

    fn stored(d: &Document, owner: &str, etag: &str) -> pb::VipResource {
        let mut vip = d.vip.clone();
        vip.owner = owner.into();
        pb::VipResource {
            vip: Some(vip.to_proto()),
            etag: etag.into(),
            ..pb::VipResource::default()
        }
    }

    #[test]
    fn creates_updates_and_prunes_only_its_own() {
        let files = [doc("a", 80), doc("b", 81)];
        let listed = [
            stored(&doc("a", 80), "lbctl", "5"),
            stored(&doc("b", 99), "lbctl", "6"),
            stored(&doc("gone", 82), "lbctl", "7"),
            stored(&doc("theirs", 83), "team-b", "8"),
        ];
        let names = |p: &[Change]| p.iter().map(|c| c.name().to_owned()).collect::<Vec<_>>();
        let without = plan(&files, &listed, "lbctl", false);
        assert_eq!(names(&without), ["b"], "a is unchanged, nothing deleted");
        assert!(matches!(&without[0], Change::Update { etag, .. } if etag == "6"));
        let pruned = plan(&files, &listed, "lbctl", true);
        assert_eq!(names(&pruned), ["b", "gone"], "theirs is not ours to prune");
        let fresh = plan(&files, &[], "lbctl", true);
        assert!(fresh.iter().all(|c| matches!(c, Change::Create { .. })));
        let taken = plan(&[doc("theirs", 83)], &listed, "lbctl", false);
        assert_eq!(
            names(&taken),
            ["theirs"],
            "applying takes ownership: an update"
        );
    }

    #[test]
    fn a_line_diff_marks_what_goes_and_what_comes() {
        let d = line_diff("a\nb\nc\n", "a\nx\nc\n");
        assert_eq!(d, "    a\n-   b\n+   x\n    c\n");
    }
}
