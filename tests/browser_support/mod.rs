//! Headless Firefox ESR for the browser tests, driven over its Marionette protocol: Debian ships
//! Firefox ESR but no geckodriver, and Marionette is the protocol geckodriver itself speaks to
//! Firefox. Frames are `len:json`; commands `[0, id, name, params]`, answers
//! `[1, id, error, result]`. The command names are WebDriver's (`WebDriver:Navigate`, ...).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The key WebDriver and Marionette use for an element reference.
pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Marionette {
    stream: BufReader<TcpStream>,
    next_id: u64,
}

impl Marionette {
    pub fn connect(port: u16) -> Marionette {
        let end = Instant::now() + Duration::from_secs(60);
        let stream = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                break s;
            }
            assert!(
                Instant::now() < end,
                "Firefox Marionette port {port} did not open in 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut m = Marionette {
            stream: BufReader::new(stream),
            next_id: 0,
        };
        let hello = m.read();
        assert_eq!(hello["applicationType"], "gecko", "{hello}");
        m
    }

    fn read(&mut self) -> Value {
        let mut len = Vec::new();
        self.stream
            .read_until(b':', &mut len)
            .expect("Marionette frame");
        len.pop();
        let n: usize = String::from_utf8_lossy(&len)
            .parse()
            .expect("Marionette frame length");
        let mut body = vec![0; n];
        self.stream.read_exact(&mut body).expect("Marionette body");
        serde_json::from_slice(&body).expect("Marionette JSON")
    }

    /// Sends a command; `Err` carries the browser's error object (`no such element`, ...).
    pub fn try_call(&mut self, name: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let body = json!([0, self.next_id, name, params]).to_string();
        let s = self.stream.get_mut();
        write!(s, "{}:{body}", body.len()).expect("Marionette write");
        let answer = self.read();
        if answer[2].is_null() {
            Ok(answer[3].clone())
        } else {
            Err(answer[2].clone())
        }
    }

    /// Sends a command that must succeed.
    pub fn call(&mut self, name: &str, params: Value) -> Value {
        self.try_call(name, params)
            .unwrap_or_else(|e| panic!("Marionette {name}: {e}"))
    }

    pub fn script(&mut self, js: &str) -> Value {
        self.call(
            "WebDriver:ExecuteScript",
            json!({ "script": js, "args": [] }),
        )["value"]
            .clone()
    }

    /// The viewport as PNG.
    pub fn screenshot_png(&mut self) -> Vec<u8> {
        let v = self.call("WebDriver:TakeScreenshot", json!({ "full": false }));
        base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().expect("screenshot base64"))
            .expect("base64")
    }
}

/// A headless Firefox ESR with a fresh profile, killed on drop.
pub struct Firefox {
    child: Child,
    pub marionette_port: u16,
}

impl Firefox {
    /// Starts Firefox on a fresh profile under `profile` with a `width` x `height` window and
    /// `prefs` (name, JS literal) added to the profile's user.js, and opens a session.
    pub fn start(
        profile: &Path,
        width: u32,
        height: u32,
        prefs: &[(&str, &str)],
    ) -> (Firefox, Marionette) {
        std::fs::create_dir_all(profile).unwrap();
        let port = free_port();
        let mut user_js = format!("user_pref(\"marionette.port\", {port});\n");
        for (k, v) in prefs {
            user_js.push_str(&format!("user_pref(\"{k}\", {v});\n"));
        }
        std::fs::write(profile.join("user.js"), user_js).unwrap();
        let child = Command::new("firefox-esr")
            .args(["--headless", "--marionette", "--no-remote", "--profile"])
            .arg(profile)
            .env("MOZ_HEADLESS_WIDTH", width.to_string())
            .env("MOZ_HEADLESS_HEIGHT", height.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("firefox-esr must be installed (Debian package firefox-esr)");
        let ff = Firefox {
            child,
            marionette_port: port,
        };
        let mut m = Marionette::connect(port);
        m.call("WebDriver:NewSession", json!({ "capabilities": {} }));
        m.call(
            "WebDriver:SetWindowRect",
            json!({ "width": width, "height": height }),
        );
        (ff, m)
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
