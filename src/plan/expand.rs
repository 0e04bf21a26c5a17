//! [`Experiment`] → [`StageGraph`]: one stage per unit of work, edges only
//! where one stage consumes another's output.

use std::collections::HashMap;

use petgraph::graph::NodeIndex;

use super::fingerprint::{Fingerprint, FingerprintBuilder};
use super::graph::{GraphError, RunSubject, Stage, StageGraph, StageId, StageKind, StageWork};
use super::model::{Cell, Experiment};
use crate::spec::{RunOrder, Scenario};

pub fn expand(experiment: &Experiment) -> Result<StageGraph, GraphError> {
    let measure = experiment.measure;
    let runs_per_cell = (measure.repetitions + measure.warmup) as usize;
    let pulls = experiment
        .cells
        .iter()
        .filter(|cell| cell.scenario == Scenario::Cached)
        .count();
    let stage_estimate = experiment.bases.len()
        + experiment.images.len() * 3
        + experiment.hosts.len()
        + pulls
        + experiment.cells.len() * runs_per_cell
        + 2;
    let mut graph = StageGraph::with_capacity(stage_estimate, stage_estimate * 3);
    let stage = |path: &str, fingerprint: Fingerprint, work: StageWork| {
        let kind = work.kind();
        Stage {
            id: StageId::new(kind, path),
            kind,
            fingerprint,
            work,
            limit: experiment.limits.get(kind),
        }
    };

    let mut base_nodes: HashMap<&str, NodeIndex> = HashMap::new();
    for (index, base) in experiment.bases.iter().enumerate() {
        // The recipe's fingerprint names the cached root file system; the
        // stage also pushes, so where to is part of what it does.
        let base_fp = FingerprintBuilder::new("base")
            .fingerprint("recipe", base.fingerprint)
            .str("ref", &base.image_ref)
            .finish();
        let node = graph.add(stage(&base.name, base_fp, StageWork::Base { base: index }))?;
        if let Some(from) = &base.from {
            graph.need_id(node, &StageId::new(StageKind::Base, from))?;
        }
        base_nodes.insert(&base.name, node);
    }

    // One vendor stage per workload and language; every build from those
    // sources reads its tree.
    let mut vendor_nodes: HashMap<(&str, &str), (NodeIndex, Fingerprint)> = HashMap::new();
    for (index, image) in experiment.images.iter().enumerate() {
        let Some(vendor) = &image.vendor else {
            continue;
        };
        let group = (image.workload.as_str(), image.language.as_str());
        if vendor_nodes.contains_key(&group) {
            continue;
        }
        let path = format!("{}/{}", image.workload, image.language);
        let node = graph.add(stage(&path, vendor.key, StageWork::Vendor { image: index }))?;
        vendor_nodes.insert(group, (node, vendor.key));
    }

    // render → build → push per image; bases feed the builds that use them.
    let mut push_nodes = Vec::with_capacity(experiment.images.len());
    let mut push_fingerprints = Vec::with_capacity(experiment.images.len());
    for (index, image) in experiment.images.iter().enumerate() {
        let path = image.path();
        let mut render_fp = FingerprintBuilder::new("render");
        render_fp
            .fingerprint("templates", image.template_tree)
            .str("template", &image.template.to_string_lossy())
            .str(
                "inputs",
                &image.template_inputs(&experiment.name).to_string(),
            );
        for base in &image.bases {
            if let Some(base_image) = experiment.bases.iter().find(|b| &b.name == base) {
                render_fp.fingerprint("base", base_image.fingerprint);
            }
        }
        let render_fp = render_fp.finish();
        let render = graph.add(stage(&path, render_fp, StageWork::Render { image: index }))?;
        // Rendering labels the image with its base's toolchain versions, so it needs the base built.
        for base in &image.bases {
            match base_nodes.get(base.as_str()) {
                Some(node) => graph.need(render, *node),
                None => graph.need_id(render, &StageId::new(StageKind::Base, base))?,
            }
        }

        let vendor = vendor_nodes.get(&(image.workload.as_str(), image.language.as_str()));
        let mut build_fp = FingerprintBuilder::new("build");
        build_fp
            .fingerprint("render", render_fp)
            .fingerprint("sources", image.source_tree);
        if let Some((_, vendor_fp)) = vendor {
            build_fp.fingerprint("vendor", *vendor_fp);
        }
        // Absent for other images, so their fingerprints stay as they were.
        if image.needs_precompiler() {
            match experiment.precompiler.digest {
                Some(digest) => build_fp.fingerprint("precompiler", digest),
                None => build_fp.str("precompiler", "missing"),
            };
        }
        let build_fp = build_fp.finish();
        let build = graph.add(stage(&path, build_fp, StageWork::Build { image: index }))?;
        graph.need(build, render);
        if let Some((vendor_node, _)) = vendor {
            graph.need(build, *vendor_node);
        }
        for base in &image.bases {
            if let Some(node) = base_nodes.get(base.as_str()) {
                graph.need(build, *node);
            }
        }

        let push_fp = FingerprintBuilder::new("push")
            .fingerprint("build", build_fp)
            .str("ref", &image.image_ref())
            .finish();
        let push = graph.add(stage(&path, push_fp, StageWork::Push { image: index }))?;
        graph.need(push, build);
        push_nodes.push(push);
        push_fingerprints.push(push_fp);
    }

    // One index per workload/language/variant over all of its targets.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (index, image) in experiment.images.iter().enumerate() {
        let group = image.group_path();
        match groups.iter_mut().find(|(path, _)| *path == group) {
            Some((_, members)) => members.push(index),
            None => groups.push((group, vec![index])),
        }
    }
    for (group, members) in groups {
        let mut fingerprint = FingerprintBuilder::new("index");
        fingerprint.str("ref", &experiment.images[members[0]].index_ref());
        for &member in &members {
            fingerprint.fingerprint("push", push_fingerprints[member]);
        }
        let node = graph.add(stage(
            &group,
            fingerprint.finish(),
            StageWork::Index {
                images: members.clone(),
            },
        ))?;
        for &member in &members {
            graph.need(node, push_nodes[member]);
        }
    }

    let mut prepare_nodes = Vec::with_capacity(experiment.hosts.len());
    for (index, host) in experiment.hosts.iter().enumerate() {
        let fingerprint = FingerprintBuilder::new("prepare-host")
            .fingerprint("host", experiment.host_fingerprints[index])
            .finish();
        prepare_nodes.push(graph.add(stage(
            &host.name,
            fingerprint,
            StageWork::PrepareHost { host: index },
        ))?);
    }

    // Cached cells share one pull per image, host and engine that puts the image in place.
    let mut pull_nodes: HashMap<(usize, usize, crate::spec::Engine), (NodeIndex, Fingerprint)> =
        HashMap::new();
    for cell in experiment
        .cells
        .iter()
        .filter(|cell| cell.scenario == Scenario::Cached)
    {
        let key = (cell.image, cell.host, cell.engine);
        if pull_nodes.contains_key(&key) {
            continue;
        }
        let image = &experiment.images[cell.image];
        let host = &experiment.hosts[cell.host];
        let path = format!("{}/{}/{}", image.path(), host.name, cell.engine.as_str());
        let fingerprint = FingerprintBuilder::new("pull")
            .fingerprint("push", push_fingerprints[cell.image])
            .fingerprint("host", experiment.host_fingerprints[cell.host])
            .str("engine", cell.engine.as_str())
            .finish();
        let node = graph.add(stage(
            &path,
            fingerprint,
            StageWork::Pull {
                image: cell.image,
                host: cell.host,
                engine: cell.engine,
            },
        ))?;
        graph.need(node, push_nodes[cell.image]);
        graph.need(node, prepare_nodes[cell.host]);
        pull_nodes.insert(key, (node, fingerprint));
    }

    // Runs, in each host's execution order.
    let mut run_nodes = Vec::with_capacity(experiment.cells.len() * runs_per_cell);
    for order in run_order(experiment) {
        for (sequence, (cell_index, iteration, warmup)) in order.into_iter().enumerate() {
            let cell = &experiment.cells[cell_index];
            let image = &experiment.images[cell.image];
            let host = &experiment.hosts[cell.host];
            let round = if warmup {
                format!("warmup-{iteration}")
            } else {
                iteration.to_string()
            };
            let path = format!(
                "{}/{}/{}/{}/{round}",
                image.path(),
                host.name,
                cell.engine.as_str(),
                cell.scenario.as_str()
            );
            let pull = pull_nodes
                .get(&(cell.image, cell.host, cell.engine))
                .filter(|_| cell.scenario == Scenario::Cached);
            let fingerprint = run_fingerprint(
                experiment,
                cell,
                &push_fingerprints,
                pull.map(|(_, fp)| *fp),
                &round,
            );
            let node = graph.add(stage(
                &path,
                fingerprint,
                StageWork::Run(RunSubject {
                    cell: cell_index,
                    iteration,
                    warmup,
                    sequence: u32::try_from(sequence).unwrap_or(u32::MAX),
                }),
            ))?;
            graph.need(node, push_nodes[cell.image]);
            graph.need(node, prepare_nodes[cell.host]);
            if let Some((pull_node, _)) = pull {
                graph.need(node, *pull_node);
            }
            run_nodes.push((node, fingerprint));
        }
    }

    let mut aggregate_fp = FingerprintBuilder::new("aggregate");
    aggregate_fp.str("experiment", &experiment.name);
    // Sorted: the aggregate counts runs, whatever order they run in.
    let mut run_fingerprints: Vec<Fingerprint> = run_nodes.iter().map(|(_, fp)| *fp).collect();
    run_fingerprints.sort_unstable();
    for fingerprint in run_fingerprints {
        aggregate_fp.fingerprint("run", fingerprint);
    }
    let aggregate = graph.add(stage("", aggregate_fp.finish(), StageWork::Aggregate))?;
    for (node, _) in run_nodes {
        graph.need(aggregate, node);
    }
    Ok(graph)
}

fn run_fingerprint(
    experiment: &Experiment,
    cell: &Cell,
    push_fingerprints: &[Fingerprint],
    pull: Option<Fingerprint>,
    round: &str,
) -> Fingerprint {
    let image = &experiment.images[cell.image];
    let mut builder = FingerprintBuilder::new("run");
    builder
        .fingerprint("push", push_fingerprints[cell.image])
        .fingerprint("host", experiment.host_fingerprints[cell.host])
        .str("engine", cell.engine.as_str())
        .str("runtime", &cell.runtime)
        .str("scenario", cell.scenario.as_str())
        .str("round", round)
        .str("args", &image.run.args.join("\u{0}"));
    // Absent rather than empty, so runs with a pattern keep their fingerprints.
    if let Some(pattern) = &image.run.result_pattern {
        builder.str("result", pattern);
    }
    builder
        .str("marker", &image.run.marker.pattern)
        .str("marker_unit", &format!("{:?}", image.run.marker.unit));
    if let Some(pull) = pull {
        builder.fingerprint("pull", pull);
    }
    builder.finish()
}

/// Per host, `(cell, iteration, warmup)` in the order the runs execute:
/// warm-ups first, then repetition-major (interleaved) or a seeded shuffle.
fn run_order(experiment: &Experiment) -> Vec<Vec<(usize, u32, bool)>> {
    let measure = experiment.measure;
    let mut per_host: Vec<Vec<usize>> = vec![Vec::new(); experiment.hosts.len()];
    for (index, cell) in experiment.cells.iter().enumerate() {
        per_host[cell.host].push(index);
    }
    per_host
        .into_iter()
        .enumerate()
        .map(|(host, cells)| {
            let mut order =
                Vec::with_capacity(cells.len() * (measure.repetitions + measure.warmup) as usize);
            for round in 0..measure.warmup {
                order.extend(cells.iter().map(|&cell| (cell, round, true)));
            }
            let first_measured = order.len();
            for round in 0..measure.repetitions {
                order.extend(cells.iter().map(|&cell| (cell, round, false)));
            }
            if measure.order == RunOrder::Shuffled {
                let mut rng =
                    SplitMix64(measure.seed ^ (host as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                shuffle(&mut order[first_measured..], &mut rng);
            }
            order
        })
        .collect()
}

/// A tiny, fully specified generator, so a recorded seed reproduces the
/// same order with any version of this tool.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` by rejection, so no index is favoured.
    fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let value = self.next();
            if value < zone {
                return value % bound;
            }
        }
    }
}

fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for index in (1..items.len()).rev() {
        // `below` returns less than `index + 1`, which came from a usize.
        let other = usize::try_from(rng.below(index as u64 + 1)).unwrap_or(index);
        items.swap(index, other);
    }
}
