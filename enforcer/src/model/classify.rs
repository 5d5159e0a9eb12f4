//! Ordered, configurable classification of cgroups by path: online, offline (with a
//! priority), or system. The first rule that matches wins.

use std::sync::Arc;

use regex::Regex;

use super::{Class, Priority};

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// Matched anywhere in the path relative to the hierarchy root. A named group
    /// `priority` (e.g. `yarn/(?P<priority>P[123]|debug)/`) overrides `priority`.
    pub pattern: Regex,
    pub class: Class,
    pub priority: Option<Priority>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: Class,
    /// Always set for offline, never for online and system.
    pub priority: Option<Priority>,
    /// The rule that matched, or "default".
    pub rule: Arc<str>,
}

/// Offline work nobody gave a priority to is evicted early but not first.
pub const DEFAULT_OFFLINE_PRIORITY: Priority = Priority::P3;

#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    names: Vec<Arc<str>>,
    default_name: Arc<str>,
}

fn rule(name: &str, pattern: &str, class: Class, priority: Option<Priority>) -> Rule {
    Rule {
        name: name.into(),
        pattern: Regex::new(pattern).expect("default rules are valid regexes"),
        class,
        priority,
    }
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let names = rules.iter().map(|r| Arc::from(r.name.as_str())).collect();
        RuleSet {
            rules,
            names,
            default_name: Arc::from("default"),
        }
    }

    /// The operators' layout (SPEC §1) for both kubelet drivers: systemd
    /// (`kubepods.slice/kubepods-besteffort.slice/...`) and cgroupfs
    /// (`kubepods/besteffort/...`).
    pub fn defaults() -> RuleSet {
        RuleSet::new(Self::default_rules())
    }

    pub fn default_rules() -> Vec<Rule> {
        vec![
            rule(
                "kubepods-besteffort",
                r"(^|/)kubepods(\.slice)?/(kubepods-besteffort\.slice|besteffort)(/|$)",
                Class::Offline,
                Some(DEFAULT_OFFLINE_PRIORITY),
            ),
            rule(
                "kubepods-burstable",
                r"(^|/)kubepods(\.slice)?/(kubepods-burstable\.slice|burstable)(/|$)",
                Class::Online,
                None,
            ),
            rule(
                "kubepods-guaranteed",
                r"(^|/)kubepods(\.slice)?/(kubepods-pod[^/]*\.slice|pod[^/]+)(/|$)",
                Class::Online,
                None,
            ),
            rule(
                "yarn-container",
                r"(^|/)(hadoop-)?yarn/container_[^/]+(/|$)",
                Class::Offline,
                Some(DEFAULT_OFFLINE_PRIORITY),
            ),
            rule(
                "yarn",
                r"(^|/)(hadoop-)?yarn$",
                Class::Offline,
                Some(DEFAULT_OFFLINE_PRIORITY),
            ),
        ]
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn classify(&self, rel_path: &str) -> Classification {
        for (rule, name) in self.rules.iter().zip(&self.names) {
            if !rule.pattern.is_match(rel_path) {
                continue;
            }
            let captured = if rule.pattern.capture_names().any(|n| n == Some("priority")) {
                rule.pattern
                    .captures(rel_path)
                    .and_then(|c| c.name("priority"))
                    .and_then(|m| Priority::parse(m.as_str()))
            } else {
                None
            };
            let priority = match rule.class {
                Class::Offline => Some(
                    captured
                        .or(rule.priority)
                        .unwrap_or(DEFAULT_OFFLINE_PRIORITY),
                ),
                _ => None,
            };
            return Classification {
                class: rule.class,
                priority,
                rule: name.clone(),
            };
        }
        Classification {
            class: Class::System,
            priority: None,
            rule: self.default_name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rules: &RuleSet, path: &str, class: Class, priority: Option<Priority>, rule: &str) {
        let c = rules.classify(path);
        assert_eq!(
            (c.class, c.priority, &*c.rule),
            (class, priority, rule),
            "{path}"
        );
    }

    #[test]
    fn default_rules_for_the_systemd_driver() {
        let r = RuleSet::defaults();
        let be = "kubepods.slice/kubepods-besteffort.slice";
        check(
            &r,
            be,
            Class::Offline,
            Some(Priority::P3),
            "kubepods-besteffort",
        );
        check(
            &r,
            &format!("{be}/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"),
            Class::Offline,
            Some(Priority::P3),
            "kubepods-besteffort",
        );
        check(
            &r,
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2.slice/x.scope",
            Class::Online,
            None,
            "kubepods-burstable",
        );
        check(
            &r,
            "kubepods.slice/kubepods-pod3.slice/cri-containerd-y.scope",
            Class::Online,
            None,
            "kubepods-guaranteed",
        );
        check(&r, "kubepods.slice", Class::System, None, "default");
        check(
            &r,
            "system.slice/kubelet.service",
            Class::System,
            None,
            "default",
        );
        check(&r, "", Class::System, None, "default");
    }

    #[test]
    fn default_rules_for_the_cgroupfs_driver_and_yarn() {
        let r = RuleSet::defaults();
        check(
            &r,
            "kubepods/besteffort/pod1/abc",
            Class::Offline,
            Some(Priority::P3),
            "kubepods-besteffort",
        );
        check(
            &r,
            "kubepods/burstable/pod1/abc",
            Class::Online,
            None,
            "kubepods-burstable",
        );
        check(
            &r,
            "kubepods/pod9/abc",
            Class::Online,
            None,
            "kubepods-guaranteed",
        );
        check(&r, "kubepods", Class::System, None, "default");
        check(
            &r,
            "yarn/container_1_01_000002",
            Class::Offline,
            Some(Priority::P3),
            "yarn-container",
        );
        check(
            &r,
            "hadoop-yarn/container_e01_1_01_000002",
            Class::Offline,
            Some(Priority::P3),
            "yarn-container",
        );
        check(&r, "yarn", Class::Offline, Some(Priority::P3), "yarn");
        // Look-alikes stay system.
        check(
            &r,
            "kubepods-besteffort-not",
            Class::System,
            None,
            "default",
        );
        check(&r, "notyarn/container_1", Class::System, None, "default");
        check(
            &r,
            "system.slice/yarn-nodemanager.service",
            Class::System,
            None,
            "default",
        );
    }

    #[test]
    fn priority_comes_from_a_capture_then_the_rule_then_the_default() {
        let r = RuleSet::new(vec![
            rule(
                "yarn-queue",
                r"yarn/(?P<priority>P[123]|debug)/container_",
                Class::Offline,
                Some(Priority::P2),
            ),
            rule("spark", r"spark-", Class::Offline, None),
            rule(
                "odd",
                r"odd/(?P<priority>\w+)/",
                Class::Offline,
                Some(Priority::P1),
            ),
        ]);
        check(
            &r,
            "yarn/P1/container_1",
            Class::Offline,
            Some(Priority::P1),
            "yarn-queue",
        );
        check(
            &r,
            "yarn/debug/container_1",
            Class::Offline,
            Some(Priority::Debug),
            "yarn-queue",
        );
        check(
            &r,
            "x/spark-exec-1",
            Class::Offline,
            Some(Priority::P3),
            "spark",
        );
        // An unparsable capture falls back to the rule's priority.
        check(&r, "odd/zzz/1", Class::Offline, Some(Priority::P1), "odd");
    }

    #[test]
    fn first_matching_rule_wins() {
        let online_first = RuleSet::new(vec![
            rule("a", "shared", Class::Online, None),
            rule("b", "shared", Class::Offline, Some(Priority::P1)),
        ]);
        check(&online_first, "x/shared/y", Class::Online, None, "a");
        let offline_first = RuleSet::new(vec![
            rule("b", "shared", Class::Offline, Some(Priority::P1)),
            rule("a", "shared", Class::Online, None),
        ]);
        check(
            &offline_first,
            "x/shared/y",
            Class::Offline,
            Some(Priority::P1),
            "b",
        );
        // Online and system never carry a priority, even if the rule names one.
        let r = RuleSet::new(vec![rule("s", "x", Class::System, Some(Priority::P1))]);
        check(&r, "x", Class::System, None, "s");
    }
}
