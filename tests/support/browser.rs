//! Real browsers for the browser tests, headless: Chromium through Debian's chromedriver (its
//! HTTP WebDriver), and Firefox ESR over its Marionette protocol: Debian ships Firefox ESR but no
//! geckodriver, and Marionette is the protocol geckodriver itself speaks to Firefox. Marionette
//! frames are `len:json`; commands `[0, id, name, params]`, answers `[1, id, error, result]`,
//! with WebDriver's command names (`WebDriver:Navigate`, ...). Both pick their own port and say
//! which: chromedriver `--port=0` prints it, Firefox with `marionette.port` 0 writes it to
//! `MarionetteActivePort` in its profile.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::process::Proc;
use super::wait::eventually;

/// The key WebDriver and Marionette use for an element reference.
pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Marionette {
    stream: BufReader<TcpStream>,
    next_id: u64,
}

impl Marionette {
    pub fn connect(port: u16) -> Marionette {
        let stream = eventually(
            &format!("Firefox Marionette on port {port}"),
            Duration::from_secs(120),
            || TcpStream::connect(("127.0.0.1", port)).ok(),
        );
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
    _proc: Proc,
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
        std::fs::create_dir_all(profile).expect("profile dir");
        let active = profile.join("MarionetteActivePort");
        let _ = std::fs::remove_file(&active);
        let mut user_js = String::from("user_pref(\"marionette.port\", 0);\n");
        for (k, v) in prefs {
            user_js.push_str(&format!("user_pref(\"{k}\", {v});\n"));
        }
        std::fs::write(profile.join("user.js"), user_js).expect("user.js");
        let mut cmd = Command::new("firefox-esr");
        cmd.args(["--headless", "--marionette", "--no-remote", "--profile"])
            .arg(profile)
            .env("MOZ_HEADLESS_WIDTH", width.to_string())
            .env("MOZ_HEADLESS_HEIGHT", height.to_string());
        // A missing firefox-esr (Debian package firefox-esr) fails here, naming the program.
        let mut proc = Proc::spawn("firefox-esr", cmd);
        let port = eventually(
            "Firefox to write MarionetteActivePort",
            Duration::from_secs(120),
            || {
                assert!(
                    proc.is_running(),
                    "firefox-esr exited; stderr:\n{}",
                    proc.log_tail()
                );
                std::fs::read_to_string(&active)
                    .ok()
                    .and_then(|t| t.trim().parse::<u16>().ok())
            },
        );
        let ff = Firefox {
            _proc: proc,
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

/// chromedriver (Debian package chromium-driver) on a port it picks, killed on drop, after it
/// has closed the browsers of its sessions: chromedriver killed with a session open leaves its
/// Chromium running with the page, found burning most of a core after a CI run.
pub struct ChromeDriver {
    _proc: Proc,
    pub base: String,
    agent: ureq::Agent,
    sessions: std::sync::Mutex<Vec<String>>,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.sessions.lock().unwrap_or_else(|e| e.into_inner()));
        for id in ids {
            // An error is a session the test closed itself.
            let _ = self.call("DELETE", &format!("/session/{id}"), None);
        }
    }
}

impl ChromeDriver {
    pub fn start() -> ChromeDriver {
        let mut cmd = Command::new("chromedriver");
        cmd.arg("--port=0");
        let mut proc = Proc::spawn("chromedriver", cmd);
        // "ChromeDriver was started successfully on port 38909."
        let line = proc.wait_line("started successfully on port", Duration::from_secs(120));
        let port: u16 = line
            .rsplit(' ')
            .next()
            .map(|p| p.trim_end_matches('.'))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        let d = ChromeDriver {
            _proc: proc,
            base: format!("http://127.0.0.1:{port}"),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
            sessions: Default::default(),
        };
        eventually("chromedriver ready", Duration::from_secs(60), || {
            d.call("GET", "/status", None)
                .ok()
                .is_some_and(|v| v["ready"] == true)
        });
        d
    }

    /// A WebDriver command; the answer's `value`, or the error the driver gave.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let req = self.agent.request(method, &format!("{}{path}", self.base));
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match res {
            Ok(r) => r
                .into_json::<Value>()
                .map(|v| v["value"].clone())
                .map_err(|e| e.to_string()),
            Err(ureq::Error::Status(code, r)) => {
                Err(format!("{code}: {}", r.into_string().unwrap_or_default()))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// A new Chromium session with these `goog:chromeOptions` arguments (plus `extra`
    /// capabilities); its id.
    pub fn session(&self, args: &[String], extra: Value) -> String {
        let mut caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
        });
        if let (Some(c), Some(e)) = (caps.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let v = self
            .call(
                "POST",
                "/session",
                Some(json!({ "capabilities": { "alwaysMatch": caps } })),
            )
            .unwrap_or_else(|e| panic!("Chromium session: {e}"));
        let id = v["sessionId"].as_str().expect("session id").to_string();
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id.clone());
        id
    }
}

/// Chromium's arguments for a headless test browser as root (/work/shared/SETUP-NOTES.md).
pub fn chromium_args(profile: &Path, width: u32, height: u32) -> Vec<String> {
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size={width},{height}"),
    ]
}
