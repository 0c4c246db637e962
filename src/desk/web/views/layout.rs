//! The two page layouts (staff with navigation for the role, citizens without) and the error
//! page.

use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};

use crate::desk::domain::Role;
use crate::desk::web::Session;
use crate::desk::Desk;

pub(super) fn head(title: &str, extra_css: bool) -> Markup {
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

pub(super) fn brand(sub: &str) -> Markup {
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
    if super::super::wall::offered(desk, u) {
        nav.push(("wall", "/wall", "Video wall"));
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
