//! Last stage: what this node has done with the store's VIPs, as one
//! value (served by the API, logged and exported), and the log lines that
//! report each change of it once.

use std::{collections::BTreeMap, sync::Arc};

use lb_config::{ConfigError, Rejection};
use lb_dataplane::{Applied, Usage};
use lb_reconcile::{Desired, Refusal};
use lb_store::Revision;

/// Where the controller is with the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// No listing yet: the store has not answered.
    Waiting,
    /// Listed, or watching again after an interruption; not yet every
    /// event reconciled.
    Syncing,
    /// Every event seen is reconciled into the maps.
    InSync,
}

impl SyncState {
    pub const ALL: [SyncState; 3] = [SyncState::Waiting, SyncState::Syncing, SyncState::InSync];

    pub const fn as_str(self) -> &'static str {
        match self {
            SyncState::Waiting => "waiting",
            SyncState::Syncing => "syncing",
            SyncState::InSync => "in_sync",
        }
    }
}

/// Why a key's current value is not what the maps hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Invalid now; its last good version stays programmed.
    Stale(ConfigError),
    /// Not programmed at all.
    Refused(Refusal),
}

// Why the node refused a valid key, as labels.
const DUPLICATE: &str = "duplicate";
const OVER_CAPACITY: &str = "over_capacity";

impl Problem {
    /// The metric label: the config rejection's, or why the node refused.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::Stale(e) | Problem::Refused(Refusal::Invalid(e)) => e.kind.as_str(),
            Problem::Refused(Refusal::Duplicate { .. }) => DUPLICATE,
            Problem::Refused(Refusal::OverCapacity { .. }) => OVER_CAPACITY,
        }
    }

    /// Every value [`Self::reason`] takes.
    pub fn reasons() -> impl Iterator<Item = &'static str> {
        Rejection::ALL
            .iter()
            .map(|r| r.as_str())
            .chain([DUPLICATE, OVER_CAPACITY])
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Stale(e) => write!(
                f,
                "stale: its last good version stays programmed; the new one is refused: {}: {}",
                e.field, e.reason
            ),
            Problem::Refused(Refusal::Invalid(e)) => {
                write!(f, "refused: {}: {}", e.field, e.reason)
            }
            Problem::Refused(Refusal::Duplicate { winner }) => {
                write!(f, "refused: the same VIP as {winner}, which is older")
            }
            Problem::Refused(Refusal::OverCapacity { what, limit }) => write!(
                f,
                "refused: this node holds {limit} {what} and older VIPs fill them"
            ),
        }
    }
}

/// A node's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub state: SyncState,
    /// The newest store revision seen, listed or watched.
    pub store_revision: Revision,
    /// Every store event on the VIP prefix up to this revision is
    /// reconciled into the maps.
    pub applied_revision: Revision,
    pub programmed_vips: usize,
    /// By key: every key not programmed as it stands now.
    pub problems: BTreeMap<String, Problem>,
    pub usage: Usage,
    /// The last store or dataplane failure, while it lasts.
    pub error: Option<String>,
    /// The last reconcile's decision: what the store asks of this node.
    pub desired: Arc<Desired>,
    /// What the controller has programmed, as its book says.
    pub applied: Applied,
}

impl NodeStatus {
    pub fn new(usage: Usage) -> Self {
        Self {
            state: SyncState::Waiting,
            store_revision: 0,
            applied_revision: 0,
            programmed_vips: 0,
            problems: BTreeMap::new(),
            usage,
            error: None,
            desired: Arc::default(),
            applied: Applied::default(),
        }
    }

    /// Takes a reconcile decision's VIPs and problems.
    pub fn decided(&mut self, desired: &Arc<Desired>) {
        self.desired = Arc::clone(desired);
        self.programmed_vips = desired.vips.len();
        self.problems = desired
            .vips
            .values()
            .filter_map(|a| Some((a.key.clone(), Problem::Stale(a.stale.clone()?))))
            .chain(
                desired
                    .refused
                    .iter()
                    .map(|r| (r.key.clone(), Problem::Refused(r.refusal.clone()))),
            )
            .collect();
    }

    pub fn stale_vips(&self) -> usize {
        self.problems
            .values()
            .filter(|p| matches!(p, Problem::Stale(_)))
            .count()
    }
}

/// What changed between two statuses, for the log: each new or changed
/// problem once, each one resolved once.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes<'s> {
    pub raised: Vec<(&'s str, &'s Problem)>,
    pub resolved: Vec<&'s str>,
}

pub fn changes<'s>(before: &'s NodeStatus, after: &'s NodeStatus) -> Changes<'s> {
    Changes {
        raised: after
            .problems
            .iter()
            .filter(|(key, p)| before.problems.get(*key) != Some(*p))
            .map(|(key, p)| (key.as_str(), p))
            .collect(),
        resolved: before
            .problems
            .keys()
            .filter(|key| !after.problems.contains_key(*key))
            .map(String::as_str)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(key: &str, field: &str) -> Problem {
        Problem::Refused(Refusal::Invalid(ConfigError {
            key: key.into(),
            field: field.into(),
            reason: "bad".into(),
            kind: Rejection::Invalid,
        }))
    }

    #[test]
    fn a_problem_is_raised_once_and_resolved_once() {
        let mut a = NodeStatus::new(Usage::default());
        a.problems.insert("/k/a".into(), invalid("/k/a", "port"));
        let mut b = a.clone();
        assert_eq!(changes(&a, &b), Changes::default(), "unchanged: no log");
        b.problems.insert("/k/a".into(), invalid("/k/a", "address"));
        b.problems.insert("/k/b".into(), invalid("/k/b", "port"));
        let c = changes(&a, &b);
        assert_eq!(
            c.raised.iter().map(|r| r.0).collect::<Vec<_>>(),
            ["/k/a", "/k/b"],
            "a changed problem is raised again"
        );
        let empty = NodeStatus::new(Usage::default());
        assert_eq!(changes(&b, &empty).resolved, ["/k/a", "/k/b"]);
    }
}
