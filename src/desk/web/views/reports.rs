//! The report list with its filters and pages.

use maud::{html, Markup};

use super::components::{due_cell, fmt_time, source_badge, status_badge};
use super::layout::staff_page;
use crate::desk::domain::{Role, Source, Status};
use crate::desk::store::ReportRow;
use crate::desk::web::api::ListQuery;
use crate::desk::web::{url_encode, Session};
use crate::desk::Desk;

fn select_opt(value: &str, label: &str, current: Option<&str>) -> Markup {
    html! { option value=(value) selected[current == Some(value)] { (label) } }
}

pub fn reports_page(
    desk: &Desk,
    s: &Session,
    rows: &[ReportRow],
    total: i64,
    q: &ListQuery,
    page: i64,
    limit: i64,
) -> Markup {
    let cfg = desk.desk_config();
    let cur_status = q.status.as_deref();
    let pages = ((total + limit - 1) / limit).max(1);
    let link = |p: i64| {
        let mut parts = vec![format!("page={p}")];
        for (k, v) in [
            ("status", &q.status),
            ("category", &q.category),
            ("agency", &q.agency),
            ("source", &q.source),
            ("q", &q.q),
            ("overdue", &q.overdue),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", url_encode(v)));
            }
        }
        format!("/reports?{}", parts.join("&"))
    };
    let body = html! {
        div.page-head {
            div {
                h1 { "Laporan" }
                p.muted { (total) " laporan" }
            }
        }
        form.filters method="get" action="/reports" {
            input type="search" name="q" placeholder="Cari tiket, judul, isi, alamat…" value=(q.q.clone().unwrap_or_default());
            select name="status" aria-label="Status" {
                (select_opt("", "Semua status", cur_status))
                (select_opt("open", "Masih berjalan", cur_status))
                (select_opt("red", "Merah: belum ditindaklanjuti", cur_status))
                (select_opt("yellow", "Kuning: sudah dijawab", cur_status))
                (select_opt("green", "Hijau: selesai", cur_status))
                (select_opt("grey", "Ditutup (ditolak/digabung)", cur_status))
                @for st in Status::ALL { (select_opt(st.as_str(), st.label(), cur_status)) }
            }
            select name="category" aria-label="Kategori" {
                (select_opt("", "Semua kategori", q.category.as_deref()))
                @for c in &cfg.categories { (select_opt(&c.id, &c.name, q.category.as_deref())) }
            }
            @if s.user.role != Role::Agency {
                select name="agency" aria-label="OPD" {
                    (select_opt("", "Semua OPD", q.agency.as_deref()))
                    @for a in &cfg.agencies { (select_opt(&a.id, &a.name, q.agency.as_deref())) }
                }
            }
            select name="source" aria-label="Sumber" {
                (select_opt("", "Semua sumber", q.source.as_deref()))
                @for src in Source::ALL { (select_opt(src.as_str(), src.label(), q.source.as_deref())) }
            }
            label.check { input type="checkbox" name="overdue" value="1" checked[q.overdue.as_deref() == Some("1")]; " Lewat tenggat" }
            button.btn type="submit" { "Tampilkan" }
        }
        section.card.flush {
            table.table.table-reports {
                thead { tr {
                    th { "Tiket" } th { "Judul" } th { "Kategori" } th { "Sumber" } th { "OPD" }
                    th { "Status" } th { "Masuk" } th { "Tenggat" }
                } }
                tbody {
                    @if rows.is_empty() { tr { td.muted colspan="8" { "Tidak ada laporan yang cocok." } } }
                    @for r in rows {
                        @let status: Status = r.status.parse().unwrap_or(Status::Received);
                        @let source: Source = r.source.parse().unwrap_or(Source::Web);
                        tr {
                            td { a.mono href={"/reports/" (r.ticket)} { (r.ticket) } }
                            td.title-cell {
                                a href={"/reports/" (r.ticket)} { (r.title) }
                                @if !r.address.is_empty() { div.muted.small { (r.address) } }
                            }
                            td { (desk.labels.category_name(&r.category_id)) }
                            td { (source_badge(source)) }
                            td { (r.agency_id.as_deref().and_then(|a| cfg.agency(a)).map(|a| a.short()).unwrap_or_else(|| "—".into())) }
                            td { (status_badge(status)) }
                            td.nowrap { (fmt_time(desk, r.created_at)) }
                            td.nowrap { (due_cell(desk, r)) }
                        }
                    }
                }
            }
        }
        @if pages > 1 {
            nav.pager {
                @if page > 1 { a.btn href=(link(page - 1)) { "‹ Sebelumnya" } }
                span.muted { "Halaman " (page) " dari " (pages) }
                @if page < pages { a.btn href=(link(page + 1)) { "Berikutnya ›" } }
            }
        }
    };
    staff_page(desk, s, "reports", "Laporan", body)
}
