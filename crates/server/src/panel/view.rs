//! The panel's HTML: the page frame, notices, forms and the block maps.
//! Server-side only (maud escapes every value); the little script there is
//! adds copy buttons and confirmations, and every page reads without it.

use maud::{DOCTYPE, Markup, html};
use vmfabric_model::view::{BlockMap, CellState, Usage};
use vmfabric_model::{Access, Error, TokenInfo};

/// What a page knows about its reader.
#[derive(Debug, Clone)]
pub struct Reader {
    pub token: TokenInfo,
    pub csrf: String,
}

impl Reader {
    pub fn may(&self, a: Access<'_>) -> bool {
        self.token.allows(a)
    }
}

/// The outcome of the form the page answers, shown at its top and next to
/// the field it names.
#[derive(Debug, Clone, Default)]
pub struct Notice {
    pub done: Option<String>,
    pub error: Option<Error>,
}

impl Notice {
    pub fn done(text: impl Into<String>) -> Notice {
        Notice {
            done: Some(text.into()),
            error: None,
        }
    }

    pub fn error(e: Error) -> Notice {
        Notice {
            done: None,
            error: Some(e),
        }
    }

    /// The field, value and rule of an error about `field`.
    pub fn about(&self, field: &str) -> Option<(String, String)> {
        match &self.error {
            Some(Error::Invalid {
                field: f,
                value,
                rule,
            })
            | Some(Error::Conflict {
                field: f,
                value,
                rule,
            }) if f == field => Some((value.clone(), rule.clone())),
            _ => None,
        }
    }
}

pub const CSS: &str = include_str!("assets/panel.css");
pub const JS: &str = include_str!("assets/panel.js");

/// A whole page: header with navigation, the notice, the body.
pub fn page(title: &str, reader: Option<&Reader>, notice: &Notice, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · vmfabric" }
                link rel="stylesheet" href="/assets/panel.css";
                script src="/assets/panel.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    a.brand href="/" { "vmfabric" }
                    @if let Some(r) = reader {
                        nav aria-label="Main" {
                            a href="/" { "Clusters" }
                            a href="/vms" { "VMs" }
                            a href="/search" { "Address search" }
                        }
                        div.who {
                            span { "Signed in as " strong { (who(&r.token)) } }
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(r.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (notice_box(notice))
                    (body)
                }
            }
        }
    }
}

pub fn who(t: &TokenInfo) -> String {
    let name = if t.name.is_empty() {
        format!("token {}", t.id)
    } else {
        t.name.clone()
    };
    format!("{name} ({})", t.role)
}

fn notice_box(n: &Notice) -> Markup {
    html! {
        @if let Some(d) = &n.done {
            p.done role="status" { (d) }
        }
        @if let Some(e) = &n.error {
            div.problem role="alert" {
                @match e {
                    Error::Invalid { field, value, rule } | Error::Conflict { field, value, rule } => {
                        p { strong { "Refused. " } "Field " code { (field) } @if !value.is_empty() { ", value " code { (value) } } ": " (rule) }
                    }
                    other => { p { strong { "Refused. " } (other.to_string()) } }
                }
            }
        }
    }
}

/// A labelled input; an error about it is shown beside it and announced.
pub fn field(
    label: &str,
    name: &str,
    value: &str,
    notice: &Notice,
    hint: Option<&str>,
    required: bool,
) -> Markup {
    let id = format!("f-{name}");
    let err = notice.about(name);
    let described = match (&err, hint) {
        (Some(_), _) => format!("e-{name}"),
        (None, Some(_)) => format!("h-{name}"),
        _ => String::new(),
    };
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) name=(name) value=(value) required[required]
                aria-invalid=[err.as_ref().map(|_| "true")]
                aria-describedby=[(!described.is_empty()).then_some(described.as_str())];
            @if let Some((v, rule)) = &err {
                p.field-error id=(format!("e-{name}")) { (name) @if !v.is_empty() { " " code { (v) } } ": " (rule) }
            } @else if let Some(h) = hint {
                p.hint id=(format!("h-{name}")) { (h) }
            }
        }
    }
}

/// A select of `options` (value, label).
pub fn select(label: &str, name: &str, options: &[(&str, &str)], chosen: &str) -> Markup {
    let id = format!("f-{name}");
    html! {
        div.field {
            label for=(id) { (label) }
            select id=(id) name=(name) {
                @for (v, l) in options {
                    option value=(v) selected[*v == chosen] { (l) }
                }
            }
        }
    }
}

/// A form posting to `action`, with the CSRF secret.
pub fn form(reader: &Reader, action: &str, label: &str, body: Markup) -> Markup {
    html! {
        form.act method="post" action=(action) {
            input type="hidden" name="csrf" value=(reader.csrf);
            (body)
            button type="submit" { (label) }
        }
    }
}

/// A one-button form that asks before it acts (with JavaScript).
pub fn danger(
    reader: &Reader,
    action: &str,
    label: &str,
    confirm: &str,
    hidden: &[(&str, &str)],
) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=(confirm) {
            input type="hidden" name="csrf" value=(reader.csrf);
            @for (k, v) in hidden {
                input type="hidden" name=(k) value=(v);
            }
            button.danger type="submit" { (label) }
        }
    }
}

/// A block's counts as a table row.
pub fn usage_cells(u: &Usage) -> Markup {
    html! {
        td.num { (u.used) }
        td.num { (u.reserved) }
        td.num { (u.cooling) }
        td.num { (u.system) }
        td.num { (u.free) }
        td.num { (u.total) }
    }
}

pub const USAGE_HEADS: [&str; 6] = ["Used", "Reserved", "Cooling", "System", "Free", "Total"];

const STATES: [CellState; 5] = [
    CellState::Used,
    CellState::Reserved,
    CellState::Cooling,
    CellState::System,
    CellState::Free,
];

fn state_label(s: CellState) -> &'static str {
    match s {
        CellState::Used => "used by a VM",
        CellState::Reserved => "reserved",
        CellState::Cooling => "cooling down",
        CellState::System => "system (never handed out)",
        CellState::Free => "free",
    }
}

pub fn legend() -> Markup {
    html! {
        ul.legend aria-label="Map legend" {
            @for s in STATES {
                li { span class=(format!("cell {}", s.as_str())) aria-hidden="true" {} (state_label(s)) }
            }
        }
        p.hint { "Hover over or focus a cell to see who holds it; in a map, arrow keys move from cell to cell." }
    }
}

/// A block's counts from its map (the node page, which has no usage page
/// of its own).
pub fn map_counts(m: &BlockMap) -> Markup {
    let sum = |f: fn(&vmfabric_model::view::MapCell) -> u128| m.cells.iter().map(f).sum::<u128>();
    let counts = [
        sum(|c| c.used),
        sum(|c| c.reserved),
        sum(|c| c.cooling),
        sum(|c| c.system),
        sum(|c| c.free),
    ];
    let total: u128 = counts.iter().copied().fold(0u128, u128::saturating_add);
    html! {
        table {
            thead { tr { @for h in USAGE_HEADS { th { (h) } } } }
            tbody { tr { @for n in counts { td.num { (n) } } td.num { (total) } } }
        }
    }
}

/// A block's map: a cell per address (or per run), each naming what it
/// is when hovered or focused; and, for screen readers and text browsers,
/// the list of what is held.
pub fn block_map(m: &BlockMap) -> Markup {
    let single = m.cell_size == 1;
    let held: Vec<_> = m
        .cells
        .iter()
        .filter(|c| single && c.state != CellState::Free)
        .collect();
    html! {
        div.map role="group" aria-label=(format!("Map of {}", m.block)) {
            @for c in &m.cells {
                @let text = if single {
                    match &c.holder {
                        Some(h) => format!("{}: {} — {h}", c.first, c.state.as_str()),
                        None => format!("{}: {}", c.first, c.state.as_str()),
                    }
                } else {
                    format!(
                        "{}–{}: {} used, {} reserved, {} cooling, {} system, {} free",
                        c.first, c.last, c.used, c.reserved, c.cooling, c.system, c.free
                    )
                };
                span class=(format!("cell {}", c.state.as_str())) tabindex="0" title=(text) aria-label=(text) data-tip=(text) {}
            }
        }
        @if single {
            details {
                summary { "Addresses not free (" (held.len()) ")" }
                ul.held {
                    @for c in held {
                        li { code { (c.first) } " — " (c.state.as_str()) @if let Some(h) = &c.holder { ": " (h) } }
                    }
                }
            }
        } @else {
            p.hint { "Each cell stands for " (m.cell_size) " addresses; its colour is the state most of them are in." }
        }
    }
}

/// `<pre>` with a copy button (with JavaScript) and a download link.
pub fn copyable(id: &str, text: &str, download: Option<&str>) -> Markup {
    html! {
        div.copyable {
            div.tools {
                button type="button" data-copy=(id) hidden { "Copy" }
                @if let Some(href) = download {
                    a href=(href) { "Download" }
                }
            }
            pre id=(id) tabindex="0" { (text) }
        }
    }
}

/// Links to the next page of a listing, keeping its filters.
pub fn next_link(base: &str, next: Option<&String>) -> Markup {
    html! {
        @if let Some(n) = next {
            p.pager { a href=(format!("{base}{}after={}", if base.contains('?') { "&" } else { "?" }, enc(n))) { "Next page →" } }
        }
    }
}

/// Percent-encoding for a query value or path segment.
pub fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}
