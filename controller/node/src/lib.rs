//! The node controller: the stages of the control path wired together on
//! one node. Store (`lb-store`) → config (`lb-config`) → reconcile
//! (`lb-reconcile`) → apply (here, into `lb-dataplane`) → status, and the
//! API that writes the store and reads the status (`api`).

pub mod api;
pub mod apply;
pub mod daemon;
pub mod gateway;
pub mod metrics;
pub mod preflight;
pub mod reconciler;
pub mod settings;
pub mod status;
