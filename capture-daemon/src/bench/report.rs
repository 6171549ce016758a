//! The bench's report: a terminal table, `report.json` (its schema is in
//! `docs/bench-report.md`) and a self-contained `report.html` whose plots are SVG drawn
//! with plotters.
use std::fmt::Write as _;
use std::time::SystemTime;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::Serialize;

use super::search::{Found, SearchSettings, TrialKind, TrialOutcome};
use super::system::Environment;
use super::trial::Trial;
use super::{FrameSize, Mode};

/// The schema of `report.json`, bumped when a field changes meaning.
pub const SCHEMA: &str = "ringcap-bench/1";

/// What the search found for one mode and frame size.
#[derive(Clone, Debug, Serialize)]
pub struct SizeResult {
    pub mode: Mode,
    pub size: String,
    /// Mean frame size with FCS (IMIX: its mean).
    pub frame_bytes: f64,
    pub zero_loss_pps: Option<f64>,
    /// The zero-loss rate in Gbit/s on the wire (layer 1: preamble and gap counted).
    pub zero_loss_gbps: Option<f64>,
    pub confirmed: bool,
    /// The traffic source's full speed lost nothing: the capture may go faster.
    pub source_limited: bool,
    /// Where the slowest lossy trial lost first.
    pub limited_by: Option<String>,
    /// The trial that established the rate (the confirmation run).
    pub at_trial: Option<usize>,
    pub write_mb_per_s: Option<f64>,
    pub compression_ratio: Option<f64>,
    /// Bytes on disk per captured frame at that rate.
    pub disk_bytes_per_frame: Option<f64>,
    pub cpu_ns_per_packet: Option<f64>,
    /// Days of capture the budget holds at the zero-loss rate (filled by the report).
    pub retention_days: Option<f64>,
}

impl SizeResult {
    pub fn new(mode: Mode, size: FrameSize, found: &Found<Trial>) -> Self {
        let at = found.trials.iter().rev().find(|t| {
            t.lossless()
                && (t.kind == TrialKind::Confirm || found.trials.iter().all(|u| u.kind != TrialKind::Confirm))
        });
        let slowest_lossy = found
            .trials
            .iter()
            .filter(|t| !t.lossless())
            .min_by(|a, b| a.offered_pps.total_cmp(&b.offered_pps));
        let limited_by = if found.source_limited {
            Some("traffic source: its full speed lost nothing".to_string())
        } else {
            slowest_lossy.and_then(|t| t.ledger.main_loss()).map(str::to_string)
        };
        SizeResult {
            mode,
            size: size.label(),
            frame_bytes: size.mean_bytes(),
            zero_loss_pps: found.zero_loss_pps,
            zero_loss_gbps: found.zero_loss_pps.map(|pps| size.gbps(pps)),
            confirmed: found.confirmed,
            source_limited: found.source_limited,
            limited_by,
            at_trial: at.map(|t| t.number),
            write_mb_per_s: at.map(|t| t.disk.write_mb_per_s),
            compression_ratio: at.map(|t| t.disk.compression_ratio),
            disk_bytes_per_frame: at.map(|t| t.disk.bytes_written as f64 / t.ledger.captured.max(1) as f64),
            cpu_ns_per_packet: at.map(|t| t.cpu_ns_per_packet),
            retention_days: None,
        }
    }
}

/// How long the disk budget lasts.
#[derive(Clone, Debug, Serialize)]
pub struct Retention {
    pub budget_bytes: u64,
    /// "--max-disk" or "filesystem" (the whole filesystem of --dir).
    pub budget_from: &'static str,
    /// Frames a second the interface carried when the bench started (real interfaces).
    pub current_pps: Option<f64>,
    /// Days the budget holds at that rate, with the compression measured.
    pub current_days: Option<f64>,
}

/// Everything the report is made of.
pub struct Inputs {
    pub started: SystemTime,
    pub environment: Environment,
    pub search: SearchSettings,
    pub sizes: Vec<FrameSize>,
    pub options: Vec<String>,
    pub dir: std::path::PathBuf,
    pub budget_bytes: u64,
    pub budget_from_max_disk: bool,
    pub current_pps: Option<f64>,
    pub results: Vec<SizeResult>,
    pub trials: Vec<Trial>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub trial_seconds: f64,
    pub trials_per_rate: u32,
    pub tolerance: f64,
    pub confirm_seconds: f64,
    pub capture_options: Vec<String>,
    pub dir: String,
}

/// `report.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub started: String,
    pub seconds: f64,
    pub environment: Environment,
    pub settings: Settings,
    pub results: Vec<SizeResult>,
    pub retention: Retention,
    /// What a reader must know to read the figures right (the self-test's limits).
    pub notes: Vec<String>,
    pub trials: Vec<Trial>,
}

const SECONDS_A_DAY: f64 = 86_400.0;

impl Report {
    pub fn new(inputs: Inputs) -> Self {
        let days = |bytes_per_second: f64| {
            (bytes_per_second > 0.0).then(|| inputs.budget_bytes as f64 / bytes_per_second / SECONDS_A_DAY)
        };
        let mut results = inputs.results;
        for result in &mut results {
            result.retention_days = result
                .zero_loss_pps
                .zip(result.disk_bytes_per_frame)
                .and_then(|(pps, bytes)| days(pps * bytes));
        }
        // At the interface's current rate: the compression of the ringcap results measured.
        let per_frame: Vec<f64> = results
            .iter()
            .filter(|r| r.mode != Mode::Tcpdump)
            .filter_map(|r| r.disk_bytes_per_frame)
            .collect();
        let mean_per_frame =
            (!per_frame.is_empty()).then(|| per_frame.iter().sum::<f64>() / per_frame.len() as f64);
        let current_days = inputs.current_pps.zip(mean_per_frame).and_then(|(pps, bytes)| days(pps * bytes));
        let nanos =
            inputs.started.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        Report {
            schema: SCHEMA,
            started: crate::timefmt::rfc3339(nanos),
            seconds: inputs.started.elapsed().unwrap_or_default().as_secs_f64(),
            environment: inputs.environment,
            settings: Settings {
                trial_seconds: inputs.search.trial.as_secs_f64(),
                trials_per_rate: inputs.search.trials,
                tolerance: inputs.search.tolerance,
                confirm_seconds: inputs.search.confirm.as_secs_f64(),
                capture_options: inputs.options,
                dir: inputs.dir.display().to_string(),
            },
            results,
            retention: Retention {
                budget_bytes: inputs.budget_bytes,
                budget_from: if inputs.budget_from_max_disk { "--max-disk" } else { "filesystem" },
                current_pps: inputs.current_pps,
                current_days,
            },
            notes: inputs.notes,
            trials: inputs.trials,
        }
    }

    /// The results as a terminal table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| frames | mode                | zero-loss rate |    Gbit/s | limited by                                   | disk MB/s | ratio | CPU ns/pkt | days of {} |",
            human_bytes(self.retention.budget_bytes)
        );
        let _ = writeln!(out, "|--------|---------------------|----------------|-----------|----------------------------------------------|-----------|-------|------------|------------|");
        for r in &self.results {
            let rate =
                r.zero_loss_pps.map_or_else(|| "none found".into(), |p| format!("{:.3} Mpps", p / 1e6));
            let _ = writeln!(
                out,
                "| {:>6} | {:<19} | {:>14} | {:>9} | {:<44} | {:>9} | {:>5} | {:>10} | {:>10} |",
                r.size,
                r.mode.to_string(),
                rate,
                r.zero_loss_gbps.map_or("-".into(), |g| format!("{g:.2}")),
                r.limited_by.as_deref().unwrap_or("-"),
                r.write_mb_per_s.map_or("-".into(), |m| format!("{m:.1}")),
                r.compression_ratio.map_or("-".into(), |c| format!("{c:.2}")),
                r.cpu_ns_per_packet.map_or("-".into(), |c| format!("{c:.0}")),
                r.retention_days.map_or("-".into(), |d| format!("{d:.1}")),
            );
        }
        if let (Some(pps), Some(days)) = (self.retention.current_pps, self.retention.current_days) {
            let _ = writeln!(out, "at the {pps:.0} frames/s the interface carries now: {days:.1} days");
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// The self-contained HTML page: environment, results, plots, every trial's ledger.
    pub fn html(&self) -> Result<String, String> {
        let mut page = String::new();
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ringcap bench: {}</title>\
             <style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
             td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}th{{background:#eee}}\
             td.l,th.l{{text-align:left}}.plot{{margin:1em 0}}.bad{{color:#b00}}</style></head><body>",
            escape(&self.environment.hostname)
        );
        let _ = write!(
            page,
            "<h1>ringcap capture report: {}</h1><p>{} ({:.0} s)</p>",
            escape(&self.environment.hostname),
            self.started,
            self.seconds
        );
        page.push_str("<h2>Environment</h2><table id=\"environment\">");
        let env = &self.environment;
        for (key, value) in [
            ("kernel", env.kernel.clone()),
            ("CPU", format!("{} ({} cores)", env.cpu_model, env.cores)),
            (
                "interface",
                format!("{} (driver {}, {} receive queues)", env.interface, env.driver, env.receive_queues),
            ),
            ("link speed", env.link_speed_mbps.map_or("unknown".into(), |s| format!("{s} Mbit/s"))),
            ("attached", env.attached.join("; ")),
            ("ringcap", env.ringcap_version.clone()),
            ("command", env.command_line.clone()),
            ("capture options", self.settings.capture_options.join(" ")),
            (
                "trials",
                format!(
                    "{} s, {} per rate, tolerance {:.0}%, confirmation {} s, rings in {}",
                    self.settings.trial_seconds,
                    self.settings.trials_per_rate,
                    self.settings.tolerance * 100.0,
                    self.settings.confirm_seconds,
                    self.settings.dir
                ),
            ),
        ] {
            let _ =
                write!(page, "<tr><th class=\"l\">{key}</th><td class=\"l\">{}</td></tr>", escape(&value));
        }
        page.push_str("</table><h2>Zero-loss rates</h2><table id=\"results\"><tr><th class=\"l\">frames</th><th class=\"l\">mode</th><th>zero-loss rate (Mpps)</th><th>Gbit/s</th><th>confirmed</th><th class=\"l\">limited by</th><th>disk MB/s</th><th>compression</th><th>CPU ns/pkt</th><th>days of capture</th></tr>");
        for r in &self.results {
            let _ = write!(
                page,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.size,
                r.mode,
                r.zero_loss_pps.map_or("<span class=\"bad\">none</span>".into(), |p| format!("{:.3}", p / 1e6)),
                r.zero_loss_gbps.map_or("-".into(), |g| format!("{g:.2}")),
                if r.confirmed { "yes" } else { "<span class=\"bad\">no</span>" },
                escape(r.limited_by.as_deref().unwrap_or("-")),
                r.write_mb_per_s.map_or("-".into(), |m| format!("{m:.1}")),
                r.compression_ratio.map_or("-".into(), |c| format!("{c:.2}")),
                r.cpu_ns_per_packet.map_or("-".into(), |c| format!("{c:.0}")),
                r.retention_days.map_or("-".into(), |d| format!("{d:.1}")),
            );
        }
        let _ = write!(
            page,
            "</table><p id=\"retention\">Retention: a budget of {} ({}){}.</p>",
            human_bytes(self.retention.budget_bytes),
            self.retention.budget_from,
            match (self.retention.current_pps, self.retention.current_days) {
                (Some(pps), Some(days)) =>
                    format!("; at the {pps:.0} frames/s the interface carries now, {days:.1} days"),
                _ => String::new(),
            }
        );
        for note in &self.notes {
            let _ = write!(page, "<p class=\"note\">Note: {}</p>", escape(note));
        }
        page.push_str("<h2>Plots</h2>");
        for (id, title, svg) in [
            ("plot-rates", "Zero-loss rate by frame size", self.rate_plot()?),
            ("plot-loss", "Loss against offered rate", self.loss_plot()?),
            ("plot-cpu", "CPU per core at the zero-loss rate", self.cpu_plot()?),
        ] {
            let _ = write!(page, "<div class=\"plot\" id=\"{id}\"><h3>{title}</h3>{svg}</div>");
        }
        page.push_str("<h2>Drop ledger of every trial</h2><table id=\"ledger\"><tr><th>#</th><th class=\"l\">mode</th><th class=\"l\">frames</th><th class=\"l\">trial</th><th>target pps</th><th>offered pps</th><th>offered</th><th>NIC dropped</th><th>seen</th><th>not selected</th><th>kernel ring</th><th>AF_XDP rings</th><th>reader queue</th><th>writer</th><th>captured</th><th>of which cut</th><th>bytes not stored (cut)</th><th>unaccounted</th><th>CPU per core (busy / softirq %)</th></tr>");
        for t in &self.trials {
            let l = &t.ledger;
            let cores: Vec<String> =
                t.cores.iter().map(|c| format!("{:.0}/{:.0}", c.busy_percent, c.softirq_percent)).collect();
            let _ = write!(
                page,
                "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{:?}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                t.number, t.mode, t.size, t.kind, t.target_pps.map_or("full".into(), |r| format!("{r:.0}")), t.offered_pps,
                l.offered, l.nic_dropped, l.seen, l.not_selected, l.kernel_dropped, l.xsk_dropped, l.reader_queue_dropped,
                l.writer_lost, l.captured, l.cut, l.cut_bytes, l.unaccounted, cores.join(" ")
            );
        }
        page.push_str("</table></body></html>\n");
        Ok(page)
    }

    /// Zero-loss Mpps against frame size, one line per mode.
    fn rate_plot(&self) -> Result<String, String> {
        let sizes: Vec<String> = dedup(self.results.iter().map(|r| r.size.clone()));
        let modes: Vec<Mode> = dedup(self.results.iter().map(|r| r.mode));
        let top =
            self.results.iter().filter_map(|r| r.zero_loss_pps).fold(0.0f64, f64::max) / 1e6 * 1.15 + 0.01;
        let axes = Axes {
            x: -0.5..(sizes.len() as f64 - 0.5),
            y: 0.0..top,
            x_desc: "frame size",
            y_desc: "zero-loss rate (Mpps)",
        };
        plot(axes, Some(&sizes), SeriesLabelPosition::UpperRight, |chart| {
            for (i, mode) in modes.iter().enumerate() {
                let points = self
                    .results
                    .iter()
                    .filter(|r| r.mode == *mode)
                    .filter_map(|r| {
                        Some((sizes.iter().position(|s| *s == r.size)? as f64, r.zero_loss_pps? / 1e6))
                    })
                    .collect();
                line_with_points(chart, points, i, mode.to_string())?;
            }
            Ok(())
        })
    }

    /// Loss (% of offered) against offered Mpps, every trial, one series per mode and size.
    fn loss_plot(&self) -> Result<String, String> {
        let series: Vec<(Mode, String)> = dedup(self.trials.iter().map(|t| (t.mode, t.size.clone())));
        let right = self.trials.iter().map(|t| t.offered_pps).fold(0.0f64, f64::max) / 1e6 * 1.1 + 0.01;
        let loss = |t: &Trial| 100.0 * t.ledger.lost() as f64 / t.ledger.offered.max(1) as f64;
        let top = self.trials.iter().map(loss).fold(0.0f64, f64::max).max(1.0) * 1.1;
        let axes =
            Axes { x: 0.0..right, y: 0.0..top, x_desc: "offered rate (Mpps)", y_desc: "lost (% of offered)" };
        plot(axes, None, SeriesLabelPosition::UpperLeft, |chart| {
            for (i, (mode, size)) in series.iter().enumerate() {
                let mut points: Vec<(f64, f64)> = self
                    .trials
                    .iter()
                    .filter(|t| t.mode == *mode && t.size == *size)
                    .map(|t| (t.offered_pps / 1e6, loss(t)))
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                line_with_points(chart, points, i, format!("{mode}, {size}"))?;
            }
            Ok(())
        })
    }

    /// Busy % of each core in the trial that set each zero-loss rate, one line per core.
    fn cpu_plot(&self) -> Result<String, String> {
        let rows: Vec<(String, &Trial)> = self
            .results
            .iter()
            .filter_map(|r| {
                let trial = self.trials.iter().find(|t| Some(t.number) == r.at_trial)?;
                Some((format!("{} {}", r.size, short_mode(r.mode)), trial))
            })
            .collect();
        let labels: Vec<String> = rows.iter().map(|(label, _)| label.clone()).collect();
        let cores = rows.iter().map(|(_, t)| t.cores.len()).max().unwrap_or(0);
        let axes = Axes {
            x: -0.5..(rows.len().max(1) as f64 - 0.5),
            y: 0.0..105.0,
            x_desc: "frame size and mode",
            y_desc: "busy (% of the core, softirq included)",
        };
        plot(axes, Some(&labels), SeriesLabelPosition::UpperRight, |chart| {
            for core in 0..cores {
                let points = rows
                    .iter()
                    .enumerate()
                    .filter_map(|(x, (_, t))| Some((x as f64, t.cores.get(core)?.busy_percent)))
                    .collect();
                line_with_points(chart, points, core, format!("core {core}"))?;
            }
            Ok(())
        })
    }
}

/// The ranges and names of a plot's axes.
struct Axes {
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    x_desc: &'static str,
    y_desc: &'static str,
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// An SVG plot: white, with a mesh and a legend; `categories` name the integer x
/// positions when the x axis is not a number. `draw` adds the series.
fn plot(
    axes: Axes,
    categories: Option<&[String]>,
    legend: SeriesLabelPosition,
    draw: impl FnOnce(&mut Chart<'_, '_>) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(axes.x, axes.y)
            .map_err(plot_error)?;
        let mut mesh = chart.configure_mesh();
        let names = categories.map(<[String]>::to_vec);
        let label = move |x: &f64| match &names {
            Some(names) => names.get(x.round().max(0.0) as usize).cloned().unwrap_or_default(),
            None => format!("{x:.1}"),
        };
        if let Some(categories) = categories {
            mesh.x_labels(categories.len().max(1));
        }
        mesh.x_label_formatter(&label).x_desc(axes.x_desc).y_desc(axes.y_desc).draw().map_err(plot_error)?;
        draw(&mut chart)?;
        chart
            .configure_series_labels()
            .position(legend)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// A series of points joined by a line, in the palette's colour `index`, in the legend as `name`.
fn line_with_points(
    chart: &mut Chart<'_, '_>,
    points: Vec<(f64, f64)>,
    index: usize,
    name: String,
) -> Result<(), String> {
    let color = Palette99::pick(index).to_rgba();
    chart
        .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
        .map_err(plot_error)?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled()))).map_err(plot_error)?;
    Ok(())
}

/// One progress line for a finished trial.
pub fn trial_line(trial: &Trial) -> String {
    let l = &trial.ledger;
    format!(
        "[{:>3}] {:<19} {:>6} {:<10} target {:>10} offered {:>8.3} Mpps  captured {:>9} of {:>9}  lost {:>8}{}  CPU {:.0} ns/pkt",
        trial.number,
        trial.mode.to_string(),
        trial.size,
        format!("{:?}", trial.kind),
        trial.target_pps.map_or("full speed".into(), |r| format!("{:.0}", r)),
        trial.offered_pps / 1e6,
        l.captured,
        l.offered,
        l.lost(),
        l.main_loss().map_or(String::new(), |place| format!(" ({place})")),
        trial.cpu_ns_per_packet,
    )
}

fn short_mode(mode: Mode) -> &'static str {
    match mode {
        Mode::Ring => "ring",
        Mode::Afxdp => "AF_XDP",
        Mode::Tcpdump => "tcpdump",
    }
}

fn dedup<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn plot_error<E: std::fmt::Debug>(error: E) -> String {
    format!("drawing a plot: {error:?}")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 40 => format!("{:.1} TiB", b as f64 / (1u64 << 40) as f64),
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
    }
}
