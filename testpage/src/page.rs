//! The page template (`MESSAGE`): `I am: {ip}, the version is: {version}` by default.
//!
//! The template is parsed once at start-up, so an unknown `{field}` is a configuration error
//! (exit 2) rather than a surprise on the first request, and rendered once, because every field
//! is fixed for the life of the process: the hot path only clones a `Bytes`.

use std::borrow::Cow;
use std::fmt;

use crate::pod_info::PodInfo;

/// The template the tutorials' page uses, byte for byte (a newline is appended when rendering).
pub const DEFAULT_TEMPLATE: &str = "I am: {ip}, the version is: {version}";

/// A value the template can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// The reported pod IP.
    Ip,
    /// `VERSION`.
    Version,
    /// The kernel's hostname.
    Hostname,
    /// `POD_NAME`.
    Pod,
    /// `POD_NAMESPACE`.
    Namespace,
    /// `NODE_NAME`.
    Node,
    /// `COLOR`.
    Color,
}

impl Field {
    /// Every field, in the order the docs list them.
    pub const ALL: [Field; 7] = [
        Field::Ip,
        Field::Version,
        Field::Hostname,
        Field::Pod,
        Field::Namespace,
        Field::Node,
        Field::Color,
    ];

    /// The name written between braces.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::Ip => "ip",
            Field::Version => "version",
            Field::Hostname => "hostname",
            Field::Pod => "pod",
            Field::Namespace => "namespace",
            Field::Node => "node",
            Field::Color => "color",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Field(Field),
}

/// A parsed `MESSAGE`. `{{` and `}}` stand for literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// Why a template was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{something}` where `something` is not a template field.
    #[error("unknown field {{{0}}} (known: {{ip}} {{version}} {{hostname}} {{pod}} {{namespace}} {{node}} {{color}})")]
    UnknownField(String),
    /// A `{` without its `}`, or a lone `}`.
    #[error("unbalanced brace at byte {0} (write {{{{ or }}}} for a literal brace)")]
    Unbalanced(usize),
    /// Nothing at all: a page with no text is a mistake (leave the setting out for the default).
    #[error("empty (leave it unset for the default page)")]
    Empty,
}

/// The text a template field renders to; unset optional values render empty.
fn render(pod: &PodInfo, field: Field) -> Cow<'_, str> {
    match field {
        Field::Ip => Cow::Owned(pod.ip.to_string()),
        Field::Version => Cow::Borrowed(&pod.version),
        Field::Hostname => Cow::Borrowed(&pod.hostname),
        Field::Pod => Cow::Borrowed(pod.pod_name()),
        Field::Namespace => Cow::Borrowed(pod.namespace.as_deref().unwrap_or("")),
        Field::Node => Cow::Borrowed(pod.node.as_deref().unwrap_or("")),
        Field::Color => Cow::Borrowed(pod.color.as_deref().unwrap_or("")),
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;

    fn from_str(text: &str) -> Result<Self, TemplateError> {
        if text.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.next_if(|&(_, c)| c == '{').is_some() => literal.push('{'),
                '}' if chars.next_if(|&(_, c)| c == '}').is_some() => literal.push('}'),
                '{' => {
                    let rest = &text[at + 1..];
                    let end = rest.find('}').ok_or(TemplateError::Unbalanced(at))?;
                    let name = &rest[..end];
                    let field = Field::ALL
                        .into_iter()
                        .find(|f| f.name() == name)
                        .ok_or_else(|| TemplateError::UnknownField(name.to_owned()))?;
                    if !literal.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Field(field));
                    // Skip the field name and its closing brace.
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                }
                '}' => return Err(TemplateError::Unbalanced(at)),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Text(literal));
        }
        Ok(Template { segments })
    }
}

impl Template {
    /// The page for this pod, with the newline the tutorials' page ends with.
    pub(crate) fn render(&self, pod: &PodInfo, newline: bool) -> String {
        let mut page = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => page.push_str(text),
                Segment::Field(field) => page.push_str(&render(pod, *field)),
            }
        }
        if newline {
            page.push('\n');
        }
        page
    }
}

impl Default for Template {
    fn default() -> Self {
        Template {
            segments: vec![
                Segment::Text("I am: ".into()),
                Segment::Field(Field::Ip),
                Segment::Text(", the version is: ".into()),
                Segment::Field(Field::Version),
            ],
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodInfo {
        PodInfo {
            ip: "172.1.62.11".parse().unwrap(),
            version: "0.5".into(),
            hostname: "host".into(),
            pod: Some("testpage-abc".into()),
            namespace: None,
            node: Some("node-1".into()),
            color: Some("blue".into()),
        }
    }

    #[test]
    fn default_template_is_the_tutorial_page() {
        let parsed: Template = DEFAULT_TEMPLATE.parse().unwrap();
        assert_eq!(parsed, Template::default());
        assert_eq!(
            parsed.render(&pod(), true),
            "I am: 172.1.62.11, the version is: 0.5\n"
        );
    }

    #[test]
    fn every_field_and_literal_braces() {
        let t: Template = "{{{pod}}} on {node} in {namespace} ({color}, {hostname}) é {version}"
            .parse()
            .unwrap();
        assert_eq!(
            t.render(&pod(), true),
            "{testpage-abc} on node-1 in  (blue, host) é 0.5\n"
        );
    }

    #[test]
    fn rejects_unknown_fields_and_stray_braces() {
        assert_eq!(
            "hi {name}".parse::<Template>(),
            Err(TemplateError::UnknownField("name".into()))
        );
        assert_eq!(
            "hi {ip".parse::<Template>(),
            Err(TemplateError::Unbalanced(3))
        );
        assert_eq!(
            "hi }".parse::<Template>(),
            Err(TemplateError::Unbalanced(3))
        );
    }
}
