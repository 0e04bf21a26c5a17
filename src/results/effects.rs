//! `effects.parquet`: how much running the wasm image changes each metric,
//! for every pair of cells that differ only in the image's target (and so
//! the runtime): same workload, language, variant, host, engine and
//! scenario, one native target and one wasm.
//!
//! The primary effect size is the Hodges–Lehmann shift, wasm − native, in
//! the metric's unit, with Moses' distribution-free interval. Cliff's delta
//! says how often wasm is slower rather than by how much, with a seeded
//! percentile bootstrap interval.

use std::collections::BTreeMap;
use std::path::Path;

use crate::events::RunRecord;
use crate::plan::Plan;

use super::stats::{self, Interval, Shift};
use super::{
    CellColumns, Column, ResultsError, bootstrap_columns, bootstrap_seed, cell_columns,
    metric_values, ok_runs_by_cell, text,
};

/// One metric of one native/wasm pair.
struct Effect {
    native: usize,
    wasm: usize,
    metric: &'static str,
    native_n: usize,
    wasm_n: usize,
    native_median: f64,
    wasm_median: f64,
    shift: Shift,
    cliffs_delta: f64,
    cliffs_delta_ci95: Option<Interval>,
    bootstrap_seed: u64,
}

/// Every (native cell, wasm cell) pair of the plan, by cell index.
fn native_wasm_pairs(plan: &Plan) -> Vec<(usize, usize)> {
    let experiment = &plan.experiment;
    let mut by_setting: BTreeMap<_, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (index, cell) in experiment.cells.iter().enumerate() {
        let image = &experiment.images[cell.image];
        let setting = (
            &image.workload,
            &image.language,
            &image.variant,
            cell.host,
            cell.engine,
            cell.scenario,
        );
        let (native, wasm) = by_setting.entry(setting).or_default();
        if image.target.is_wasm() {
            wasm.push(index);
        } else {
            native.push(index);
        }
    }
    by_setting
        .into_values()
        .flat_map(|(native, wasm)| {
            native
                .into_iter()
                .flat_map(move |n| wasm.clone().into_iter().map(move |w| (n, w)))
        })
        .collect()
}

fn effects(plan: &Plan, runs: &[(usize, RunRecord)]) -> Vec<Effect> {
    let by_cell = ok_runs_by_cell(plan, runs);
    let mut effects = Vec::new();
    for (native, wasm) in native_wasm_pairs(plan) {
        let (Some(native_runs), Some(wasm_runs)) = (by_cell.get(&native), by_cell.get(&wasm))
        else {
            continue;
        };
        for ((metric, native_values), (_, wasm_values)) in metric_values(native_runs)
            .into_iter()
            .zip(metric_values(wasm_runs))
        {
            let (Some(shift), Some(cliffs_delta), Some(native_median), Some(wasm_median)) = (
                stats::hodges_lehmann_shift(&native_values, &wasm_values),
                stats::cliffs_delta(&native_values, &wasm_values),
                stats::median(&native_values),
                stats::median(&wasm_values),
            ) else {
                continue;
            };
            let seed = bootstrap_seed(plan, "cliffs-delta", metric, &[native, wasm]);
            effects.push(Effect {
                native,
                wasm,
                metric,
                native_n: native_values.len(),
                wasm_n: wasm_values.len(),
                native_median,
                wasm_median,
                shift,
                cliffs_delta,
                cliffs_delta_ci95: stats::bootstrap_cliffs_delta(
                    &native_values,
                    &wasm_values,
                    stats::BOOTSTRAP_RESAMPLES,
                    seed,
                ),
                bootstrap_seed: seed,
            });
        }
    }
    effects
}

/// Writes one row per pair and metric that both cells measured; a table
/// with no rows when the experiment has no such pair, so that its absence
/// always means it was not written yet.
pub(super) fn write_effects(
    plan: &Plan,
    runs: &[(usize, RunRecord)],
    path: &Path,
) -> Result<usize, ResultsError> {
    let experiment = &plan.experiment;
    let rows = effects(plan, runs);
    let cell = |index: usize| &experiment.cells[index];
    let image = |index: usize| &experiment.images[cell(index).image];
    let float = |value: fn(&Effect) -> f64| {
        Column::Float(rows.iter().map(|row| Some(value(row))).collect())
    };
    let optional =
        |value: fn(&Effect) -> Option<f64>| Column::Float(rows.iter().map(value).collect());
    let count = |value: fn(&Effect) -> usize| {
        Column::Unsigned(rows.iter().map(|row| Some(value(row) as u64)).collect())
    };
    let natives: Vec<usize> = rows.iter().map(|row| row.native).collect();
    let mut columns = cell_columns(plan, &natives, CellColumns::Shared);
    columns.extend([
        ("metric", false, text(rows.iter().map(|r| r.metric))),
        (
            "native_target",
            false,
            text(rows.iter().map(|r| image(r.native).target.to_string())),
        ),
        (
            "native_runtime",
            false,
            text(rows.iter().map(|r| &cell(r.native).runtime)),
        ),
        (
            "wasm_target",
            false,
            text(rows.iter().map(|r| image(r.wasm).target.to_string())),
        ),
        (
            "wasm_runtime",
            false,
            text(rows.iter().map(|r| &cell(r.wasm).runtime)),
        ),
        ("native_n", false, count(|r| r.native_n)),
        ("wasm_n", false, count(|r| r.wasm_n)),
        ("native_median", false, float(|r| r.native_median)),
        ("wasm_median", false, float(|r| r.wasm_median)),
        ("hl_shift", false, float(|r| r.shift.estimate)),
        (
            "hl_shift_ci95_low",
            true,
            optional(|r| r.shift.ci95.map(|i| i.0)),
        ),
        (
            "hl_shift_ci95_high",
            true,
            optional(|r| r.shift.ci95.map(|i| i.1)),
        ),
        (
            "hl_shift_ci95_exact",
            false,
            Column::Flag(rows.iter().map(|r| Some(r.shift.exact)).collect()),
        ),
        ("cliffs_delta", false, float(|r| r.cliffs_delta)),
        (
            "cliffs_delta_ci95_low",
            true,
            optional(|r| r.cliffs_delta_ci95.map(|i| i.0)),
        ),
        (
            "cliffs_delta_ci95_high",
            true,
            optional(|r| r.cliffs_delta_ci95.map(|i| i.1)),
        ),
    ]);
    columns.extend(bootstrap_columns(rows.iter().map(|r| r.bootstrap_seed)));
    super::write_table(path, columns)?;
    Ok(rows.len())
}
