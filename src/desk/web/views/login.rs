//! The staff login page.

use maud::{html, Markup, DOCTYPE};

use super::layout::head;

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
