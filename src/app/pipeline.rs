//! The pure core, composed: correlate → score → aggregate.
//!
//! Every source (replay files today, Kafka later) feeds `NormalizedEvent`s
//! here, so the same records give the same alerts whatever carried them. No
//! I/O, no clock, no async.

use crate::config::Config;
use crate::correlate::Correlator;
use crate::event::Emit;
use crate::event::{NormalizedEvent, Observation};
use crate::score::aggregate::Aggregator;
use crate::score::Scorer;

pub struct Pipeline {
    pub correlator: Correlator,
    scorer: Scorer,
    aggregator: Aggregator,
}

/// One emitted alert state and whether a line must be written for it (a
/// close whose aggregate did not change since its last line needs none).
pub type Output = (Emit, bool);

impl Pipeline {
    pub fn new(cfg: &Config) -> Pipeline {
        Pipeline {
            correlator: Correlator::new(cfg.correlation.clone()),
            scorer: Scorer::new(cfg.scoring.clone(), cfg.org_id),
            aggregator: Aggregator::new(cfg.alerts.max_evidence, cfg.alerts.max_open, cfg.alerts.max_closed),
        }
    }

    /// Processes one event in event-time order; appends what to emit.
    pub fn process(&mut self, ev: &NormalizedEvent, out: &mut Vec<Output>) {
        if let Some(obs) = self.correlator.observe_facts(ev) {
            let alert = match obs {
                // Most grants repeat an open alert without raising its score:
                // fold those by id and score, without describing the grant
                // or building the alert.
                Observation::Grant(mut g) => {
                    let (id, score) = self.scorer.grant_id_and_score(&g);
                    let l = &g.login;
                    if self.aggregator.fold_repeat(&id, score, l.time, l.event_id.as_deref()) {
                        None
                    } else {
                        self.correlator.describe_grant(&mut g);
                        Some(self.scorer.grant_alert(&g, id))
                    }
                }
                enablement => Some(self.scorer.score(&enablement)),
            };
            if let Some(a) = alert {
                self.aggregator.observe(a, out);
            }
        }
        out.extend(self.aggregator.close_through(self.correlator.watermark()));
    }

    /// Applies an event to correlation state without raising alerts: audit
    /// records before `--since` still build context.
    pub fn absorb(&mut self, ev: &NormalizedEvent) {
        let _ = self.correlator.observe_facts(ev);
    }

    /// Forgets all state built from logins and activity, and every alert
    /// aggregate, without writing a line; setup-audit state stays. A live
    /// instance calls it when its partitions are revoked: whoever reads them
    /// next (this instance included) rebuilds that state from the committed
    /// offsets and warm-up, exactly as after a restart, so no record is
    /// counted twice and no alert is closed from a partial view.
    pub fn forget_traffic(&mut self) {
        self.correlator.forget_traffic();
        self.aggregator.forget();
    }

    /// Alerts closed before their time by `alerts.max_open`.
    pub fn early_closes(&self) -> u64 {
        self.aggregator.early_closes
    }

    /// Alert aggregates not yet closed.
    pub fn open_alerts(&self) -> usize {
        self.aggregator.open_count()
    }

    /// End of input: closes every open aggregate.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.correlator.finish();
        out.extend(self.aggregator.finish());
    }
}
