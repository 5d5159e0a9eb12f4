//! Ordered, configurable classification of cgroups by path and, where the container runtime
//! knows the cgroup's pod, by the pod's namespace, labels, annotations, QoS class and
//! container name: online, offline (with a priority), or system. The first rule that
//! matches wins; a cgroup whose pod is unknown is matched by its path alone (stale or missing
//! metadata never makes a pod offline: the path rules say what kubelet's layout says).

use std::sync::Arc;

use regex::Regex;

use super::{
    Class, Priority,
    pod::{PodContext, PodTable, Qos},
};

/// What a rule asks of a cgroup's pod. A rule with one matches only cgroups of a pod the
/// runtime knows (the pod's own cgroup and its containers').
#[derive(Debug, Clone, Default)]
pub struct PodMatch {
    /// Matched against the pod's namespace.
    pub namespace: Option<Regex>,
    /// Each label present with a value the regex matches.
    pub labels: Vec<(String, Regex)>,
    pub annotations: Vec<(String, Regex)>,
    pub qos: Option<Qos>,
    /// Matched against the container's name; a rule with it never matches the pod's own
    /// cgroup.
    pub container: Option<Regex>,
}

impl PodMatch {
    fn matches(&self, ctx: &PodContext<'_>) -> bool {
        let pod = &ctx.pod;
        let pairs = |want: &[(String, Regex)],
                     have: &std::collections::BTreeMap<String, String>| {
            want.iter()
                .all(|(k, re)| have.get(k).is_some_and(|v| re.is_match(v)))
        };
        self.namespace
            .as_ref()
            .is_none_or(|re| re.is_match(&pod.namespace))
            && pairs(&self.labels, &pod.labels)
            && pairs(&self.annotations, &pod.annotations)
            && self.qos.is_none_or(|q| q == ctx.qos)
            && self
                .container
                .as_ref()
                .is_none_or(|re| ctx.container.as_deref().is_some_and(|c| re.is_match(c)))
    }
}

/// Where an offline pod's priority is read from: a label's or an annotation's value, spelt
/// `P1`/`p1`/`debug` or as a YuniKorn queue whose last segment is one (`root.P1`,
/// `root.debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrioritySource {
    Label(String),
    Annotation(String),
}

impl PrioritySource {
    /// `label:<key>` or `annotation:<key>`.
    pub fn parse(s: &str) -> Option<PrioritySource> {
        match s.split_once(':')? {
            ("label", k) if !k.is_empty() => Some(PrioritySource::Label(k.into())),
            ("annotation", k) if !k.is_empty() => Some(PrioritySource::Annotation(k.into())),
            _ => None,
        }
    }

    fn read(&self, ctx: &PodContext<'_>) -> Option<Priority> {
        let value = match self {
            PrioritySource::Label(k) => ctx.pod.labels.get(k),
            PrioritySource::Annotation(k) => ctx.pod.annotations.get(k),
        }?;
        Priority::parse(value).or_else(|| Priority::parse(value.rsplit('.').next()?))
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// Matched anywhere in the path relative to the hierarchy root. A named group
    /// `priority` (e.g. `yarn/(?P<priority>P[123]|debug)/`) overrides `priority`.
    pub pattern: Regex,
    /// What the cgroup's pod must be, for rules about pods.
    pub pod: Option<PodMatch>,
    pub class: Class,
    pub priority: Option<Priority>,
    /// Read in order before `priority` (pods only): the first that gives one wins.
    pub priority_from: Vec<PrioritySource>,
}

impl Rule {
    /// A rule on the path alone.
    pub fn path(name: &str, pattern: Regex, class: Class, priority: Option<Priority>) -> Rule {
        Rule {
            name: name.into(),
            pattern,
            pod: None,
            class,
            priority,
            priority_from: Vec::new(),
        }
    }
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
    Rule::path(
        name,
        Regex::new(pattern).expect("default rules are valid regexes"),
        class,
        priority,
    )
}

/// The labels an operator sets on a pod to say what it is, whatever its QoS class.
pub const CLASS_LABEL: &str = "enforcer.io/class";
pub const PRIORITY_LABEL: &str = "enforcer.io/priority";

/// Where a pod's priority is read by default: the override label, YuniKorn's `queue` label,
/// then its queue annotation.
pub fn default_priority_sources() -> Vec<PrioritySource> {
    vec![
        PrioritySource::Label(PRIORITY_LABEL.into()),
        PrioritySource::Label("queue".into()),
        PrioritySource::Annotation("yunikorn.apache.org/queue".into()),
    ]
}

fn pod_rule(name: &str, pod: PodMatch, class: Class, priority: Option<Priority>) -> Rule {
    Rule {
        name: name.into(),
        pattern: Regex::new("").expect("the empty regex"),
        pod: Some(pod),
        class,
        priority,
        priority_from: if class == Class::Offline {
            default_priority_sources()
        } else {
            Vec::new()
        },
    }
}

fn exact(value: &str) -> Regex {
    Regex::new(&format!("^{}$", regex::escape(value))).expect("an escaped literal")
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

    /// The operators' layout (SPEC §1): pods the runtime knows by their labels and QoS
    /// class, then the path rules for both kubelet drivers (systemd
    /// `kubepods.slice/kubepods-besteffort.slice/...`, cgroupfs `kubepods/besteffort/...`)
    /// and Yarn.
    pub fn defaults() -> RuleSet {
        RuleSet::new(Self::default_rules())
    }

    /// The pod rules of the defaults, in order: the per-pod override label, a debug
    /// namespace, then the QoS class (BestEffort offline with its queue's priority).
    pub fn default_pod_rules() -> Vec<Rule> {
        let label = |value: &str| PodMatch {
            labels: vec![(CLASS_LABEL.into(), exact(value))],
            ..PodMatch::default()
        };
        let qos = |q: Qos| PodMatch {
            qos: Some(q),
            ..PodMatch::default()
        };
        vec![
            pod_rule("pod-label-offline", label("offline"), Class::Offline, None),
            pod_rule("pod-label-online", label("online"), Class::Online, None),
            pod_rule(
                "pod-debug-namespace",
                PodMatch {
                    namespace: Some(Regex::new("^debug(-.*)?$").expect("a valid regex")),
                    qos: Some(Qos::BestEffort),
                    ..PodMatch::default()
                },
                Class::Offline,
                Some(Priority::Debug),
            )
            .without_priority_sources(),
            pod_rule(
                "pod-besteffort",
                qos(Qos::BestEffort),
                Class::Offline,
                Some(DEFAULT_OFFLINE_PRIORITY),
            ),
            pod_rule("pod-burstable", qos(Qos::Burstable), Class::Online, None),
            pod_rule("pod-guaranteed", qos(Qos::Guaranteed), Class::Online, None),
        ]
    }

    pub fn default_rules() -> Vec<Rule> {
        let mut rules = Self::default_pod_rules();
        rules.extend(Self::default_path_rules());
        rules
    }

    pub fn default_path_rules() -> Vec<Rule> {
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

    /// Classifies by path alone (no pod known).
    pub fn classify(&self, rel_path: &str) -> Classification {
        self.classify_with(rel_path, None)
    }

    /// Classifies a cgroup, with its pod when the runtime knows it.
    pub fn classify_in(&self, rel_path: &str, pods: &PodTable) -> Classification {
        self.classify_with(rel_path, pods.lookup(rel_path).as_ref())
    }

    pub fn classify_with(&self, rel_path: &str, pod: Option<&PodContext<'_>>) -> Classification {
        for (rule, name) in self.rules.iter().zip(&self.names) {
            if let Some(want) = &rule.pod
                && !pod.is_some_and(|ctx| want.matches(ctx))
            {
                continue;
            }
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
            let from_pod = || {
                let ctx = pod.filter(|_| rule.pod.is_some())?;
                rule.priority_from.iter().find_map(|s| s.read(ctx))
            };
            let priority = match rule.class {
                Class::Offline => Some(
                    captured
                        .or_else(from_pod)
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

impl Rule {
    fn without_priority_sources(mut self) -> Rule {
        self.priority_from.clear();
        self
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

#[cfg(test)]
mod pod_tests {
    use super::*;
    use crate::model::pod::Pod;

    fn table(labels: &[(&str, &str)], namespace: &str) -> PodTable {
        let mut t = PodTable::new();
        t.replace(vec![Pod::for_tests("0a1b", namespace, labels)]);
        t
    }

    fn of(pods: &PodTable, path: &str) -> (Class, Option<Priority>, String) {
        let c = RuleSet::defaults().classify_in(path, pods);
        (c.class, c.priority, c.rule.to_string())
    }

    const BE: &str = "kubepods/besteffort/pod0a1b";
    const BU: &str = "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b.slice";

    #[test]
    fn a_besteffort_pod_takes_its_queues_priority_for_the_pod_and_its_containers() {
        let pods = table(&[("queue", "root.P1")], "spark");
        let want = (
            Class::Offline,
            Some(Priority::P1),
            "pod-besteffort".to_string(),
        );
        assert_eq!(of(&pods, BE), want);
        assert_eq!(of(&pods, &format!("{BE}/c1")), want);
        let pods = table(&[("queue", "root.debug")], "spark");
        assert_eq!(of(&pods, BE).1, Some(Priority::Debug));
        // No queue: P3, the default of offline work.
        assert_eq!(of(&table(&[], "spark"), BE).1, Some(Priority::P3));
        // An unparsable queue falls through to the next source, then the rule's.
        let pods = table(&[("queue", "root.sandbox")], "spark");
        assert_eq!(of(&pods, BE).1, Some(Priority::P3));
        // The override label wins over the queue.
        let pods = table(&[("queue", "root.P1"), (PRIORITY_LABEL, "P2")], "spark");
        assert_eq!(of(&pods, BE).1, Some(Priority::P2));
    }

    #[test]
    fn the_class_label_and_a_debug_namespace_override_the_qos_class() {
        let pods = table(&[(CLASS_LABEL, "offline"), ("queue", "root.P2")], "spark");
        assert_eq!(
            of(&pods, BU),
            (
                Class::Offline,
                Some(Priority::P2),
                "pod-label-offline".into()
            )
        );
        let pods = table(&[(CLASS_LABEL, "online")], "spark");
        assert_eq!(
            of(&pods, BE),
            (Class::Online, None, "pod-label-online".into())
        );
        let pods = table(&[("queue", "root.P1")], "debug-alice");
        assert_eq!(
            of(&pods, BE),
            (
                Class::Offline,
                Some(Priority::Debug),
                "pod-debug-namespace".into()
            )
        );
        // A Burstable pod is online.
        assert_eq!(of(&table(&[], "spark"), BU).0, Class::Online);
    }

    #[test]
    fn an_unknown_pod_falls_back_to_the_path_rules() {
        let none = PodTable::new();
        assert_eq!(
            of(&none, BE),
            (
                Class::Offline,
                Some(Priority::P3),
                "kubepods-besteffort".into()
            )
        );
        // Even labelled offline, a pod the runtime does not list stays what its path says.
        assert_eq!(of(&none, BU).0, Class::Online);
    }

    #[test]
    fn container_rules_never_match_the_pods_own_cgroup() {
        let rules = RuleSet::new(vec![Rule {
            name: "executor".into(),
            pattern: Regex::new("").unwrap(),
            pod: Some(PodMatch {
                container: Some(Regex::new("^executor$").unwrap()),
                ..PodMatch::default()
            }),
            class: Class::Offline,
            priority: Some(Priority::P2),
            priority_from: Vec::new(),
        }]);
        let pods = table(&[], "spark");
        assert_eq!(
            rules.classify_in(&format!("{BE}/c1"), &pods).class,
            Class::Offline
        );
        assert_eq!(rules.classify_in(BE, &pods).class, Class::System);
    }
}
