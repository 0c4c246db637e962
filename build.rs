// The desk's database migrations are embedded by `sqlx::migrate!`, which cargo does not track:
// a new file under migrations/ must rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
