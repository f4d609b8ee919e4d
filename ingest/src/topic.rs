//! MQTT topic names, topic filters and topic templates.
//!
//! A *topic filter* (`fleet/+/status`, `sensors/#`) selects topics for
//! subscriptions. A *topic template* is a filter whose levels may be
//! `{name}` captures (`fleet/{fleet}/{device_id}/readings`): a capture
//! matches one level like `+` and hands its value to the rule as a tag.

use std::fmt;

/// Why a topic, filter or template is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TopicError(pub String);

/// Checks a topic name a client publishes to: not empty, no wildcards, no NUL.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError("topic name is empty".into()));
    }
    if topic.len() > 65_535 {
        return Err(TopicError("topic name is longer than 65535 bytes".into()));
    }
    if let Some(c) = topic.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
        return Err(TopicError(format!(
            "topic name `{topic}` contains `{}`, which only filters may use",
            c.escape_default()
        )));
    }
    Ok(())
}

/// Checks a topic filter: `+` fills a whole level, `#` only as the last level.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError("topic filter is empty".into()));
    }
    if filter.contains('\0') {
        return Err(TopicError(format!("topic filter `{}` contains NUL", filter.escape_default())));
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(TopicError(format!("topic filter `{filter}`: `#` must be the whole last level")));
        }
        if level.contains('+') && *level != "+" {
            return Err(TopicError(format!("topic filter `{filter}`: `+` must fill a whole level")));
        }
    }
    Ok(())
}

/// True if `topic` matches `filter` (MQTT 3.1.1 §4.7; topics starting with
/// `$` are not matched by a leading wildcard).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Capture(String),
    Plus,
    Hash,
}

/// A topic filter with named captures, e.g. `fleet/{fleet}/{device_id}/readings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    source: String,
    levels: Vec<Level>,
}

impl TopicTemplate {
    /// Parses a template; `{name}` must fill a whole level and be a valid column name.
    pub fn parse(source: &str) -> Result<Self, TopicError> {
        let mut levels = Vec::new();
        let parts: Vec<&str> = source.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let level = if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                telemark_engine::validate_name("topic capture", name)
                    .map_err(|e| TopicError(format!("topic `{source}`: {e}")))?;
                if levels.iter().any(|l| matches!(l, Level::Capture(n) if n == name)) {
                    return Err(TopicError(format!("topic `{source}`: capture `{{{name}}}` appears twice")));
                }
                Level::Capture(name.to_string())
            } else if part.contains('{') || part.contains('}') {
                return Err(TopicError(format!("topic `{source}`: a `{{name}}` capture must fill a whole level")));
            } else if *part == "+" {
                Level::Plus
            } else if *part == "#" {
                if i + 1 != parts.len() {
                    return Err(TopicError(format!("topic `{source}`: `#` must be the whole last level")));
                }
                Level::Hash
            } else {
                validate_topic_filter(part).map_err(|e| TopicError(format!("topic `{source}`: {e}")))?;
                Level::Literal((*part).to_string())
            };
            levels.push(level);
        }
        if source.is_empty() {
            return Err(TopicError("topic template is empty".into()));
        }
        Ok(TopicTemplate { source: source.to_string(), levels })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The plain MQTT filter (captures become `+`), for subscribing to a broker.
    pub fn filter(&self) -> String {
        let parts: Vec<&str> = self
            .levels
            .iter()
            .map(|l| match l {
                Level::Literal(s) => s.as_str(),
                Level::Capture(_) | Level::Plus => "+",
                Level::Hash => "#",
            })
            .collect();
        parts.join("/")
    }

    /// The names of the captures, in order.
    pub fn captures(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().filter_map(|l| match l {
            Level::Capture(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// Matches `topic`; on success returns the captured `(name, value)` pairs.
    pub fn capture<'t>(&self, topic: &'t str) -> Option<Vec<(&str, &'t str)>> {
        if topic.starts_with('$') && matches!(self.levels.first(), Some(Level::Plus | Level::Capture(_) | Level::Hash))
        {
            return None;
        }
        let mut out = Vec::new();
        let mut t = topic.split('/');
        for level in &self.levels {
            match (level, t.next()) {
                (Level::Hash, _) => return Some(out),
                (Level::Plus, Some(_)) => {}
                (Level::Capture(name), Some(v)) => out.push((name.as_str(), v)),
                (Level::Literal(l), Some(v)) if l == v => {}
                _ => return None,
            }
        }
        t.next().is_none().then_some(out)
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_like_the_spec() {
        assert!(filter_matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(filter_matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
        assert!(filter_matches("sport/#", "sport"));
        assert!(filter_matches("sport/+", "sport/"));
        assert!(!filter_matches("sport/+", "sport"));
        assert!(filter_matches("+/+", "/finance"));
        assert!(filter_matches("/+", "/finance"));
        assert!(!filter_matches("+", "/finance"));
        assert!(filter_matches("#", "a/b/c"));
        assert!(!filter_matches("#", "$SYS/uptime"));
        assert!(filter_matches("$SYS/#", "$SYS/uptime"));
        assert!(!filter_matches("a/b", "a/b/c"));
    }

    #[test]
    fn filter_and_name_validation() {
        assert!(validate_topic_filter("a/#/b").is_err());
        assert!(validate_topic_filter("a/b#").is_err());
        assert!(validate_topic_filter("a+/b").is_err());
        assert!(validate_topic_filter("+/a/#").is_ok());
        assert!(validate_topic_name("a/+").is_err());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("a/b").is_ok());
    }

    #[test]
    fn templates_capture_levels() {
        let t = TopicTemplate::parse("fleet/{fleet}/{device_id}/readings").unwrap();
        assert_eq!(t.filter(), "fleet/+/+/readings");
        assert_eq!(
            t.capture("fleet/north/truck-1/readings").unwrap(),
            vec![("fleet", "north"), ("device_id", "truck-1")]
        );
        assert!(t.capture("fleet/north/truck-1/status").is_none());
        assert!(t.capture("fleet/north/truck-1/readings/x").is_none());
        let t = TopicTemplate::parse("sensors/{device_id}/#").unwrap();
        assert_eq!(t.capture("sensors/s1/a/b").unwrap(), vec![("device_id", "s1")]);
        assert!(TopicTemplate::parse("a/{x}y").is_err());
        assert!(TopicTemplate::parse("a/{x}/{x}").is_err());
        assert!(TopicTemplate::parse("a/#/b").is_err());
    }
}
