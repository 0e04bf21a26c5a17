//! `pipeline`: declarative container benchmarking across CPU architectures and WebAssembly.
//!
//! Layers, each depending only on the ones above it in this list:
//! [`spec`] (YAML types with spans), [`inventory`] (Ansible inventories),
//! [`plan`] (validation, the stage DAG, fingerprints), [`render`] (Dockerfiles);
//! then [`exec`], which walks the DAG and emits [`events`] that the
//! [`journal`] and the other consumers read.

pub mod agent;
pub mod apply;
pub mod backend;
pub mod diagnostic;
pub mod events;
pub mod exec;
pub mod inventory;
pub mod journal;
pub mod lab;
pub mod limits;
pub mod plan;
pub(crate) mod platform;
pub mod progress;
pub(crate) mod records;
pub mod render;
pub mod report;
pub(crate) mod results;
pub mod spec;
pub mod status;
pub(crate) mod system;
pub mod tree;
