//! The citizens' pages: the report form, the receipt with ticket and PIN, the tracker.

use maud::{html, Markup};

use super::components::{colour_class, errors_box, field_error, fmt_opt, fmt_time};
use super::layout::public_page;
use crate::desk::domain::{self, Colour, Source, Status};
use crate::desk::queries::ReportView;
use crate::desk::web::api::public_author;
use crate::desk::workflow::Created;
use crate::desk::{Desk, FieldError};

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
                    p.muted { (desk.labels.category_name(&r.category_id)) @if !r.address.is_empty() { " · " (r.address) } }
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
                dt { "OPD" } dd { (r.agency_id.as_deref().map(|a| desk.labels.agency_name(a)).unwrap_or_else(|| "belum didisposisikan".into())) }
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
                            strong { (public_author(desk, &m.author_kind, m.author_agency.as_deref())) }
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
