//! The dashboard: numbers for a period, the red/yellow/green board, tables by category and by
//! agency, the overdue list and the live feed of camera incidents.

use maud::{html, Markup};

use super::components::{due_cell, fmt_opt, fmt_time, level_chip, status_badge};
use super::layout::staff_page;
use crate::desk::dashboard::{Dashboard, GroupStat};
use crate::desk::domain::{Role, Status};
use crate::desk::store::ReportRow;
use crate::desk::web::Session;
use crate::desk::Desk;

fn kpi(label: &str, key: &str, value: String, note: &str, class: &str) -> Markup {
    html! {
        div class={"kpi " (class)} {
            div.kpi-label { (label) }
            div.kpi-value data-kpi=(key) { (value) }
            div.kpi-note { (note) }
        }
    }
}

fn pct(n: i64, d: i64) -> String {
    if d == 0 {
        "—".into()
    } else {
        format!("{:.0}%", 100.0 * n as f64 / d as f64)
    }
}

fn group_table(desk: &Desk, rows: &[GroupStat], first: &str, categories: bool) -> Markup {
    html! {
        table.table {
            thead { tr {
                th { (first) }
                @if categories { th.num { "SLA" } }
                th.num { "Masuk" } th.num { "Diproses" } th.num { "Selesai" }
                th.num { "Lewat tenggat" } th.num { "Tepat waktu" }
            } }
            tbody {
                @if rows.is_empty() {
                    tr { td.muted colspan="7" { "Belum ada laporan." } }
                }
                @for g in rows {
                    tr {
                        td {
                            @if categories {
                                a href={"/reports?category=" (g.id)} { (g.name) }
                            } @else {
                                a href={"/reports?agency=" (g.id)} { (g.name) }
                            }
                        }
                        @if categories {
                            td.num { (desk.desk_config().category(&g.id).map(|c| format!("{} jam", c.sla_hours)).unwrap_or_default()) }
                        }
                        td.num { (g.total) }
                        td.num { (g.open) }
                        td.num { (g.done) }
                        td.num { @if g.overdue > 0 { span.overdue { (g.overdue) } } @else { "0" } }
                        td.num { (pct(g.on_time, g.answered + g.overdue)) }
                    }
                }
            }
        }
    }
}

fn feed_item(desk: &Desk, r: &ReportRow, snapshot: Option<i64>) -> Markup {
    let status: Status = r.status.parse().unwrap_or(Status::Received);
    html! {
        a.feed-item href={"/reports/" (r.ticket)} data-ticket=(r.ticket) {
            @if let Some(id) = snapshot {
                img.feed-thumb src={"/attachments/" (id)} alt={"Cuplikan " (r.ticket)} loading="lazy";
            } @else {
                div.feed-thumb.feed-thumb-empty { "Tanpa cuplikan" }
            }
            div.feed-body {
                div.feed-title { (r.title) }
                div.feed-meta {
                    span { (r.site_name.as_deref().unwrap_or("")) }
                    @if let Some(l) = &r.level { (level_chip(l)) }
                    @if r.cleared_at.is_some() { span.cleared { "sudah normal" } }
                }
                div.feed-meta {
                    (status_badge(status))
                    span.muted { (fmt_time(desk, r.created_at)) }
                }
            }
        }
    }
}

pub fn dashboard_page(
    desk: &Desk,
    s: &Session,
    d: &Dashboard,
    overdue: &[ReportRow],
    feed: &[(ReportRow, Option<i64>)],
    period: &str,
) -> Markup {
    let periods = [
        ("today", "Hari ini"),
        ("7d", "7 hari"),
        ("30d", "30 hari"),
        ("all", "Semua"),
    ];
    let total_board = (d.red + d.yellow + d.green + d.grey).max(1) as f64;
    let bar = |n: i64| format!("width: {:.2}%", 100.0 * n as f64 / total_board);
    let scope = match s.user.role {
        Role::Agency => s.user.agency_id.as_deref().map(|a| {
            format!(
                "Laporan yang didisposisikan ke {}",
                desk.labels.agency_name(a)
            )
        }),
        _ => None,
    };
    let body = html! {
        div.page-head {
            div {
                h1 { "Dasbor" }
                p.muted {
                    @if let Some(sc) = &scope { (sc) " · " }
                    "Diperbarui " (fmt_time(desk, desk.clock.now()))
                }
            }
            nav.pills {
                @for (k, label) in periods {
                    a href={"/dashboard?period=" (k)} class=@if k == period { "active" } { (label) }
                }
            }
        }
        section.kpis data-period=(period) {
            (kpi("Laporan masuk", "total", d.total.to_string(), "semua kanal: web, SMS, CCTV", ""))
            (kpi("Diproses", "open", d.open.to_string(), "belum selesai", "kpi-red"))
            (kpi("Selesai", "done", d.done.to_string(), "dikonfirmasi puas", "kpi-green"))
            (kpi("Lewat tenggat", "overdue", d.overdue.to_string(), "melewati SLA, belum dijawab", if d.overdue > 0 { "kpi-alert" } else { "" }))
            (kpi("Kepatuhan SLA", "sla", d.sla_compliance.map(|p| format!("{p:.0}%")).unwrap_or_else(|| "—".into()),
                &format!("{} dari {} tepat waktu", d.sla_on_time, d.sla_judged), "kpi-blue"))
        }
        div.grid-main {
            div.col {
                section.card {
                    h2 { "Papan status" }
                    div.board-bar {
                        span.seg.seg-red style=(bar(d.red)) {}
                        span.seg.seg-yellow style=(bar(d.yellow)) {}
                        span.seg.seg-green style=(bar(d.green)) {}
                        span.seg.seg-grey style=(bar(d.grey)) {}
                    }
                    div.board-legend {
                        a href="/reports?status=red" { span.dot.dot-red {} "Merah " strong data-kpi="red" { (d.red) } small { "belum ditindaklanjuti" } }
                        a href="/reports?status=yellow" { span.dot.dot-yellow {} "Kuning " strong data-kpi="yellow" { (d.yellow) } small { "sudah dijawab OPD" } }
                        a href="/reports?status=green" { span.dot.dot-green {} "Hijau " strong data-kpi="green" { (d.green) } small { "pelapor puas" } }
                        a href="/reports?status=grey" { span.dot.dot-grey {} "Ditutup " strong data-kpi="grey" { (d.grey) } small { "ditolak / digabung" } }
                    }
                }
                section.card {
                    h2 { "Per kategori" }
                    (group_table(desk, &d.by_category, "Kategori", true))
                }
                section.card {
                    h2 { "Per OPD" }
                    (group_table(desk, &d.by_agency, "OPD", false))
                }
                section.card {
                    div.card-head {
                        h2 { "Lewat tenggat" }
                        a.small href="/reports?overdue=1" { "Lihat semua" }
                    }
                    table.table {
                        thead { tr { th { "Tiket" } th { "Judul" } th { "OPD" } th { "Tenggat" } th { "Keterlambatan" } } }
                        tbody {
                            @if overdue.is_empty() {
                                tr { td.muted colspan="5" { "Tidak ada laporan yang melewati tenggat." } }
                            }
                            @for r in overdue {
                                tr {
                                    td { a.mono href={"/reports/" (r.ticket)} { (r.ticket) } }
                                    td { (r.title) }
                                    td { (r.agency_id.as_deref().and_then(|a| desk.desk_config().agency(a)).map(|a| a.short()).unwrap_or_default()) }
                                    td.nowrap { (fmt_opt(desk, r.due_at)) }
                                    td.nowrap { (due_cell(desk, r)) }
                                }
                            }
                        }
                    }
                }
            }
            aside.col {
                section.card.feed-card {
                    div.card-head {
                        h2 { "Insiden CCTV terbaru" }
                        span.live #live-status data-state="connecting" { span.dot {} span.live-text { "menghubungkan…" } }
                    }
                    p.muted.small { "Laporan otomatis dari enam kamera simpang; muncul di sini begitu diterima." }
                    div.feed #feed data-feed="cctv" {
                        @if feed.is_empty() {
                            p.muted.feed-empty { "Belum ada insiden dari kamera." }
                        }
                        @for (r, snap) in feed { (feed_item(desk, r, *snap)) }
                    }
                }
            }
        }
    };
    staff_page(desk, s, "dashboard", "Dasbor", body)
}
