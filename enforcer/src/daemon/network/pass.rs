//! tc passes: a survey of every namespace, the plan through the choke point, the apply;
//! also `enforcer tc show|apply` and the removal at shutdown.

use std::{os::fd::AsRawFd, time::Instant};

use super::NetworkController;
use crate::{
    actuators::{
        Actuator,
        journal::JournalError,
        tc::reconcile::{Applied, Limits, Mode, Reconciler, Role, Survey},
    },
    policy::{shaping::BondShape, window::RateWindow},
    sampling::programs::Programs,
    surfaces::snapshot::{Directions, InterfaceTraffic, TcReport, TcRequest},
};

impl NetworkController {
    pub(super) fn limits(&self, (egress, ingress): (u64, u64)) -> Limits {
        Limits {
            bond: BondShape {
                capacity: self.config.rule.capacity,
                host_limit: self.config.host_limit,
                offline_limit: egress,
            },
            offline_ingress: ingress,
        }
    }

    pub(super) fn pass(
        &mut self,
        actuator: &mut Actuator,
        programs: &Programs,
        limits: (u64, u64),
        full: bool,
    ) -> Result<(), JournalError> {
        let started = Instant::now();
        let prog_id = programs.classifier_id().unwrap_or(0);
        let shape = self.limits(limits);
        let Some(reconciler) = self.reconciler.as_mut() else {
            return Ok(());
        };
        let survey = reconciler.survey(&self.namespaces, &shape, prog_id, Mode::Shape);
        if full {
            self.last_pass = Some(Instant::now());
        }
        if !survey.bond_present {
            if !self.reported_missing {
                tracing::warn!(
                    interface = %self.config.interface,
                    "network.interface: no such interface; nothing to shape until it appears"
                );
                self.reported_missing = true;
            }
        } else {
            self.reported_missing = false;
        }
        let fd = programs.classifier_fd().map(|f| f.as_raw_fd());
        let result = execute(reconciler, actuator, &survey, fd, limits, "shape");
        self.note(&survey, started, &result);
        if let Ok(Some(applied)) = &result
            && applied.failures.is_empty()
            && survey.bond_present
        {
            self.applied = (Some(limits.0), Some(limits.1));
        } else if survey.pending() == 0 && survey.bond_present {
            self.applied = (Some(limits.0), Some(limits.1));
        }
        result.map(drop)
    }

    pub(super) fn note(
        &mut self,
        survey: &Survey,
        started: Instant,
        result: &Result<Option<Applied>, JournalError>,
    ) {
        let tc = &mut self.view.tc;
        tc.passes_total += 1;
        tc.last_pass_seconds = started.elapsed().as_secs_f64();
        tc.managed = survey
            .interfaces
            .iter()
            .filter(|i| i.role != Role::Released)
            .count();
        tc.conflicts = survey
            .interfaces
            .iter()
            .flat_map(|i| i.conflicts.iter().map(move |c| format!("{}: {c}", i.name)))
            .collect();
        if let Ok(Some(applied)) = result {
            tc.changes_total += applied.changes.len() as u64;
            tc.failures_total += applied.failures.len() as u64;
            if let Some(f) = applied.failures.last() {
                tc.last_error = Some(f.clone());
            }
        }
        tc.last_error = survey.errors.last().cloned().or(tc.last_error.take());
        self.view.interface_present = survey.bond_present;
        // Per-interface rates from the byte counters of this pass.
        let now_ns = crate::clock::monotonic_ns();
        let managed: std::collections::BTreeSet<(u64, u32)> = survey
            .interfaces
            .iter()
            .filter(|i| i.wanted.is_some())
            .map(|i| (i.netns, i.ifindex))
            .collect();
        let window_ns = self.window_ns.max(2_000_000_000);
        let mut seen = Vec::new();
        self.view.interfaces = survey
            .links
            .iter()
            .map(|l| {
                let key = (l.netns, l.ifindex);
                seen.push(key);
                let (rx, tx) = self
                    .links
                    .entry(key)
                    .or_insert_with(|| (RateWindow::new(window_ns), RateWindow::new(window_ns)));
                rx.push(now_ns, l.rx_bytes);
                tx.push(now_ns, l.tx_bytes);
                InterfaceTraffic {
                    name: l.name.clone(),
                    namespace: l.namespace.clone(),
                    kind: l.kind.clone(),
                    class: l.class.clone(),
                    shaped: managed.contains(&key),
                    rx_bytes_total: l.rx_bytes,
                    tx_bytes_total: l.tx_bytes,
                    rx_bytes_per_second: rx.per_second(),
                    tx_bytes_per_second: tx.per_second(),
                }
            })
            .collect();
        if !survey.links.is_empty() {
            self.links.retain(|k, _| seen.contains(k));
        }
    }

    /// `enforcer tc show|apply`: a survey now, applied unless asked not to.
    pub fn request(
        &mut self,
        req: TcRequest,
        actuator: &mut Actuator,
        programs: &Programs,
    ) -> Result<TcReport, String> {
        let limits = (
            self.egress.current().unwrap_or(0),
            self.ingress.current().unwrap_or(0),
        );
        let prog_id = programs.classifier_id().unwrap_or(0);
        let shape = self.limits(limits);
        let Some(reconciler) = self.reconciler.as_mut() else {
            return Err("network shaping is off (network.shaping = false)".into());
        };
        let survey = reconciler.survey(&self.namespaces, &shape, prog_id, Mode::Shape);
        let dry_run = req.dry_run || actuator.dry_run();
        let applied = if req.apply && !dry_run {
            let fd = programs.classifier_fd().map(|f| f.as_raw_fd());
            execute(reconciler, actuator, &survey, fd, limits, "operator")
                .map_err(|e| e.to_string())?
        } else {
            reconciler.discard();
            None
        };
        Ok(TcReport {
            interface: self.config.interface.clone(),
            limits: Directions {
                egress: limits.0 as f64,
                ingress: limits.1 as f64,
            },
            survey,
            applied,
            dry_run,
        })
    }

    /// Removes everything enforcer installed (SIGTERM).
    pub fn shutdown(&mut self, actuator: &mut Actuator) -> Result<(), JournalError> {
        let shape = self.limits((0, 0));
        let Some(reconciler) = self.reconciler.as_mut() else {
            return Ok(());
        };
        let survey = reconciler.survey(&self.namespaces, &shape, 0, Mode::RemoveAll);
        if survey.pending() > 0 {
            tracing::info!(changes = survey.pending(), "removing enforcer's tc objects");
        }
        execute(reconciler, actuator, &survey, None, (0, 0), "shutdown").map(drop)
    }
}

/// Runs a survey's plan through the choke point: interfaces whose owner is not offline are
/// refused, the whole pass is journaled before and after, and a dry run stops after the
/// journal. Returns what was applied (None: nothing was pending, or dry run).
fn execute(
    reconciler: &mut Reconciler,
    actuator: &mut Actuator,
    survey: &Survey,
    prog_fd: Option<std::os::fd::RawFd>,
    limits: (u64, u64),
    why: &str,
) -> Result<Option<Applied>, JournalError> {
    if survey.pending() == 0 {
        reconciler.discard();
        return Ok(None);
    }
    let reason = serde_json::json!({
        "why": why,
        "offline_limit_egress_bytes_per_second": limits.0,
        "offline_limit_ingress_bytes_per_second": limits.1,
    });
    let applied = actuator.tc_pass(survey, reason, |allowed| {
        reconciler.apply(survey, prog_fd, &|r| {
            allowed.contains(&(r.netns, r.name.clone()))
        })
    })?;
    if applied.is_none() {
        reconciler.discard();
    }
    Ok(applied)
}
