//! Small pieces every page uses: times and spans as people read them, status and source
//! badges, incident level chips, the due-time cell, form error boxes.

use maud::{html, Markup};

use crate::desk::domain::{self, Colour, Source, Status};
use crate::desk::store::ReportRow;
use crate::desk::{Desk, FieldError};

pub fn fmt_time(desk: &Desk, ts: i64) -> String {
    desk.labels.time(ts)
}

pub fn fmt_opt(desk: &Desk, ts: Option<i64>) -> String {
    ts.map(|t| fmt_time(desk, t)).unwrap_or_else(|| "—".into())
}

/// A span of time the way people say it: "3 hari 2 jam", "45 menit".
pub fn fmt_span(seconds: i64) -> String {
    let s = seconds.abs();
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    match (d, h) {
        (0, 0) => format!("{} menit", m.max(1)),
        (0, _) => format!("{h} jam {m} menit"),
        _ => format!("{d} hari {h} jam"),
    }
}

pub(super) fn colour_class(c: Colour) -> &'static str {
    match c {
        Colour::Red => "red",
        Colour::Yellow => "yellow",
        Colour::Green => "green",
        Colour::Grey => "grey",
    }
}

pub fn status_badge(s: Status) -> Markup {
    html! {
        span class={"badge badge-" (colour_class(s.colour()))} title=(s.colour().label()) {
            span.dot {} (s.label())
        }
    }
}

pub(super) fn source_badge(s: Source) -> Markup {
    html! { span class={"src src-" (s.as_str())} { (s.label()) } }
}

pub(super) fn kind_label(kind: &str) -> &'static str {
    match kind {
        "traffic_jam" => "Kemacetan",
        "crowd" => "Kerumunan",
        "garbage" => "Sampah",
        "camera_offline" => "Kamera terputus",
        "camera_tamper" => "Kamera terganggu",
        _ => "Insiden",
    }
}

pub(super) fn level_chip(level: &str) -> Markup {
    let class = match level {
        "macet" | "tinggi" | "offline" => "lvl lvl-high",
        "padat" | "sedang" => "lvl lvl-mid",
        _ => "lvl",
    };
    html! { span class=(class) { (level) } }
}

pub(super) fn due_cell(desk: &Desk, r: &ReportRow) -> Markup {
    let now = desk.clock.now();
    let status: Option<Status> = r.status.parse().ok();
    match (status, r.due_at) {
        (Some(s), Some(due)) if domain::is_overdue(s, Some(due), now) => html! {
            span.overdue title=(fmt_time(desk, due)) { "Terlambat " (fmt_span(now - due)) }
        },
        (Some(s), Some(due)) if s.awaits_agency() => html! {
            span.due title=(fmt_time(desk, due)) { "Sisa " (fmt_span(due - now)) }
        },
        (_, Some(due)) => html! { span.muted { (fmt_time(desk, due)) } },
        _ => html! { span.muted { "—" } },
    }
}

pub(super) fn field_error<'a>(errors: &'a [FieldError], field: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.as_str())
}

pub(super) fn errors_box(errors: &[FieldError]) -> Markup {
    html! {
        @if !errors.is_empty() {
            div.alert.alert-error role="alert" {
                strong { "Periksa kembali isian berikut:" }
                ul { @for e in errors { li { (e.message) } } }
            }
        }
    }
}
