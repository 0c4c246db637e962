//! One report for staff: its content, pictures, camera evidence, thread, history, details, and
//! the forms for the steps the person may take now.

use maud::{html, Markup};
use serde_json::Value;

use super::audit::{audit_action_label, audit_changes};
use super::components::{
    colour_class, due_cell, fmt_opt, fmt_span, fmt_time, kind_label, level_chip, source_badge,
};
use super::layout::staff_page;
use crate::desk::domain::{self, Role, Source, Status};
use crate::desk::queries::ReportView;
use crate::desk::web::Session;
use crate::desk::Desk;

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
                .map(|a| (a.clone(), desk.labels.agency_name(a)))
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
                    label { "OPD tujuan (" (desk.labels.category_name(&r.category_id)) ")" }
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
                    span.tag { (desk.labels.category_name(&r.category_id)) }
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
                                        span.muted { " · " (m.author_agency.as_deref().map(|a| desk.labels.agency_name(a)).unwrap_or_default()) }
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
                        dt { "Kategori" } dd { (desk.labels.category_name(&r.category_id)) @if let Some(h) = sla { " · SLA " (h) " jam" } }
                        dt { "OPD" } dd { (r.agency_id.as_deref().map(|a| desk.labels.agency_name(a)).unwrap_or_else(|| "belum didisposisikan".into())) }
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
