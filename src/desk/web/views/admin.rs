//! Admin pages: accounts (create, deactivate with hand-over) and dead-lettered messages.

use maud::{html, Markup};

use super::components::{errors_box, fmt_time};
use super::layout::staff_page;
use crate::desk::domain::Role;
use crate::desk::store::{DeadLetterRow, UserRow};
use crate::desk::web::Session;
use crate::desk::{Desk, FieldError};

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
