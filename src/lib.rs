//! `pipeline`: declarative container benchmarking across CPU architectures and WebAssembly.
//!
//! Layers, each depending only on the ones above it in this list:
//! [`spec`] (YAML types with spans), [`inventory`] (Ansible inventories),
//! [`plan`] (validation, the stage DAG, fingerprints), [`render`] (Dockerfiles);
//! then [`exec`], which walks the DAG and emits [`events`] that the
//! [`journal`] and the other consumers read.
//!
//! Three features choose what is built: `runner` (the default) is the whole
//! program; `agent` is what a measured host runs ([`agent`] and the engines
//! of [`backend`]); `loaders` is the spec and inventory loaders alone.

/// Items of one Cargo feature, so each group below names its feature once.
macro_rules! with_feature {
    ($feature:literal; $($item:item)*) => {
        $(#[cfg(feature = $feature)] $item)*
    };
}

pub mod terms;

with_feature! { "agent";
    pub mod agent;
    pub mod backend;
    pub(crate) mod records;
}

with_feature! { "loaders";
    pub mod diagnostic;
    pub mod inventory;
    pub mod limits;
    pub(crate) mod platform;
    pub mod spec;
}

with_feature! { "runner";
    pub mod apply;
    pub mod events;
    pub mod exec;
    pub mod journal;
    pub mod lab;
    pub mod plan;
    pub mod progress;
    pub mod render;
    pub mod report;
    pub(crate) mod results;
    pub mod status;
    pub(crate) mod system;
    pub mod tree;
}
