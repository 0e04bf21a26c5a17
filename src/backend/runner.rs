//! What the runner talks to itself, behind traits that tests fake: the
//! engine that builds, the registry, and the way to the measured hosts.

use std::sync::Arc;

use super::builder::{BaseRecipe, BuildContext, BuildError, EngineBuilder};
use super::host::{BoxFuture, HostConnector};
use super::registry::{ImageRef, IndexEntry, Manifest, RegistryClient, RegistryError};
use super::vendor;
use crate::platform::Platform;
use crate::records::ImageRecord;

/// Everything an apply talks to, in one place: the engine that builds, the
/// registry, and the way to the measured hosts. Tests swap in fakes.
#[derive(Clone)]
pub struct Backends {
    pub builder: Arc<dyn ImageBuilder>,
    pub registry: Arc<dyn Registry>,
    pub hosts: Arc<dyn HostConnector>,
    pub vendor: Arc<dyn vendor::DependencyVendor>,
    /// What hosts pull with; the builder and the registry client hold their own.
    pub registry_credentials: Option<super::credentials::RegistryCredentials>,
}

/// Builds images and puts them in the registry.
pub trait ImageBuilder: Send + Sync {
    /// Makes a base image from its recipe (`parent` is the base it is built from).
    fn base<'a>(
        &'a self,
        recipe: &'a BaseRecipe,
        parent: Option<&'a BaseRecipe>,
        log: &'a dyn WorkLog,
    ) -> BoxFuture<'a, Result<ImageRecord, BuildError>>;
    /// Builds one image from a rendered Dockerfile and its context folders.
    fn build<'a>(
        &'a self,
        image_ref: &'a str,
        platform: &'a Platform,
        context: &'a BuildContext<'a>,
        log: &'a dyn WorkLog,
    ) -> BoxFuture<'a, Result<ImageRecord, BuildError>>;
    /// Pushes a built image to its registry: as a single-platform image for
    /// `platform` when one is given, else as the engine holds it.
    fn push<'a>(
        &'a self,
        image_ref: &'a str,
        platform: Option<&'a Platform>,
        log: &'a dyn WorkLog,
    ) -> BoxFuture<'a, Result<(), BuildError>>;
}

/// What the pipeline asks of the registry itself.
pub trait Registry: Send + Sync {
    fn manifest<'a>(
        &'a self,
        image: &'a ImageRef,
    ) -> BoxFuture<'a, Result<Manifest, RegistryError>>;
    /// Publishes an index over platform manifests; returns its digest and size.
    fn put_index<'a>(
        &'a self,
        image: &'a ImageRef,
        entries: &'a [IndexEntry],
    ) -> BoxFuture<'a, Result<(String, u64), RegistryError>>;
}

impl ImageBuilder for EngineBuilder {
    fn base<'a>(
        &'a self,
        recipe: &'a BaseRecipe,
        parent: Option<&'a BaseRecipe>,
        log: &'a dyn WorkLog,
    ) -> BoxFuture<'a, Result<ImageRecord, BuildError>> {
        Box::pin(async move {
            let record = EngineBuilder::base(self, recipe, parent, log).await?;
            // Image builds on other engines reach bases through the registry.
            self.push_as_is(&record.image_ref, log).await?;
            Ok(record)
        })
    }

    fn build<'a>(
        &'a self,
        image_ref: &'a str,
        platform: &'a Platform,
        context: &'a BuildContext<'a>,
        log: &'a dyn WorkLog,
    ) -> BoxFuture<'a, Result<ImageRecord, BuildError>> {
        Box::pin(EngineBuilder::build(
            self, image_ref, platform, context, log,
        ))
    }

    fn push<'a>(
        &'a self,
        image_ref: &'a str,
        platform: Option<&'a Platform>,
        log: &'a dyn WorkLog,
    ) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async move {
            match platform {
                Some(platform) => self.publish(image_ref, platform, log).await.map(drop),
                None => self.push_as_is(image_ref, log).await,
            }
        })
    }
}

impl Registry for RegistryClient {
    fn manifest<'a>(
        &'a self,
        image: &'a ImageRef,
    ) -> BoxFuture<'a, Result<Manifest, RegistryError>> {
        Box::pin(RegistryClient::manifest(self, image))
    }

    fn put_index<'a>(
        &'a self,
        image: &'a ImageRef,
        entries: &'a [IndexEntry],
    ) -> BoxFuture<'a, Result<(String, u64), RegistryError>> {
        Box::pin(RegistryClient::put_index(self, image, entries))
    }
}

/// Where a backend sends the lines and byte counts of long work (a build,
/// a push), so it needs to know nothing of stages or events.
pub trait WorkLog: Send + Sync {
    fn line(&self, line: String);
    fn progress(&self, _done: u64, _total: Option<u64>) {}
}
