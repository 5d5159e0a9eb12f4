//! The `[classify]` section: the classification rules from the file, replacing the built-in
//! ones unless `append_defaults` keeps those after them, and their checks.

use super::{error::ConfigError, raw::RawClassify};
use regex::Regex;

use crate::model::{
    Class,
    classify::{PodMatch, PrioritySource, Rule, RuleSet},
    pod::Qos,
};

/// Builds and checks the rule set; `invalid(field, message)` makes the one-line error.
pub(super) fn parse(
    classify: RawClassify,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<RuleSet, ConfigError> {
    let Some(raw_rules) = classify.rules else {
        return Ok(RuleSet::defaults());
    };
    let mut rules = Vec::with_capacity(raw_rules.len());
    let match_all = Regex::new("").expect("the empty regex");
    for (i, rule) in raw_rules.into_iter().enumerate() {
        if rule.priority.is_some() && rule.class != Class::Offline {
            return Err(invalid(
                format!("classify.rules[{i}].priority"),
                format!(
                    "only offline rules have a priority (this rule's class is {})",
                    rule.class
                ),
            ));
        }
        if rule.name.trim().is_empty() {
            return Err(invalid(
                format!("classify.rules[{i}].name"),
                "must not be empty".into(),
            ));
        }
        let field = |f: &str| format!("classify.rules[{i}].{f}");
        let pairs = |f: &str, map: Option<std::collections::BTreeMap<String, String>>| {
            map.unwrap_or_default()
                .into_iter()
                .map(|(k, v)| {
                    Regex::new(&v).map(|re| (k.clone(), re)).map_err(|e| {
                        invalid(
                            field(&format!("{f}.{k}")),
                            format!("invalid regex {v:?}: {e}"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let labels = pairs("labels", rule.labels)?;
        let annotations = pairs("annotations", rule.annotations)?;
        let qos = match rule.qos {
            None => None,
            Some(q) => Some(Qos::parse(&q).ok_or_else(|| {
                invalid(
                    field("qos"),
                    format!("{q:?} is not a QoS class (guaranteed, burstable or besteffort)"),
                )
            })?),
        };
        let priority_from = rule
            .priority_from
            .unwrap_or_default()
            .iter()
            .map(|s| {
                PrioritySource::parse(s).ok_or_else(|| {
                    invalid(
                        field("priority_from"),
                        format!("{s:?} is not \"label:<key>\" or \"annotation:<key>\""),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !priority_from.is_empty() && rule.class != Class::Offline {
            return Err(invalid(
                field("priority_from"),
                format!(
                    "only offline rules have a priority (this rule's class is {})",
                    rule.class
                ),
            ));
        }
        let pod = (rule.namespace.is_some()
            || !labels.is_empty()
            || !annotations.is_empty()
            || qos.is_some()
            || rule.container.is_some())
        .then_some(PodMatch {
            namespace: rule.namespace,
            labels,
            annotations,
            qos,
            container: rule.container,
        });
        if pod.is_none() && !priority_from.is_empty() {
            return Err(invalid(
                field("priority_from"),
                "reads a pod's labels: the rule needs a pod matcher (namespace, labels, annotations, qos or container)".into(),
            ));
        }
        let pattern = match (rule.pattern, &pod) {
            (Some(p), _) => p,
            (None, Some(_)) => match_all.clone(),
            (None, None) => {
                return Err(invalid(
                    field("match"),
                    "missing: a rule needs a path regex (match) or a pod matcher (namespace, labels, annotations, qos, container)".into(),
                ));
            }
        };
        rules.push(Rule {
            name: rule.name,
            pattern,
            pod,
            class: rule.class,
            priority: rule.priority,
            priority_from,
        });
    }
    if classify.append_defaults {
        rules.extend(RuleSet::default_rules());
    }
    Ok(RuleSet::new(rules))
}
