//! The zero-loss search (RFC 2544's throughput test): the highest offered rate at which
//! every trial loses nothing, by binary search between a lossless rate and a lossy one,
//! each rate tried several times, the result held for a longer confirmation run.
use std::time::Duration;

/// How the search goes.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct SearchSettings {
    /// Length of a search trial.
    pub trial: Duration,
    /// Trials at each rate; a rate passes only if all of them lose nothing.
    pub trials: u32,
    /// The search stops once the lossless and lossy rates are this close, as a fraction of
    /// the fastest rate offered.
    pub tolerance: f64,
    /// Length of the confirmation run at the rate found.
    pub confirm: Duration,
}

/// Why a trial was run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialKind {
    /// As fast as the traffic source goes: the ceiling of the search.
    FullSpeed,
    Search,
    Confirm,
}

/// What the search needs of a trial's outcome.
pub trait TrialOutcome {
    /// Frames per second actually offered.
    fn offered_pps(&self) -> f64;
    /// Whether every offered frame is accounted for as captured or not selected.
    fn lossless(&self) -> bool;
}

/// What the search found, with every trial it ran, in order.
#[derive(Debug)]
pub struct Found<T> {
    /// The zero-loss rate, offered frames per second (None: even the slowest rate lost).
    pub zero_loss_pps: Option<f64>,
    /// The confirmation run held the rate found.
    pub confirmed: bool,
    /// The traffic source's full speed lost nothing: the capture may go faster still.
    pub source_limited: bool,
    pub trials: Vec<T>,
}

/// Confirmation attempts, each at a lower rate than the one that failed.
const CONFIRM_ATTEMPTS: u32 = 3;

/// Runs the search; `trial(rate, length, kind)` runs one trial at `rate` frames per
/// second (None: full speed).
pub fn zero_loss<T: TrialOutcome, E>(
    settings: &SearchSettings,
    mut trial: impl FnMut(Option<f64>, Duration, TrialKind) -> Result<T, E>,
) -> Result<Found<T>, E> {
    let mut trials = Vec::new();
    let full = trial(None, settings.trial, TrialKind::FullSpeed)?;
    let ceiling = full.offered_pps();
    let full_lossless = full.lossless();
    trials.push(full);
    if full_lossless {
        let confirm = trial(None, settings.confirm, TrialKind::Confirm)?;
        let (confirmed, rate) = (confirm.lossless(), confirm.offered_pps());
        trials.push(confirm);
        if confirmed {
            return Ok(Found { zero_loss_pps: Some(rate), confirmed, source_limited: true, trials });
        }
        // Full speed held for a trial but not for the longer run: search below it.
    }
    let step = (settings.tolerance * ceiling).max(1.0);
    let (mut lossless, mut lossy) = (0.0f64, ceiling);
    let mut best: Option<f64> = None;
    while lossy - lossless > step {
        let rate = (lossless + lossy) / 2.0;
        let mut passed = true;
        let mut offered = f64::MAX;
        for _ in 0..settings.trials.max(1) {
            let outcome = trial(Some(rate), settings.trial, TrialKind::Search)?;
            passed &= outcome.lossless();
            offered = offered.min(outcome.offered_pps());
            trials.push(outcome);
            if !passed {
                break;
            }
        }
        if passed {
            lossless = rate;
            best = Some(offered.min(rate));
        } else {
            lossy = rate;
        }
    }
    let mut confirmed = false;
    let mut attempts = 0;
    while let (Some(rate), true) = (best, attempts < CONFIRM_ATTEMPTS) {
        attempts += 1;
        let outcome = trial(Some(rate), settings.confirm, TrialKind::Confirm)?;
        let held = outcome.lossless();
        let offered = outcome.offered_pps();
        trials.push(outcome);
        if held {
            confirmed = true;
            best = Some(offered.min(rate));
            break;
        }
        // The longer run lost: one step down, and try again.
        best = (rate - step > 0.0).then_some(rate - step);
    }
    Ok(Found { zero_loss_pps: best.filter(|_| confirmed), confirmed, source_limited: false, trials })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capture that loses above `limit` frames per second; full speed is `ceiling`.
    struct Fake {
        offered: f64,
        lossless: bool,
        length: Duration,
    }

    impl TrialOutcome for Fake {
        fn offered_pps(&self) -> f64 {
            self.offered
        }
        fn lossless(&self) -> bool {
            self.lossless
        }
    }

    fn settings() -> SearchSettings {
        SearchSettings {
            trial: Duration::from_secs(1),
            trials: 2,
            tolerance: 0.05,
            confirm: Duration::from_secs(5),
        }
    }

    fn capture(limit: f64, ceiling: f64) -> impl FnMut(Option<f64>, Duration, TrialKind) -> Result<Fake, ()> {
        move |rate, length, _| {
            let offered = rate.unwrap_or(ceiling).min(ceiling);
            Ok(Fake { offered, lossless: offered <= limit, length })
        }
    }

    #[test]
    fn finds_the_zero_loss_rate_within_the_tolerance_and_confirms_it() {
        let found = zero_loss(&settings(), capture(600_000.0, 1_000_000.0)).unwrap();
        let rate = found.zero_loss_pps.unwrap();
        assert!(found.confirmed && !found.source_limited);
        assert!(rate <= 600_000.0 && rate > 600_000.0 - 50_000.0, "{rate}");
        let last = found.trials.last().unwrap();
        assert_eq!(last.length, Duration::from_secs(5), "the last trial is the confirmation");
        // A rate that passed was tried twice; one that failed stopped at its first loss.
        assert!(
            found.trials.iter().filter(|t| t.lossless && t.length == Duration::from_secs(1)).count() % 2 == 0
        );
    }

    #[test]
    fn a_full_speed_that_fails_its_confirmation_is_searched_below() {
        let mut flaky = |rate: Option<f64>, length: Duration, _| -> Result<Fake, ()> {
            let offered = rate.unwrap_or(1_000_000.0);
            let limit = if length > Duration::from_secs(1) { 880_000.0 } else { 1_000_000.0 };
            Ok(Fake { offered, lossless: offered <= limit, length })
        };
        let found = zero_loss(&settings(), &mut flaky).unwrap();
        assert!(!found.source_limited && found.confirmed);
        let rate = found.zero_loss_pps.unwrap();
        assert!(rate <= 880_000.0 && rate > 800_000.0, "{rate}");
    }

    #[test]
    fn a_lossless_full_speed_is_the_source_s_limit() {
        let found = zero_loss(&settings(), capture(2_000_000.0, 1_000_000.0)).unwrap();
        assert_eq!(found.zero_loss_pps, Some(1_000_000.0));
        assert!(found.source_limited && found.confirmed);
        assert_eq!(found.trials.len(), 2);
    }

    #[test]
    fn a_capture_that_always_loses_has_no_zero_loss_rate() {
        let found = zero_loss(&settings(), capture(0.0, 1_000_000.0)).unwrap();
        assert_eq!(found.zero_loss_pps, None);
        assert!(!found.confirmed);
    }

    #[test]
    fn a_confirmation_that_fails_steps_down() {
        // Short trials pass up to 600k, the long run only up to 520k.
        let mut flaky = |rate: Option<f64>, length: Duration, _| -> Result<Fake, ()> {
            let offered = rate.unwrap_or(1_000_000.0);
            let limit = if length > Duration::from_secs(1) { 520_000.0 } else { 600_000.0 };
            Ok(Fake { offered, lossless: offered <= limit, length })
        };
        let found = zero_loss(&settings(), &mut flaky).unwrap();
        let rate = found.zero_loss_pps.unwrap();
        assert!(found.confirmed && rate <= 520_000.0, "{rate}");
    }
}
