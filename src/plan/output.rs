//! The three views of a plan: a readable table, JSON for machines, Graphviz dot.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::Plan;
use super::graph::{StageKind, StageWork};
use super::model::WorkloadImages;
use crate::inventory::Connection;

/// Stage details as JSON fields, beside id, kind, needs and fingerprint.
fn stage_details(plan: &Plan, work: &StageWork) -> serde_json::Map<String, Value> {
    let experiment = &plan.experiment;
    let mut details = serde_json::Map::new();
    let image_fields = |details: &mut serde_json::Map<String, Value>, index: usize| {
        let image = &experiment.images[index];
        details.insert("workload".into(), json!(image.workload));
        details.insert("language".into(), json!(image.language));
        details.insert("variant".into(), json!(image.variant));
        details.insert("target".into(), json!(image.target.to_string()));
        details.insert(
            "platform".into(),
            json!(image.target.oci_platform().to_string()),
        );
        details.insert("image".into(), json!(image.image_ref()));
    };
    match work {
        StageWork::Base { base } => {
            let base = &experiment.bases[*base];
            details.insert("base".into(), json!(base.name));
            details.insert("image".into(), json!(base.image_ref));
        }
        StageWork::Vendor { image } => {
            let image = &experiment.images[*image];
            details.insert("workload".into(), json!(image.workload));
            details.insert("language".into(), json!(image.language));
            if let Some(vendor) = &image.vendor {
                details.insert("command".into(), json!(vendor.command));
                details.insert("sources".into(), json!(vendor.sources));
            }
        }
        StageWork::Render { image } | StageWork::Build { image } | StageWork::Push { image } => {
            image_fields(&mut details, *image);
            details.insert("template".into(), json!(experiment.images[*image].template));
        }
        StageWork::Index { images } => {
            image_fields(&mut details, images[0]);
            details.remove("target");
            details.remove("platform");
            details.insert(
                "image".into(),
                json!(experiment.images[images[0]].index_ref()),
            );
            let platforms: Vec<String> = images
                .iter()
                .map(|&i| experiment.images[i].target.oci_platform().to_string())
                .collect();
            details.insert("platforms".into(), json!(platforms));
        }
        StageWork::PrepareHost { host } => {
            let host = &experiment.hosts[*host];
            details.insert("host".into(), json!(host.name));
            details.insert("platform".into(), json!(host.platform.to_string()));
            details.insert("engines".into(), json!(host.engines));
            details.insert("runtimes".into(), json!(host.runtimes));
        }
        StageWork::Pull {
            image,
            host,
            engine,
        } => {
            image_fields(&mut details, *image);
            details.insert("host".into(), json!(experiment.hosts[*host].name));
            details.insert("engine".into(), json!(engine.as_str()));
        }
        StageWork::Run(run) => {
            let cell = &experiment.cells[run.cell];
            image_fields(&mut details, cell.image);
            details.insert("host".into(), json!(experiment.hosts[cell.host].name));
            details.insert("engine".into(), json!(cell.engine.as_str()));
            details.insert("runtime".into(), json!(cell.runtime));
            details.insert("scenario".into(), json!(cell.scenario.as_str()));
            details.insert("iteration".into(), json!(run.iteration));
            details.insert("warmup".into(), json!(run.warmup));
            details.insert("sequence".into(), json!(run.sequence));
        }
        StageWork::Aggregate => {}
    }
    details
}

pub fn to_json(plan: &Plan) -> Value {
    let experiment = &plan.experiment;
    let counts = plan.graph.count_by_kind();
    let counts: serde_json::Map<String, Value> = StageKind::ALL
        .iter()
        .map(|kind| (kind.as_str().to_string(), json!(counts[kind.index()])))
        .collect();
    let stages: Vec<Value> = plan
        .graph
        .stages()
        .map(|(node, stage)| {
            let mut object = serde_json::Map::new();
            object.insert("id".into(), json!(stage.id));
            object.insert("kind".into(), json!(stage.kind));
            object.insert("needs".into(), json!(plan.graph.needs(node)));
            object.insert("fingerprint".into(), json!(stage.fingerprint));
            object.extend(stage_details(plan, &stage.work));
            object.insert(
                "timeout_s".into(),
                json!(stage.limit.timeout.map(|t| t.as_secs())),
            );
            object.insert("retries".into(), json!(stage.limit.retries));
            Value::Object(object)
        })
        .collect();
    let images: Vec<Value> = experiment
        .workload_images
        .iter()
        .map(|summary| {
            json!({
                "workload": summary.workload,
                "planned": summary.planned(),
                "run": summary.run,
                "unrun": summary.unrun,
                "not_planned": summary.not_planned,
                "why": images_why(summary),
            })
        })
        .collect();
    json!({
        "experiment": experiment.name,
        "description": experiment.description,
        "registry": experiment.registry,
        "measure": experiment.measure,
        "counts": counts,
        "images": images,
        "stages": stages,
    })
}

pub fn to_dot(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&plan.experiment.name));
    out.push_str("  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\", fontsize=10];\n");
    for (_, stage) in plan.graph.stages() {
        let _ = writeln!(
            out,
            "  {} [label={}, fillcolor={}];",
            quote(stage.id.as_str()),
            quote(&format!("{}\\n{}", stage.id, stage.fingerprint.short())),
            quote(kind_color(stage.kind))
        );
    }
    for (node, stage) in plan.graph.stages() {
        for need in plan.graph.needs(node) {
            let _ = writeln!(
                out,
                "  {} -> {};",
                quote(need.as_str()),
                quote(stage.id.as_str())
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Why a workload has the images it has, in one line.
fn images_why(summary: &WorkloadImages) -> String {
    // A workload is either measured, and then only its run images are
    // planned, or not measured at all, and then all of them are.
    let mut why = if summary.unrun == 0 {
        "every one runs".to_string()
    } else {
        format!(
            "none runs: no run block measures {}, so they are built for the images table",
            summary.workload
        )
    };
    if !summary.not_planned.is_empty() {
        let prefix = format!("{}/", summary.workload);
        let paths: Vec<&str> = summary
            .not_planned
            .iter()
            .map(|path| path.strip_prefix(&prefix).unwrap_or(path))
            .collect();
        let _ = write!(
            why,
            "; {} left out, no run needs {}: {}",
            paths.len(),
            if paths.len() == 1 { "it" } else { "them" },
            paths.join(", ")
        );
    }
    why
}

fn kind_color(kind: StageKind) -> &'static str {
    match kind {
        StageKind::Base => "#e0e0e0",
        StageKind::Vendor => "#fce5cd",
        StageKind::Render => "#fff2cc",
        StageKind::Build => "#ffe0b2",
        StageKind::Push | StageKind::Index => "#d9ead3",
        StageKind::PrepareHost => "#cfe2f3",
        StageKind::Pull => "#d9d2e9",
        StageKind::Run => "#f4cccc",
        StageKind::Aggregate => "#ffffff",
    }
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The readable form: a summary, then each kind with its stages. Runs are
/// shown one line per cell, since each cell repeats the same run many times.
pub fn to_table(plan: &Plan) -> String {
    let experiment = &plan.experiment;
    let counts = plan.graph.count_by_kind();
    let mut out = String::new();
    let _ = writeln!(out, "experiment  {}", experiment.name);
    if let Some(description) = &experiment.description {
        let description = crate::diagnostic::escape_control(description);
        let _ = writeln!(out, "            {description}");
    }
    let _ = writeln!(out, "registry    {}", experiment.registry);
    let measure = experiment.measure;
    let order = match measure.order {
        crate::spec::RunOrder::Interleaved => "interleaved".to_string(),
        crate::spec::RunOrder::Shuffled => format!("shuffled, seed {}", measure.seed),
    };
    let _ = writeln!(
        out,
        "measure     {} repetition{}, {} warm-up, {order}",
        measure.repetitions,
        if measure.repetitions == 1 { "" } else { "s" },
        measure.warmup
    );
    if let Some(until) = measure.until {
        let _ = writeln!(
            out,
            "            until the 95 % interval of the median {} is within {} % of it, after {} to {} runs",
            until.metric.as_str(),
            until.ci_width * 100.0,
            until.min,
            measure.repetitions
        );
    }
    for (index, host) in experiment.hosts.iter().enumerate() {
        let via = match &host.connection {
            Connection::Local => "local".to_string(),
            Connection::Ssh { address, port, .. } => format!("ssh {address}:{port}"),
        };
        let _ = writeln!(
            out,
            "{}{} ({}, {via}, engines {}, runtimes {})",
            if index == 0 {
                "hosts       "
            } else {
                "            "
            },
            host.name,
            host.platform,
            host.engines.join("+"),
            host.runtimes.join("+")
        );
    }
    let summary: Vec<String> = StageKind::ALL
        .iter()
        .filter(|kind| counts[kind.index()] > 0)
        .map(|kind| format!("{} {}", kind, counts[kind.index()]))
        .collect();
    let _ = writeln!(
        out,
        "stages      {} ({})",
        plan.graph.len(),
        summary.join(", ")
    );
    let name_width = experiment
        .workload_images
        .iter()
        .map(|summary| summary.workload.len())
        .max()
        .unwrap_or(0);
    for (index, summary) in experiment.workload_images.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}{:name_width$}  {} image{}: {}",
            if index == 0 {
                "images      "
            } else {
                "            "
            },
            summary.workload,
            summary.planned(),
            if summary.planned() == 1 { "" } else { "s" },
            images_why(summary)
        );
    }

    for kind in StageKind::ALL {
        if counts[kind.index()] == 0 {
            continue;
        }
        let _ = writeln!(out, "\n{kind} ({})", counts[kind.index()]);
        let mut rows: Vec<[String; 3]> = Vec::new();
        if kind == StageKind::Run {
            // One row per cell: the id up to the scenario, with its run count.
            let mut cells: Vec<(String, usize, usize)> = Vec::new();
            for (_, stage) in plan.graph.stages().filter(|(_, stage)| stage.kind == kind) {
                let id = stage.id.as_str();
                let cell_path = id.rsplit_once('/').map_or(id, |(head, _)| head).to_string();
                let warmup = matches!(&stage.work, StageWork::Run(run) if run.warmup);
                match cells.iter_mut().find(|(path, _, _)| *path == cell_path) {
                    Some((_, measured, warmups)) => *if warmup { warmups } else { measured } += 1,
                    None => cells.push((cell_path, usize::from(!warmup), usize::from(warmup))),
                }
            }
            for (path, measured, warmups) in cells {
                let runs = if warmups > 0 {
                    format!("{measured} runs + {warmups} warm-up")
                } else {
                    format!("{measured} runs")
                };
                rows.push([format!("{path}/*"), runs, String::new()]);
            }
        } else {
            for (node, stage) in plan.graph.stages().filter(|(_, stage)| stage.kind == kind) {
                let needs = plan.graph.needs(node);
                let needs = match needs.len() {
                    0 => "-".to_string(),
                    1..=2 => needs
                        .iter()
                        .map(|id| id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    n => format!("{n} stages"),
                };
                rows.push([stage.id.to_string(), stage.fingerprint.short(), needs]);
            }
        }
        let width = rows.iter().map(|row| row[0].len()).max().unwrap_or(0);
        let width_mid = rows.iter().map(|row| row[1].len()).max().unwrap_or(0);
        for [id, middle, needs] in rows {
            let line = if needs.is_empty() {
                format!("  {id:width$}  {middle}")
            } else {
                format!("  {id:width$}  {middle:width_mid$}  needs {needs}")
            };
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    out
}
