//! The control loop's memory between passes: the store's keys as last
//! seen, the last good version of each admitted key, and what the maps
//! hold in the form reconcile compares. A pass decides from all three and
//! writes only the difference.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use lb_config::{Keys, Vip, VipId};
use lb_dataplane::{DataplaneError, Programmer};
use lb_reconcile::{Admitted, Desired, InMaps, Limits, Plan, StoredKey, desired, plan};
use lb_store::{Event, KeyValue, Listing};

use crate::apply;

pub struct Reconciler {
    keys: Keys,
    limits: Limits,
    /// Every key under the VIP prefix, decoded, by key.
    view: BTreeMap<String, StoredKey>,
    /// Shared with whoever reports on it (the counters' thread).
    desired: Arc<Desired>,
    /// What the maps hold. Kept in step with each batch applied, and read
    /// from the programmer again after a batch fails.
    programmed: BTreeMap<VipId, InMaps>,
}

impl Reconciler {
    /// A reconciler for a dataplane that holds what `programmer` has.
    pub fn new(keys: Keys, limits: Limits, programmer: &Programmer) -> Self {
        Self {
            keys,
            limits,
            view: BTreeMap::new(),
            desired: Arc::default(),
            programmed: apply::programmed(&programmer.snapshot()),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The last pass's decision.
    pub fn desired(&self) -> &Arc<Desired> {
        &self.desired
    }

    /// Replaces the whole view with a listing: keys absent from it are
    /// deleted, and a key whose `mod_revision` is unchanged keeps its
    /// decoded value (mark and sweep, without decoding it again).
    pub fn replace_all(&mut self, listing: &Listing) {
        let mut view = BTreeMap::new();
        for kv in &listing.kvs {
            let stored = match self.view.remove(&kv.key) {
                Some(known) if known.mod_revision == kv.mod_revision => known,
                _ => self.decode(kv),
            };
            view.insert(kv.key.clone(), stored);
        }
        self.view = view;
    }

    /// Takes one watch event into the view.
    pub fn event(&mut self, event: &Event) {
        match event {
            Event::Put { kv, .. } => {
                let stored = self.decode(kv);
                self.view.insert(kv.key.clone(), stored);
            }
            Event::Delete { key, .. } => {
                self.view.remove(key);
            }
        }
    }

    fn decode(&self, kv: &KeyValue) -> StoredKey {
        StoredKey {
            key: kv.key.clone(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            vip: Vip::decode(&self.keys, &kv.key, &kv.value).map(Arc::new),
        }
    }

    /// Decides from the view and writes the difference in one batch;
    /// with nothing to change it writes nothing. A key whose value turned
    /// invalid keeps its last good version. When the batch fails the maps
    /// are unchanged (the programmer takes a failed batch back) and the
    /// decision is kept, so the next pass tries again.
    /// Returns the plan it carried out.
    pub fn reconcile(&mut self, programmer: &mut Programmer) -> Result<Plan, DataplaneError> {
        let last_good: HashMap<String, Admitted> = self
            .desired
            .vips
            .values()
            .map(|a| (a.key.clone(), a.clone()))
            .collect();
        self.desired = Arc::new(desired(self.view.values(), self.limits, &last_good));
        let plan = plan(&self.desired, &self.programmed);
        if !plan.is_empty() {
            if let Err(e) = programmer.apply(&apply::batch(&plan)) {
                self.programmed = apply::programmed(&programmer.snapshot());
                return Err(e);
            }
            for id in &plan.removals {
                self.programmed.remove(id);
            }
            for admitted in &plan.upserts {
                self.programmed
                    .insert(admitted.vip.id(), InMaps::of(admitted));
            }
        }
        Ok(plan)
    }
}
