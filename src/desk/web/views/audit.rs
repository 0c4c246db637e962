//! The audit trail as people read it: action names and field names in Indonesian, values as
//! names and dates, long values shortened. The audit page, and the history on a report page.

use std::collections::BTreeMap;

use maud::{html, Markup};
use serde_json::Value;

use super::components::fmt_time;
use super::layout::staff_page;
use crate::desk::domain::{Role, Source, Status};
use crate::desk::store::AuditRow;
use crate::desk::web::Session;
use crate::desk::Desk;

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
        Value::String(s) if key == "category_id" => desk.labels.category_name(s),
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

pub(super) fn audit_action_label(a: &str) -> &str {
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
        "wall_handoff" => "Masuk ke video wall",
        "demo_database" => "Basis data demo",
        other => other,
    }
}

/// Keys a person reads in the audit trail; long ones (evidence JSON, descriptions) shortened.
pub(super) fn audit_changes(desk: &Desk, names: &BTreeMap<i64, String>, a: &AuditRow) -> Markup {
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
