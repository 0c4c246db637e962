//! HTML templates (maud escapes every interpolated value). Indonesian for the people who use
//! the desk; layout and components shared by the staff and public pages.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::api::ListQuery;
use super::Session;
use crate::desk::domain::{self, Colour, Role, Source, Status};
use crate::desk::service::{Created, Dashboard, Desk, FieldError, GroupStat, ReportView};
use crate::desk::store::{AuditRow, DeadLetterRow, ReportRow, UserRow};

pub fn fmt_time(desk: &Desk, ts: i64) -> String {
    desk.time_label(ts)
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

fn colour_class(c: Colour) -> &'static str {
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

fn source_badge(s: Source) -> Markup {
    html! { span class={"src src-" (s.as_str())} { (s.label()) } }
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "traffic_jam" => "Kemacetan",
        "crowd" => "Kerumunan",
        "garbage" => "Sampah",
        "camera_offline" => "Kamera terputus",
        "camera_tamper" => "Kamera terganggu",
        _ => "Insiden",
    }
}

fn level_chip(level: &str) -> Markup {
    let class = match level {
        "macet" | "tinggi" | "offline" => "lvl lvl-high",
        "padat" | "sedang" => "lvl lvl-mid",
        _ => "lvl",
    };
    html! { span class=(class) { (level) } }
}

fn due_cell(desk: &Desk, r: &ReportRow) -> Markup {
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

fn head(title: &str, extra_css: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Meja Pengaduan Lawang Jabo" }
            link rel="icon" href="/assets/logo.svg" type="image/svg+xml";
            @if extra_css {
                link rel="stylesheet" href="/assets/vendor/leaflet/leaflet.css";
            }
            link rel="stylesheet" href="/assets/desk.css";
        }
    }
}

fn brand(sub: &str) -> Markup {
    html! {
        a.brand href="/" {
            img src="/assets/logo.svg" alt="" width="34" height="34";
            span.brand-text {
                strong { "Lawang Jabo" }
                small { (sub) }
            }
        }
    }
}

/// The staff layout: top bar with navigation for the role, the page, a footer.
pub fn staff_page(desk: &Desk, s: &Session, active: &str, title: &str, body: Markup) -> Markup {
    let u = &s.user;
    let mut nav: Vec<(&str, &str, &str)> = vec![
        ("dashboard", "/dashboard", "Dasbor"),
        ("reports", "/reports", "Laporan"),
    ];
    if matches!(u.role, Role::Admin | Role::Operator) {
        nav.push(("audit", "/audit", "Jejak audit"));
        nav.push(("dead", "/dead-letters", "Pesan gagal"));
    }
    if u.role == Role::Admin {
        nav.push(("users", "/admin/users", "Pengguna"));
    }
    let agency = u
        .agency_id
        .as_deref()
        .and_then(|a| desk.desk_config().agency(a))
        .map(|a| a.short());
    html! {
        (DOCTYPE)
        html lang="id" {
            (head(title, false))
            body.staff {
                header.topbar {
                    div.topbar-inner {
                        (brand("Meja Pengaduan · Command Center Palembang"))
                        nav.mainnav {
                            @for (key, href, label) in &nav {
                                a href=(href) class=@if *key == active { "active" } { (label) }
                            }
                        }
                        div.userbox {
                            span.user-chip {
                                span.avatar { (u.display_name.chars().next().unwrap_or('?').to_uppercase().to_string()) }
                                span {
                                    strong { (u.display_name) }
                                    small { (u.role.label()) @if let Some(a) = &agency { " · " (a) } }
                                }
                            }
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.btn-ghost type="submit" { "Keluar" }
                            }
                        }
                    }
                }
                main.container { (body) }
                footer.footer {
                    "simpang desk · Pemerintah Kota Palembang · Dinas Komunikasi dan Informatika"
                }
                script src="/assets/desk.js" defer {}
            }
        }
    }
}

/// The citizens' layout: lighter header, no staff navigation.
pub fn public_page(title: &str, map: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="id" {
            (head(title, map))
            body.public {
                header.topbar.topbar-public {
                    div.topbar-inner {
                        (brand("Layanan Pengaduan Masyarakat · Kota Palembang"))
                        nav.mainnav {
                            a href="/lapor" { "Buat laporan" }
                            a href="/track" { "Lacak laporan" }
                        }
                    }
                }
                main.container.narrow { (body) }
                footer.footer {
                    "Laporan juga dapat dikirim lewat SMS ke 1708: ketik LAPOR (spasi) isi laporan."
                }
                @if map {
                    script src="/assets/vendor/leaflet/leaflet.js" defer {}
                    script src="/assets/map.js" defer {}
                }
            }
        }
    }
}

pub fn error_page(status: StatusCode, msg: &str) -> Markup {
    let title = match status.as_u16() {
        404 => "Tidak ditemukan",
        403 => "Tidak berwenang",
        401 => "Perlu masuk",
        409 => "Tidak dapat diproses",
        413 => "Berkas terlalu besar",
        422 | 400 => "Isian tidak valid",
        429 => "Terlalu banyak percobaan",
        _ => "Terjadi kesalahan",
    };
    public_page(
        title,
        false,
        html! {
            section.card.center {
                p.big-code { (status.as_u16()) }
                h1 { (title) }
                p { (msg) }
                p { a.btn href="/" { "Kembali ke beranda" } }
            }
        },
    )
}

fn field_error<'a>(errors: &'a [FieldError], field: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.as_str())
}

fn errors_box(errors: &[FieldError]) -> Markup {
    html! {
        @if !errors.is_empty() {
            div.alert.alert-error role="alert" {
                strong { "Periksa kembali isian berikut:" }
                ul { @for e in errors { li { (e.message) } } }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Login

pub fn login_page(error: Option<&str>, next: &str, csrf: &str, username: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="id" {
            (head("Masuk", false))
            body.login-body {
                main.login-wrap {
                    section.login-card {
                        div.login-brand {
                            img src="/assets/logo.svg" alt="" width="52" height="52";
                            div {
                                h1 { "Meja Pengaduan" }
                                p.muted { "Command Center Lawang Jabo · Kota Palembang" }
                            }
                        }
                        @if let Some(e) = error { div.alert.alert-error role="alert" { (e) } }
                        form method="post" action="/login" {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="next" value=(next);
                            label for="username" { "Nama akun" }
                            input #username name="username" type="text" autocomplete="username" required value=(username) autofocus;
                            label for="password" { "Kata sandi" }
                            input #password name="password" type="password" autocomplete="current-password" required;
                            button.btn.btn-primary.btn-block type="submit" { "Masuk" }
                        }
                        p.login-note {
                            "Akun bersifat pribadi untuk setiap petugas. Jangan meminjamkan kata sandi; "
                            "bila berganti tugas, minta administrator menonaktifkan akun Anda."
                        }
                    }
                    p.login-public {
                        "Warga: " a href="/lapor" { "buat laporan" } " · " a href="/track" { "lacak laporan" }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Dashboard

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
        Role::Agency => s
            .user
            .agency_id
            .as_deref()
            .map(|a| format!("Laporan yang didisposisikan ke {}", desk.agency_name(a))),
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

// ------------------------------------------------------------------------------------------------
// Report list

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
                parts.push(format!("{k}={}", super::url_encode(v)));
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
                            td { (desk.category_name(&r.category_id)) }
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

// ------------------------------------------------------------------------------------------------
// Report detail

fn evidence_rows(evidence: &str) -> Vec<(String, String)> {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(evidence) else {
        return Vec::new();
    };
    let num = |v: &Value| v.as_f64();
    let mut out = Vec::new();
    for (k, v) in &m {
        let (label, text) = match k.as_str() {
            "vehicle_count" => ("Jumlah kendaraan", v.to_string()),
            "occupancy" => (
                "Okupansi lajur",
                num(v)
                    .map(|x| format!("{:.0}%", x * 100.0))
                    .unwrap_or_default(),
            ),
            "degree_of_saturation" => (
                "Derajat kejenuhan (DS)",
                num(v).map(|x| format!("{x:.2}")).unwrap_or_default(),
            ),
            "median_speed_kmh" => (
                "Kecepatan median",
                num(v).map(|x| format!("{x:.1} km/jam")).unwrap_or_default(),
            ),
            "median_speed_px_s" => (
                "Kecepatan median (gambar)",
                num(v)
                    .map(|x| format!("{x:.0} px/detik"))
                    .unwrap_or_default(),
            ),
            "persons" => ("Jumlah orang", v.to_string()),
            "density_per_m2" => (
                "Kepadatan",
                num(v)
                    .map(|x| format!("{x:.2} orang/m²"))
                    .unwrap_or_default(),
            ),
            "dwell_s" => (
                "Lama kondisi",
                num(v).map(|x| fmt_span(x as i64)).unwrap_or_default(),
            ),
            "objects" => ("Objek diam", v.to_string()),
            "static_area" => (
                "Luas objek diam",
                num(v)
                    .map(|x| format!("{:.1}% zona", x * 100.0))
                    .unwrap_or_default(),
            ),
            "classes" => (
                "Jenis objek",
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
            ),
            "sharpness_ratio" => (
                "Rasio ketajaman",
                num(v).map(|x| format!("{x:.2}")).unwrap_or_default(),
            ),
            "histogram_distance" => (
                "Jarak histogram",
                num(v).map(|x| format!("{x:.2}")).unwrap_or_default(),
            ),
            "offline_s" => (
                "Lama terputus",
                num(v).map(|x| fmt_span(x as i64)).unwrap_or_default(),
            ),
            "reason" => ("Keterangan", v.as_str().unwrap_or_default().to_string()),
            other => (other, v.to_string()),
        };
        out.push((label.to_string(), text));
    }
    out
}

/// The Indonesian name of a stored field, for the audit trail people read.
fn field_label(key: &str) -> &str {
    match key {
        "status" => "status",
        "category_id" => "kategori",
        "agency_id" => "OPD",
        "title" => "judul",
        "description" => "isi",
        "address" => "alamat",
        "source" => "sumber",
        "operator_id" => "operator",
        "officer_id" => "petugas OPD",
        "verified_at" => "diverifikasi",
        "dispositioned_at" => "disposisi",
        "due_at" => "tenggat",
        "answered_at" => "dijawab",
        "closed_at" => "ditutup",
        "cleared_at" => "kondisi normal",
        "merged_into" => "digabung ke",
        "reject_reason" => "alasan penolakan",
        "level" => "tingkat",
        "evidence" => "bukti kamera",
        "incident_id" => "id insiden",
        "incident_seq" => "urutan pesan",
        "photo" => "foto",
        "snapshot" => "cuplikan",
        "phone_given" => "nomor HP dicantumkan",
        "kind" => "jenis",
        "body" => "pesan",
        "duplicate" => "duplikat",
        "active" => "aktif",
        "role" => "peran",
        "display_name" => "nama",
        "client" => "alamat klien",
        other => other,
    }
}

fn audit_value(desk: &Desk, names: &BTreeMap<i64, String>, key: &str, v: &Value) -> String {
    match v {
        Value::Number(n) if matches!(key, "operator_id" | "officer_id") => n
            .as_i64()
            .and_then(|id| names.get(&id).cloned())
            .unwrap_or_else(|| n.to_string()),
        Value::Null => "—".into(),
        Value::Bool(true) => "ya".into(),
        Value::Bool(false) => "tidak".into(),
        Value::String(s) if key == "status" => s
            .parse::<Status>()
            .map(|st| st.label().to_string())
            .unwrap_or_else(|_| s.clone()),
        Value::String(s) if key == "category_id" => desk.category_name(s),
        Value::String(s) if key == "agency_id" => desk
            .desk_config()
            .agency(s)
            .map(|a| a.short())
            .unwrap_or_else(|| s.clone()),
        Value::String(s) if key == "source" => s
            .parse::<Source>()
            .map(|src| src.label().to_string())
            .unwrap_or_else(|_| s.clone()),
        Value::String(s) if key == "role" => s
            .parse::<Role>()
            .map(|r| r.label().to_string())
            .unwrap_or_else(|_| s.clone()),
        Value::String(s) if key == "kind" => match s.as_str() {
            "chat" => "percakapan".into(),
            "note" => "catatan internal".into(),
            other => other.into(),
        },
        Value::String(s) => s.clone(),
        // Times are stored as Unix seconds; people read them as dates.
        Value::Number(n) if key.ends_with("_at") => n
            .as_i64()
            .map(|t| fmt_time(desk, t))
            .unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

/// Fields shown for a report's creation; the rest of the row is in the report itself.
const CREATION_KEYS: &[&str] = &[
    "source",
    "status",
    "category_id",
    "title",
    "address",
    "incident_id",
    "level",
    "photo",
    "snapshot",
    "phone_given",
];

fn audit_action_label(a: &str) -> &str {
    match a {
        "create" => "Laporan dibuat",
        "verify" => "Diverifikasi",
        "reject" => "Ditolak",
        "merge" => "Digabung (duplikat)",
        "merge_in" => "Menerima gabungan",
        "disposition" => "Didisposisikan",
        "answer" => "Dijawab OPD",
        "confirm_satisfied" => "Dikonfirmasi selesai",
        "confirm_unsatisfied" => "Belum puas, dikembalikan",
        "message" => "Pesan",
        "claim" => "Diambil",
        "reassign" => "Dialihkan (akun dinonaktifkan)",
        "incident_update" => "Pembaruan kamera",
        "incident_end" => "Kamera: kondisi normal",
        "user_create" => "Akun dibuat",
        "user_deactivate" => "Akun dinonaktifkan",
        "login" => "Masuk",
        "login_failed" => "Gagal masuk",
        "password_set" => "Kata sandi diatur",
        other => other,
    }
}

/// Keys a person reads in the audit trail; long ones (evidence JSON, descriptions) shortened.
fn audit_changes(desk: &Desk, names: &BTreeMap<i64, String>, a: &AuditRow) -> Markup {
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|j| serde_json::from_str::<Value>(j).ok())
    };
    let before = parse(&a.before_json);
    let after = parse(&a.after_json);
    let empty = serde_json::Map::new();
    let b = before
        .as_ref()
        .and_then(|v| v.as_object())
        .unwrap_or(&empty);
    let Some(Value::Object(am)) = after.as_ref() else {
        return html! {};
    };
    let short = |s: String| {
        if s.chars().count() > 80 {
            format!("{}…", s.chars().take(77).collect::<String>())
        } else {
            s
        }
    };
    let creation = a.action == "create";
    html! {
        ul.changes {
            @for (k, v) in am {
                @if !creation || (!v.is_null() && CREATION_KEYS.contains(&k.as_str())) {
                    li {
                        span.field-name { (field_label(k)) } ": "
                        @if let Some(bv) = b.get(k) {
                            span.before { (short(audit_value(desk, names, k, bv))) } " → "
                        }
                        span.after { (short(audit_value(desk, names, k, v))) }
                    }
                }
            }
        }
    }
}

fn action_form(ticket: &str, csrf: &str, action: &str, body: Markup) -> Markup {
    html! {
        form.action-form method="post" action={"/reports/" (ticket) "/" (action)} {
            input type="hidden" name="csrf" value=(csrf);
            (body)
        }
    }
}

fn actions_panel(desk: &Desk, s: &Session, v: &ReportView) -> Markup {
    let r = &v.report;
    let u = &s.user;
    let cfg = desk.desk_config();
    let t = r.ticket.as_str();
    let csrf = s.csrf.as_str();
    let staff_ops = matches!(u.role, Role::Admin | Role::Operator);
    let routes: Vec<(String, String)> = cfg
        .category(&r.category_id)
        .map(|c| {
            c.agencies
                .iter()
                .map(|a| (a.clone(), desk.agency_name(a)))
                .collect()
        })
        .unwrap_or_default();
    let st = v.status;
    html! {
        @if u.role == Role::Viewer {
            section.card { h2 { "Tindakan" } p.muted { "Akun pemantau: akses baca saja." } }
        }
        @if staff_ops && matches!(st, Status::Received) {
            section.card {
                h2 { "Verifikasi" }
                (action_form(t, csrf, "verify", html! {
                    label { "Kategori" }
                    select name="category" {
                        @for c in &cfg.categories { option value=(c.id) selected[c.id == r.category_id] { (c.name) " (SLA " (c.sla_hours) " jam)" } }
                    }
                    button.btn.btn-primary type="submit" { "Verifikasi laporan" }
                }))
            }
        }
        @if staff_ops && matches!(st, Status::Received | Status::Verified | Status::Dispositioned | Status::Reopened) {
            section.card {
                h2 { @if matches!(st, Status::Dispositioned | Status::Reopened) { "Alihkan ke OPD lain" } @else { "Disposisi ke OPD" } }
                (action_form(t, csrf, "disposition", html! {
                    label { "OPD tujuan (" (desk.category_name(&r.category_id)) ")" }
                    select name="agency" required {
                        @for (id, name) in &routes { option value=(id) selected[r.agency_id.as_deref() == Some(id.as_str())] { (name) } }
                    }
                    label { "Catatan untuk OPD (opsional)" }
                    textarea name="note" rows="2" maxlength="2000" {}
                    p.muted.small { "Tenggat jawaban: " (cfg.category(&r.category_id).map(|c| c.sla_hours).unwrap_or(0)) " jam sejak disposisi." }
                    button.btn.btn-primary type="submit" { "Disposisikan" }
                }))
            }
        }
        @if staff_ops && matches!(st, Status::Received | Status::Verified) {
            section.card {
                h2 { "Tolak atau gabungkan" }
                (action_form(t, csrf, "reject", html! {
                    label { "Alasan penolakan" }
                    textarea name="reason" rows="2" required minlength="5" maxlength="1000" placeholder="mis. bukan kewenangan Pemkot, data tidak lengkap" {}
                    button.btn.btn-danger type="submit" { "Tolak laporan" }
                }))
                (action_form(t, csrf, "merge", html! {
                    label { "Duplikat dari tiket" }
                    input name="into" type="text" required placeholder="PLG-XXXXXX" pattern="[A-Za-z]+-[A-Za-z0-9]+";
                    button.btn type="submit" { "Gabungkan" }
                }))
            }
        }
        @if u.role == Role::Agency && matches!(st, Status::Dispositioned | Status::Reopened) {
            section.card.highlight {
                h2 { "Jawaban OPD" }
                (action_form(t, csrf, "answer", html! {
                    textarea name="text" rows="5" required minlength="5" maxlength="4000" placeholder="Tindak lanjut yang sudah dilakukan, kapan, oleh siapa" {}
                    button.btn.btn-primary type="submit" { "Kirim jawaban" }
                }))
            }
        }
        @if st == Status::Answered {
            section.card.highlight {
                h2 { "Konfirmasi penyelesaian" }
                @if v.source == Source::Cctv && staff_ops {
                    p.muted.small { "Laporan CCTV: operator mengonfirmasi atas nama pelapor, setelah memeriksa kamera." }
                    (action_form(t, csrf, "confirm", html! {
                        textarea name="text" rows="2" maxlength="2000" placeholder="Catatan (opsional), mis. arus sudah lancar di kamera" {}
                        div.btn-row {
                            button.btn.btn-success type="submit" name="satisfied" value="1" { "Selesai (hijau)" }
                            button.btn.btn-warning type="submit" name="satisfied" value="0" { "Kembalikan ke OPD" }
                        }
                    }))
                } @else if v.source == Source::Cctv {
                    p.muted { "Menunggu konfirmasi operator Command Center." }
                } @else {
                    p.muted { "Menunggu konfirmasi pelapor (lewat halaman lacak dengan PIN, atau SMS PUAS / TIDAK PUAS)." }
                }
            }
        }
        @if u.role.may(domain::Action::Claim) && st.is_open() {
            @let mine = match u.role { Role::Agency => r.officer_id == Some(u.id), _ => r.operator_id == Some(u.id) };
            @if !mine {
                section.card {
                    (action_form(t, csrf, "claim", html! {
                        button.btn.btn-block type="submit" { "Tangani laporan ini (ambil)" }
                    }))
                }
            }
        }
    }
}

pub fn report_page(
    desk: &Desk,
    s: &Session,
    v: &ReportView,
    flash: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let r = &v.report;
    let cfg = desk.desk_config();
    let now = desk.clock.now();
    let overdue = domain::is_overdue(v.status, r.due_at, now);
    let snapshots: Vec<_> = v
        .attachments
        .iter()
        .filter(|a| a.kind == "snapshot")
        .collect();
    let photos: Vec<_> = v.attachments.iter().filter(|a| a.kind == "photo").collect();
    let sla = cfg.category(&r.category_id).map(|c| c.sla_hours);
    let body = html! {
        nav.crumbs { a href="/reports" { "Laporan" } " / " span.mono { (r.ticket) } }
        @if let Some(f) = flash { div.alert.alert-ok role="status" { (f) } }
        @if let Some(e) = error { div.alert.alert-error role="alert" { (e) } }
        div.report-head {
            div {
                div.report-tags {
                    span.mono.ticket { (r.ticket) }
                    (source_badge(v.source))
                    span.tag { (desk.category_name(&r.category_id)) }
                    @if let Some(k) = &r.incident_kind { span.tag { (kind_label(k)) } }
                    @if let Some(l) = &r.level { (level_chip(l)) }
                }
                h1 { (r.title) }
                p.muted { (r.address) }
            }
            div.report-status {
                div class={"status-big status-" (colour_class(v.status.colour()))} {
                    span.dot {}
                    div {
                        strong { (v.status.label()) }
                        small { (v.status.colour().label()) }
                    }
                }
                @if overdue {
                    div.overdue-banner { "Lewat tenggat " (fmt_span(now - r.due_at.unwrap_or(now))) }
                }
            }
        }
        div.grid-report {
            div.col {
                section.card {
                    h2 { "Isi laporan" }
                    p.prewrap { (r.description) }
                    @if let Some(reason) = &r.reject_reason {
                        div.alert.alert-error { strong { "Alasan penolakan: " } (reason) }
                    }
                    @if let Some(t) = &v.merged_into {
                        div.alert.alert-info { "Digabung ke laporan " a.mono href={"/reports/" (t)} { (t) } "." }
                    }
                    @if !v.merged.is_empty() {
                        div.alert.alert-info {
                            "Duplikat yang digabung ke laporan ini: "
                            @for (i, m) in v.merged.iter().enumerate() {
                                @if i > 0 { ", " }
                                a.mono href={"/reports/" (m.ticket)} { (m.ticket) }
                            }
                        }
                    }
                }
                @if !snapshots.is_empty() || !photos.is_empty() {
                    section.card {
                        h2 { @if snapshots.is_empty() { "Foto dari pelapor" } @else { "Cuplikan kamera" } }
                        div.gallery {
                            @for (i, a) in snapshots.iter().enumerate() {
                                figure {
                                    a href={"/attachments/" (a.id)} target="_blank" rel="noopener" {
                                        img src={"/attachments/" (a.id)} alt={"Cuplikan kamera " (r.ticket)} width=(a.width) height=(a.height);
                                    }
                                    figcaption { @if i == 0 { "Awal insiden" } @else { "Terbaru" } " · " (fmt_time(desk, a.created_at)) }
                                }
                            }
                            @for a in &photos {
                                figure {
                                    a href={"/attachments/" (a.id)} target="_blank" rel="noopener" {
                                        img src={"/attachments/" (a.id)} alt={"Foto laporan " (r.ticket)} width=(a.width) height=(a.height);
                                    }
                                    figcaption { "Foto pelapor · " (a.width) "×" (a.height) }
                                }
                            }
                        }
                    }
                }
                @if let Some(ev) = &r.evidence {
                    section.card {
                        h2 { "Bukti terukur dari kamera" }
                        dl.kv {
                            dt { "Lokasi kamera" } dd { (r.site_name.as_deref().unwrap_or("—")) " (" (r.camera.as_deref().unwrap_or("—")) ")" }
                            dt { "Mulai" } dd { (fmt_opt(desk, r.incident_started_at)) }
                            dt { "Kondisi normal" } dd { @if let Some(c) = r.cleared_at { (fmt_time(desk, c)) } @else { span.overdue { "masih berlangsung" } } }
                            @for (k, val) in evidence_rows(ev) { dt { (k) } dd { (val) } }
                        }
                    }
                }
                section.card {
                    h2 { "Percakapan" }
                    div.thread {
                        @if v.messages.is_empty() { p.muted { "Belum ada pesan." } }
                        @for m in &v.messages {
                            div class={"msg msg-" (m.author_kind) " msg-kind-" (m.kind)} {
                                div.msg-head {
                                    strong {
                                        @match m.author_kind.as_str() {
                                            "reporter" => "Pelapor",
                                            "system" => "Sistem",
                                            _ => (m.author_name.clone().unwrap_or_else(|| "Petugas".into())),
                                        }
                                    }
                                    @if m.author_kind == "agency" {
                                        span.muted { " · " (m.author_agency.as_deref().map(|a| desk.agency_name(a)).unwrap_or_default()) }
                                    }
                                    @match m.kind.as_str() {
                                        "answer" => span.tag.tag-yellow { "Jawaban OPD" },
                                        "note" => span.tag { "Catatan internal" },
                                        _ => {},
                                    }
                                    span.muted.msg-time { (fmt_time(desk, m.at)) }
                                }
                                p.prewrap { (m.body) }
                            }
                        }
                    }
                    @if s.user.role != Role::Viewer && v.status.is_open() {
                        (action_form(&r.ticket, &s.csrf, "message", html! {
                            textarea name="text" rows="2" required maxlength="2000" placeholder="Tulis pesan…" {}
                            div.btn-row {
                                label.check { input type="checkbox" name="internal" value="1"; " Catatan internal (tidak terlihat pelapor)" }
                                button.btn type="submit" { "Kirim" }
                            }
                        }))
                    }
                }
                section.card {
                    h2 { "Riwayat perubahan" }
                    table.table.audit {
                        thead { tr { th { "Waktu" } th { "Oleh" } th { "Tindakan" } th { "Perubahan" } } }
                        tbody {
                            @for a in &v.audit {
                                tr {
                                    td.nowrap { (fmt_time(desk, a.at)) }
                                    td { (a.actor) }
                                    td { (audit_action_label(&a.action)) }
                                    td { (audit_changes(desk, &v.names, a)) }
                                }
                            }
                        }
                    }
                }
            }
            aside.col {
                (actions_panel(desk, s, v))
                section.card {
                    h2 { "Rincian" }
                    dl.kv {
                        dt { "Kategori" } dd { (desk.category_name(&r.category_id)) @if let Some(h) = sla { " · SLA " (h) " jam" } }
                        dt { "OPD" } dd { (r.agency_id.as_deref().map(|a| desk.agency_name(a)).unwrap_or_else(|| "belum didisposisikan".into())) }
                        dt { "Diterima" } dd { (fmt_time(desk, r.created_at)) }
                        dt { "Diverifikasi" } dd { (fmt_opt(desk, r.verified_at)) }
                        dt { "Disposisi" } dd { (fmt_opt(desk, r.dispositioned_at)) }
                        dt { "Tenggat" } dd { (fmt_opt(desk, r.due_at)) @if r.due_at.is_some() && v.status.awaits_agency() { br; (due_cell(desk, r)) } }
                        dt { "Dijawab" } dd { (fmt_opt(desk, r.answered_at)) }
                        dt { "Ditutup" } dd { (fmt_opt(desk, r.closed_at)) }
                        dt { "Operator" } dd { (v.operator.as_deref().unwrap_or("—")) }
                        dt { "Petugas OPD" } dd { (v.officer.as_deref().unwrap_or("—")) }
                        @if s.user.role.sees_contact() {
                            dt { "HP pelapor" } dd { (r.phone.as_deref().unwrap_or("—")) }
                        }
                        @if let (Some(lat), Some(lon)) = (r.lat, r.lon) {
                            dt { "Koordinat" } dd.mono { (format!("{lat:.5}, {lon:.5}")) }
                        }
                    }
                    @if let (Some(lat), Some(lon)) = (r.lat, r.lon) {
                        div.js-map.map-small data-lat=(lat) data-lon=(lon) data-zoom="16" data-tiles=(cfg.map.tile_url) data-attribution=(cfg.map.attribution) {}
                        p.map-offline-note.muted.small hidden { "Peta tidak dapat dimuat; gunakan koordinat di atas." }
                        a.small href={"https://www.openstreetmap.org/?mlat=" (lat) "&mlon=" (lon) "#map=17/" (lat) "/" (lon)} target="_blank" rel="noopener" { "Buka di OpenStreetMap" }
                    }
                }
                section.card {
                    h2 { "Lacak publik" }
                    p.small { "Warga memantau laporan ini di " a href={"/track/" (r.ticket)} { "/track/" (r.ticket) } "." }
                }
            }
        }
    };
    let mut page = staff_page(desk, s, "reports", &r.ticket, body);
    if r.lat.is_some() {
        // The staff layout does not load Leaflet by default; the detail page's small map does.
        page = html! { (page) link rel="stylesheet" href="/assets/vendor/leaflet/leaflet.css"; script src="/assets/vendor/leaflet/leaflet.js" defer {} script src="/assets/map.js" defer {} };
    }
    page
}

// ------------------------------------------------------------------------------------------------
// Citizens: form, receipt, tracker

/// Values of the citizen form, echoed back when it has errors.
#[derive(Clone, Debug, Default)]
pub struct FormValues {
    pub title: String,
    pub description: String,
    pub category: String,
    pub address: String,
    pub lat: String,
    pub lon: String,
    pub phone: String,
}

pub fn report_form_page(desk: &Desk, v: &FormValues, errors: &[FieldError]) -> Markup {
    let cfg = desk.desk_config();
    let err = |f: &str| field_error(errors, f);
    let max_mb = cfg.max_photo_bytes as f64 / (1024.0 * 1024.0);
    let body = html! {
        section.card.form-card {
            h1 { "Buat laporan" }
            p.muted {
                "Sampaikan keluhan tentang lalu lintas, kebersihan, jalan, lampu jalan, banjir atau ketertiban umum di Kota Palembang. "
                "Laporan diteruskan ke OPD terkait; Anda mendapat nomor tiket untuk memantau tindak lanjutnya."
            }
            (errors_box(errors))
            form method="post" action="/lapor" enctype="multipart/form-data" novalidate {
                div.field class=@if err("title").is_some() { "has-error" } {
                    label for="title" { "Judul laporan " span.req { "*" } }
                    input #title name="title" type="text" maxlength="150" required value=(v.title) placeholder="mis. Lampu jalan mati di Jl. Merdeka depan Kantor Walikota";
                    @if let Some(e) = err("title") { p.field-error { (e) } }
                }
                div.field class=@if err("category").is_some() { "has-error" } {
                    label for="category" { "Kategori " span.req { "*" } }
                    select #category name="category" required {
                        option value="" { "— pilih kategori —" }
                        @for c in cfg.categories.iter().filter(|c| c.public) {
                            option value=(c.id) selected[c.id == v.category] { (c.name) }
                        }
                    }
                    @if let Some(e) = err("category") { p.field-error { (e) } }
                }
                div.field class=@if err("description").is_some() { "has-error" } {
                    label for="description" { "Isi laporan " span.req { "*" } }
                    textarea #description name="description" rows="6" maxlength="5000" required placeholder="Apa yang terjadi, sejak kapan, seberapa parah" { (v.description) }
                    @if let Some(e) = err("description") { p.field-error { (e) } }
                }
                div.field class=@if err("address").is_some() { "has-error" } {
                    label for="address" { "Alamat / patokan lokasi " span.req { "*" } }
                    input #address name="address" type="text" maxlength="300" required value=(v.address) placeholder="Nama jalan, kelurahan, patokan";
                    @if let Some(e) = err("address") { p.field-error { (e) } }
                }
                fieldset.field {
                    legend { "Titik lokasi (opsional)" }
                    div.js-map.map-picker data-lat=(cfg.map.center[0]) data-lon=(cfg.map.center[1]) data-zoom=(cfg.map.zoom) data-tiles=(cfg.map.tile_url) data-attribution=(cfg.map.attribution) data-pick="1" {}
                    p.map-hint.muted.small hidden { "Klik peta untuk menandai lokasi; koordinat terisi otomatis." }
                    p.map-offline-note.muted.small hidden { "Peta tidak dapat dimuat. Isi koordinat secara manual (mis. dari aplikasi peta di ponsel) atau kosongkan." }
                    div.coords {
                        div class=@if err("lat").is_some() { "has-error" } {
                            label for="lat" { "Lintang" }
                            input #lat name="lat" type="text" inputmode="decimal" value=(v.lat) placeholder="-2.97610";
                        }
                        div class=@if err("lon").is_some() { "has-error" } {
                            label for="lon" { "Bujur" }
                            input #lon name="lon" type="text" inputmode="decimal" value=(v.lon) placeholder="104.77540";
                        }
                    }
                    @if let Some(e) = err("lat").or(err("lon")) { p.field-error { (e) } }
                }
                div.field class=@if err("photo").is_some() { "has-error" } {
                    label for="photo" { "Foto (opsional)" }
                    input #photo name="photo" type="file" accept="image/jpeg,image/png";
                    p.muted.small { "JPEG atau PNG, maksimal " (format!("{max_mb:.0}")) " MB." }
                    @if let Some(e) = err("photo") { p.field-error { (e) } }
                }
                div.field class=@if err("phone").is_some() { "has-error" } {
                    label for="phone" { "Nomor HP (opsional)" }
                    input #phone name="phone" type="tel" maxlength="20" value=(v.phone) placeholder="08xxxxxxxxxx";
                    p.muted.small { "Hanya untuk petugas menghubungi Anda; tidak pernah ditampilkan di halaman lacak." }
                    @if let Some(e) = err("phone") { p.field-error { (e) } }
                }
                button.btn.btn-primary.btn-lg type="submit" { "Kirim laporan" }
            }
        }
    };
    public_page("Buat laporan", true, body)
}

pub fn receipt_page(created: &Created) -> Markup {
    let body = html! {
        section.card.center.receipt {
            div.check-icon { "✓" }
            h1 { "Laporan diterima" }
            p { "Nomor tiket Anda:" }
            p.ticket-big.mono { (created.ticket) }
            @if let Some(pin) = &created.pin {
                p { "PIN pelapor: " strong.mono.pin { (pin) } }
                p.muted.small {
                    "Simpan nomor tiket dan PIN ini. PIN diperlukan untuk mengonfirmasi penyelesaian atau membalas jawaban OPD, "
                    "dan tidak dapat ditampilkan lagi."
                }
            }
            p { a.btn.btn-primary href={"/track/" (created.ticket)} { "Lacak laporan" } }
        }
    };
    public_page("Laporan diterima", false, body)
}

pub fn track_search_page(error: Option<&str>, ticket: &str) -> Markup {
    let body = html! {
        section.card.form-card {
            h1 { "Lacak laporan" }
            p.muted { "Masukkan nomor tiket yang Anda terima saat melapor (web atau SMS 1708)." }
            @if let Some(e) = error { div.alert.alert-error { (e) } }
            form.inline-form method="get" action="/track" {
                input name="ticket" type="text" required placeholder="PLG-XXXXXX" value=(ticket) aria-label="Nomor tiket";
                button.btn.btn-primary type="submit" { "Lacak" }
            }
        }
    };
    public_page("Lacak laporan", false, body)
}

pub fn track_page(desk: &Desk, v: &ReportView, flash: Option<&str>, error: Option<&str>) -> Markup {
    let r = &v.report;
    let c = v.status.colour();
    let now = desk.clock.now();
    let steps: [(&str, Option<i64>); 5] = [
        ("Diterima", Some(r.created_at)),
        ("Diverifikasi", r.verified_at),
        ("Didisposisikan ke OPD", r.dispositioned_at),
        ("Dijawab OPD", r.answered_at),
        (
            "Selesai",
            if v.status == Status::Done {
                r.closed_at
            } else {
                None
            },
        ),
    ];
    let body = html! {
        @if let Some(f) = flash { div.alert.alert-ok role="status" { (f) } }
        @if let Some(e) = error { div.alert.alert-error role="alert" { (e) } }
        section.card {
            div.track-head {
                div {
                    p.mono.ticket { (r.ticket) }
                    h1 { (r.title) }
                    p.muted { (desk.category_name(&r.category_id)) @if !r.address.is_empty() { " · " (r.address) } }
                }
                div.lights title=(c.label()) {
                    span class={"light light-red" @if c == Colour::Red { " on" }} {}
                    span class={"light light-yellow" @if c == Colour::Yellow { " on" }} {}
                    span class={"light light-green" @if c == Colour::Green { " on" }} {}
                }
            }
            div class={"status-big status-" (colour_class(c))} {
                span.dot {}
                div { strong { (v.status.label()) } small { (c.label()) } }
            }
            @if let Some(t) = &v.merged_into {
                div.alert.alert-info { "Laporan ini digabung dengan laporan " a.mono href={"/track/" (t)} { (t) } " yang membahas masalah yang sama. Pantau tindak lanjutnya di sana." }
            }
            dl.kv {
                dt { "OPD" } dd { (r.agency_id.as_deref().map(|a| desk.agency_name(a)).unwrap_or_else(|| "belum didisposisikan".into())) }
                @if let Some(d) = r.due_at {
                    dt { "Target jawaban" } dd {
                        (fmt_time(desk, d))
                        @if domain::is_overdue(v.status, Some(d), now) { " " span.overdue { "(terlambat)" } }
                    }
                }
                @if let Some(cl) = r.cleared_at { dt { "Kamera" } dd { "Kondisi normal sejak " (fmt_time(desk, cl)) } }
            }
            ol.timeline {
                @for (label, at) in steps {
                    li class=@if at.is_some() { "done" } {
                        span.tl-dot {}
                        span.tl-label { (label) }
                        span.tl-time.muted { (fmt_opt(desk, at)) }
                    }
                }
            }
        }
        section.card {
            h2 { "Tanggapan" }
            div.thread {
                @let msgs: Vec<_> = v.messages.iter().filter(|m| m.kind != "note").collect();
                @if msgs.is_empty() { p.muted { "Belum ada tanggapan." } }
                @for m in msgs {
                    div class={"msg msg-" (m.author_kind)} {
                        div.msg-head {
                            strong { (super::api::public_author(desk, &m.author_kind, m.author_agency.as_deref())) }
                            @if m.kind == "answer" { span.tag.tag-yellow { "Jawaban OPD" } }
                            span.muted.msg-time { (fmt_time(desk, m.at)) }
                        }
                        p.prewrap { (m.body) }
                    }
                }
            }
        }
        @if v.status == Status::Answered && v.source != Source::Cctv {
            section.card.highlight {
                h2 { "Apakah masalah sudah selesai?" }
                p.muted.small { "Masukkan PIN yang Anda terima saat melapor. Pelapor lewat SMS: balas PUAS " (r.ticket) " atau TIDAK PUAS " (r.ticket) " <alasan>." }
                form method="post" action={"/track/" (r.ticket) "/confirm"} {
                    label for="pin" { "PIN pelapor" }
                    input #pin name="pin" type="password" inputmode="numeric" maxlength="6" required autocomplete="off";
                    label for="ctext" { "Keterangan (opsional)" }
                    textarea #ctext name="text" rows="2" maxlength="2000" {}
                    div.btn-row {
                        button.btn.btn-success type="submit" name="satisfied" value="1" { "Puas, selesai" }
                        button.btn.btn-warning type="submit" name="satisfied" value="0" { "Belum puas" }
                    }
                }
            }
        }
        @if v.status.is_open() && v.source == Source::Web {
            section.card {
                h2 { "Kirim pesan ke petugas" }
                form method="post" action={"/track/" (r.ticket) "/message"} {
                    label for="mpin" { "PIN pelapor" }
                    input #mpin name="pin" type="password" inputmode="numeric" maxlength="6" required autocomplete="off";
                    label for="mtext" { "Pesan" }
                    textarea #mtext name="text" rows="3" maxlength="2000" required {}
                    button.btn type="submit" { "Kirim" }
                }
            }
        }
    };
    public_page(&format!("Tiket {}", r.ticket), false, body)
}

// ------------------------------------------------------------------------------------------------
// Admin: users, audit, dead letters

pub fn users_page(
    desk: &Desk,
    s: &Session,
    users: &[UserRow],
    open_counts: &[(i64, usize)],
    errors: &[FieldError],
    flash: Option<&str>,
) -> Markup {
    let cfg = desk.desk_config();
    let active: Vec<&UserRow> = users.iter().filter(|u| u.active == 1).collect();
    let body = html! {
        div.page-head { div { h1 { "Pengguna" } p.muted { "Akun per orang. Saat petugas pindah tugas, nonaktifkan akunnya dan alihkan laporan yang sedang ditanganinya." } } }
        @if let Some(f) = flash { div.alert.alert-ok role="status" { (f) } }
        (errors_box(errors))
        div.grid-main {
            section.card.flush {
                table.table {
                    thead { tr { th { "Akun" } th { "Nama" } th { "Peran" } th { "OPD" } th.num { "Laporan terbuka" } th { "Status" } th { "Nonaktifkan & alihkan" } } }
                    tbody {
                        @for u in users {
                            @let open = open_counts.iter().find(|(id, _)| *id == u.id).map(|(_, n)| *n).unwrap_or(0);
                            tr class=@if u.active == 0 { "inactive" } {
                                td.mono { (u.username) }
                                td { (u.display_name) }
                                td { (u.role().map(|r| r.label()).unwrap_or("?")) }
                                td { (u.agency_id.as_deref().and_then(|a| cfg.agency(a)).map(|a| a.short()).unwrap_or_else(|| "—".into())) }
                                td.num { (open) }
                                td { @if u.active == 1 { span.badge.badge-green { span.dot {} "Aktif" } } @else { span.badge.badge-grey { span.dot {} "Nonaktif" } } }
                                td {
                                    @if u.active == 1 && u.id != s.user.id {
                                        form.inline-form method="post" action={"/admin/users/" (u.username) "/deactivate"} {
                                            input type="hidden" name="csrf" value=(s.csrf);
                                            select name="reassign_to" aria-label="Alihkan ke" {
                                                option value="" { "kembalikan ke antrean" }
                                                @for t in active.iter().filter(|t| t.id != u.id && t.role == u.role && t.agency_id == u.agency_id) {
                                                    option value=(t.username) { (t.display_name) }
                                                }
                                            }
                                            button.btn.btn-danger.btn-sm type="submit" { "Nonaktifkan" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            aside.col {
                section.card {
                    h2 { "Akun baru" }
                    form method="post" action="/admin/users" {
                        input type="hidden" name="csrf" value=(s.csrf);
                        label for="nu" { "Nama akun" }
                        input #nu name="username" type="text" required pattern="[a-z0-9._-]{3,32}" placeholder="mis. budi.dishub";
                        label for="nd" { "Nama lengkap" }
                        input #nd name="display_name" type="text" maxlength="100";
                        label for="nr" { "Peran" }
                        select #nr name="role" {
                            @for r in Role::ALL { option value=(r.as_str()) { (r.label()) } }
                        }
                        label for="na" { "OPD (khusus petugas OPD)" }
                        select #na name="agency" {
                            option value="" { "—" }
                            @for a in &cfg.agencies { option value=(a.id) { (a.name) } }
                        }
                        label for="np" { "Kata sandi awal" }
                        input #np name="password" type="password" required minlength="10" autocomplete="new-password";
                        button.btn.btn-primary type="submit" { "Buat akun" }
                    }
                }
            }
        }
    };
    staff_page(desk, s, "users", "Pengguna", body)
}

pub fn audit_page(
    desk: &Desk,
    s: &Session,
    rows: &[AuditRow],
    names: &BTreeMap<i64, String>,
    page: i64,
) -> Markup {
    let body = html! {
        div.page-head { div { h1 { "Jejak audit" } p.muted { "Setiap perubahan: siapa, kapan, sebelum → sesudah." } } }
        section.card.flush {
            table.table.audit {
                thead { tr { th { "Waktu" } th { "Oleh" } th { "Tindakan" } th { "Objek" } th { "Perubahan" } } }
                tbody {
                    @if rows.is_empty() { tr { td.muted colspan="5" { "Belum ada catatan." } } }
                    @for a in rows {
                        tr {
                            td.nowrap { (fmt_time(desk, a.at)) }
                            td { (a.actor) }
                            td { (audit_action_label(&a.action)) }
                            td {
                                @if a.entity == "report" { a.mono href={"/reports/" (a.entity_id)} { (a.entity_id) } }
                                @else { span.mono { (a.entity) ":" (a.entity_id) } }
                            }
                            td { (audit_changes(desk, names, a)) }
                        }
                    }
                }
            }
        }
        nav.pager {
            @if page > 1 { a.btn href={"/audit?page=" (page - 1)} { "‹ Lebih baru" } }
            span.muted { "Halaman " (page) }
            @if rows.len() == 100 { a.btn href={"/audit?page=" (page + 1)} { "Lebih lama ›" } }
        }
    };
    staff_page(desk, s, "audit", "Jejak audit", body)
}

pub fn dead_letters_page(desk: &Desk, s: &Session, rows: &[DeadLetterRow]) -> Markup {
    let body = html! {
        div.page-head { div { h1 { "Pesan gagal (dead letter)" } p.muted { "Pesan MQTT insiden yang tidak dapat diproses, dengan alasannya. Tidak ada laporan yang dibuat dari pesan ini." } } }
        section.card.flush {
            table.table {
                thead { tr { th { "Waktu" } th { "Topik" } th.num { "Ukuran" } th { "Alasan" } th { "Awal isi" } } }
                tbody {
                    @if rows.is_empty() { tr { td.muted colspan="5" { "Tidak ada pesan gagal." } } }
                    @for d in rows {
                        tr {
                            td.nowrap { (fmt_time(desk, d.at)) }
                            td.mono { (d.topic) }
                            td.num { (d.size) " B" }
                            td { (d.reason) }
                            td { code.preview { (d.preview.chars().take(160).collect::<String>()) } }
                        }
                    }
                }
            }
        }
    };
    staff_page(desk, s, "dead", "Pesan gagal", body)
}
