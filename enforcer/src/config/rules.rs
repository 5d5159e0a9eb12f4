//! The `[classify]` section: the classification rules from the file, replacing the built-in
//! ones unless `append_defaults` keeps those after them, and their checks.

use super::{error::ConfigError, raw::RawClassify};
use crate::model::{
    Class,
    classify::{Rule, RuleSet},
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
        rules.push(Rule {
            name: rule.name,
            pattern: rule.pattern,
            class: rule.class,
            priority: rule.priority,
        });
    }
    if classify.append_defaults {
        rules.extend(RuleSet::default_rules());
    }
    Ok(RuleSet::new(rules))
}
